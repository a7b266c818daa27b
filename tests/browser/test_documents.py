"""The chat page's documents (issue #12) in Debian's Chromium: Upload, the presigned POST, a row per
document that its `document` events move on, the list on (re)connect.

The server does not serve documents yet, so the page talks to stand-ins on 127.0.0.1
(tests/support/fake_documents.py): a WebSocket server speaking the documents messages, an S3 POST
endpoint on another origin (so the POST is cross-origin, as from CloudFront to a bucket, CORS
included), and a plain server for the page's files. No local stack.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from playwright.sync_api import expect

from tests.support.browser import WAIT_MS, Page
from tests.support.fake_documents import ANALYSIS, FakeDocumentsServer, FakeStorage, serve_directory

pytestmark = pytest.mark.integration

WEB = Path(__file__).resolve().parents[2] / "client" / "web"

# The Documents panel's row of a file, once it shows ``state`` (data-state).
ROW_IN_STATE = """([name, state]) => window.agentstream.documents().find(
    (row) => row.fileName === name && row.state === state) || null"""


@pytest.fixture
def storage() -> Iterator[FakeStorage]:
    fake = FakeStorage()
    yield fake
    fake.close()


@pytest.fixture
def page_base() -> Iterator[str]:
    yield from serve_directory(WEB)


@contextmanager
def tab(browser_context: Any, base_url: str, server: FakeDocumentsServer) -> Iterator[Page]:
    """The page in a new tab, connected to ``server``; after use, no JavaScript error and nothing
    reached off this machine."""
    page = Page(browser_context.new_page(), base_url)
    page.open(token=server.token, url=server.url)
    page.page.wait_for_selector("#status[data-state=open]")
    yield page
    page.page.close()
    assert not page.errors, f"JavaScript errors: {page.errors}"
    elsewhere = [url for url in page.requests if not url.split("//", 1)[-1].startswith("127.0.0.1:")]
    assert not elsewhere, f"the page reached beyond this machine: {elsewhere}"


def choose(web: Page, *files: Tuple[str, bytes]) -> None:
    """Choose files in the Upload button's file picker (the browser's type left to the page)."""
    web.page.set_input_files("#upload-file", files=[{"name": name, "mimeType": "", "buffer": data} for name, data in files])


def row_in(web: Page, name: str, state: str) -> Dict[str, Any]:
    return web.page.wait_for_function(ROW_IN_STATE, arg=[name, state], timeout=WAIT_MS).json_value()


def row_node(web: Page, document_id: str) -> Any:
    return web.page.locator(f'#documents-list > li[data-document-id="{document_id}"]')


def uploads(server: FakeDocumentsServer) -> List[Dict[str, Any]]:
    return [message for message in server.received if message.get("action") == "upload"]


def test_an_upload_goes_to_storage_and_its_row_follows_it_to_the_analysis(browser_context, page_base, storage):
    server = FakeDocumentsServer(storage)
    earlier = server.add("earlier.pdf", "analysed", analysis={"summary": "From before.", "topics": ["old"]})
    try:
        with tab(browser_context, page_base, server) as web:
            assert server.actions() == []  # the panel is closed: nothing asked yet
            web.page.click("#documents summary")
            row_in(web, "earlier.pdf", "analysed")  # the list, asked for as the panel opened
            assert server.actions() == ["documents"]

            data = b"# Notes\n\nAbout the fake pipeline.\n"
            choose(web, ("notes.md", data))
            row = row_in(web, "notes.md", "analysed")
            (document_id,) = [key for key in server.documents if key != earlier]
            assert row["documentId"] == document_id and row["text"] == "Analysed"
            node = row_node(web, document_id)
            expect(node.locator(".document-detail")).to_have_text(ANALYSIS["summary"])
            assert node.locator(".document-topics li").all_inner_texts() == ANALYSIS["topics"]
            assert [r["fileName"] for r in web.page.evaluate("window.agentstream.documents()")] == ["notes.md", "earlier.pdf"]
            expect(web.page.locator("#documents-count")).to_have_text("(2)")
    finally:
        server.close()
    # The file went as the server described it, and to storage as the policy wants it.
    assert uploads(server) == [{"action": "upload", "fileName": "notes.md", "contentType": "text/markdown", "size": len(data)}]
    (issued,) = storage.issued.values()
    (post,) = storage.posts
    assert post.status == 204 and post.headers.get("Origin") == page_base.rstrip("/")  # cross-origin: CORS
    assert [part.name for part in post.parts] == list(issued.fields) + ["file"]  # every field, then the file
    assert {part.name: part.value.decode() for part in post.parts[:-1]} == issued.fields
    assert (post.parts[-1].filename, post.parts[-1].value) == ("notes.md", data)


def test_a_refusal_a_failure_and_storage_s_refusal_each_say_why(browser_context, page_base, storage):
    server = FakeDocumentsServer(storage)
    try:
        with tab(browser_context, page_base, server) as web:
            # Three files at once: described to the server one at a time.
            choose(web, ("setup.exe", b"MZ\x90\x00"), ("scan.txt", b"!fail nothing here"), ("fine.txt", b"fine"))
            refused = row_in(web, "setup.exe", "refused")
            assert refused["documentId"] is None and refused["text"] == "The server could not accept this request"
            expect(web.page.locator("#documents-list > li[data-state=refused] .document-detail")).to_contain_text(
                "cannot be read: upload a .txt")
            failed = row_in(web, "scan.txt", "failed")
            expect(row_node(web, failed["documentId"]).locator(".document-detail")).to_have_text(
                "(empty) There is no text in it.")
            row_in(web, "fine.txt", "analysed")
            assert [(u["fileName"], u["contentType"]) for u in uploads(server)] == [
                ("setup.exe", "application/octet-stream"), ("scan.txt", "text/plain"), ("fine.txt", "text/plain")]

            storage.refuse = (403, "AccessDenied", "Invalid according to Policy: Policy expired.")
            choose(web, ("late.txt", b"too late"))
            late = row_in(web, "late.txt", "storage")
            assert late["text"] == "Storage refused the file (AccessDenied)"
            expect(row_node(web, late["documentId"]).locator(".document-detail")).to_have_text(
                "Invalid according to Policy: Policy expired.")
            assert web.page.locator("#notice").is_hidden()  # said on the rows, not as a notice
    finally:
        server.close()
    assert len(storage.posts) == 3 and [post.status for post in storage.posts] == [204, 204, 403]


def test_after_a_drop_the_page_reconnects_and_the_list_catches_up(browser_context, page_base, storage):
    def plan(name: str, data: bytes) -> List[Dict[str, Any]]:
        # Told: uploaded. Then every connection closes (1001) while the rest happens unseen.
        return [{"status": "uploaded"}, {"status": "extracted", "drop": True}, {"status": "analysed", "analysis": ANALYSIS}]

    server = FakeDocumentsServer(storage, plan=plan)
    try:
        with tab(browser_context, page_base, server) as web:
            choose(web, ("report.txt", b"a report"))  # opens the panel, which asks for the list
            row_in(web, "report.txt", "analysed")  # only the list after the reconnect could say so
            assert server.opened == 2
            assert server.actions() == ["upload", "documents", "documents"]
            # The panel stays open across a reload, and a new page asks for the list as it connects.
            web.page.reload()
            web.page.wait_for_selector("#status[data-state=open]")
            row_in(web, "report.txt", "analysed")
            assert server.opened == 3 and server.actions()[-1] == "documents"
    finally:
        server.close()
