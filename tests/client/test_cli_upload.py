"""`python -m client upload` and `documents` (issue #12) against stand-ins for the server's documents
side and for S3's presigned POST on 127.0.0.1 (tests/support/fake_documents.py): what a script
sees (standard output, exit code) and what reached storage (the form, field by field)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional

import pytest

from client import exit_codes
from client.documents import Upload, UploadPrinter, content_type_for, multipart_form, storage_error
from client.render import StatusLine
from tests.support.timing import ManualClock
from tests.support.fake_documents import ANALYSIS, FakeDocumentsServer, FakeStorage, parse_form

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def storage() -> Iterator[FakeStorage]:
    fake = FakeStorage()
    yield fake
    fake.close()


@pytest.fixture
def server(storage: FakeStorage) -> Iterator[FakeDocumentsServer]:
    fake = FakeDocumentsServer(storage)
    yield fake
    fake.close()


def run_client(server: FakeDocumentsServer, *args: str, token: str = "") -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in PROXIES and not key.startswith("AGENTSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "client", "--url", server.url, "--token", token or server.token, *args],
        cwd=ROOT, env={**env, "AGENTSTREAM_HISTORY": ""}, capture_output=True, text=True, timeout=TIMEOUT_S,
    )


def document_file(tmp_path: Path, name: str = "notes.txt", data: bytes = b"Notes about the fake pipeline.\n") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def uploads(server: FakeDocumentsServer) -> List[Dict[str, Any]]:
    return [message for message in server.received if message.get("action") == "upload"]


def statuses(stdout: str) -> List[str]:
    """The status lines (after the first, which names the document)."""
    return [line.split(":")[0] for line in stdout.splitlines()[1:] if not line.startswith("  ")]


def test_an_upload_prints_each_status_and_the_analysis_then_exits_0(server, storage, tmp_path):
    path = document_file(tmp_path)
    result = run_client(server, "upload", str(path))
    assert result.returncode == exit_codes.OK, result.stderr
    (document_id,) = server.documents
    lines = result.stdout.splitlines()
    assert lines[0] == f"document {document_id} notes.txt"
    assert statuses(result.stdout) == ["uploaded", "extracted", "ingesting", "indexed", "analysed"]
    assert lines[-2:] == [f"  summary: {ANALYSIS['summary']}", "  topics: testing, documents"]
    assert "stored; the pipeline takes over" in result.stderr
    size = path.stat().st_size
    assert uploads(server) == [{"action": "upload", "fileName": "notes.txt", "contentType": "text/plain", "size": size}]
    (post,) = storage.posts
    assert post.status == 204


def test_the_form_sends_every_field_as_issued_then_the_file_last(server, storage, tmp_path):
    data = b"%PDF-1.4 not really\r\n--agentstream-looks-like-a-boundary\r\n\x00\xff"
    path = document_file(tmp_path, "Q3 report.PDF", data)
    assert run_client(server, "upload", str(path)).returncode == exit_codes.OK
    (issued,) = storage.issued.values()
    (post,) = storage.posts
    assert post.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert [part.name for part in post.parts] == list(issued.fields) + ["file"]  # in order, the file last
    assert {part.name: part.value.decode() for part in post.parts[:-1]} == issued.fields
    file = post.parts[-1]
    assert (file.filename, file.headers["content-type"], file.value) == ("Q3 report.PDF", "application/pdf", data)
    assert uploads(server)[0]["contentType"] == "application/pdf"


def test_a_failed_document_exits_non_zero_with_its_code_and_message(server, storage, tmp_path):
    result = run_client(server, "upload", str(document_file(tmp_path, "scan.md", b"!fail: nothing to read")))
    assert result.returncode == exit_codes.DOCUMENT_FAILED
    assert statuses(result.stdout) == ["uploaded", "failed [empty]"]
    assert result.stdout.splitlines()[-1] == "failed [empty]: There is no text in it."
    assert uploads(server)[0]["contentType"] == "text/markdown"


def test_a_file_the_server_refuses_is_never_stored_and_exits_non_zero(server, storage, tmp_path):
    result = run_client(server, "upload", str(document_file(tmp_path, "setup.exe", b"MZ\x90\x00")))
    assert result.returncode == exit_codes.UPLOAD_REFUSED
    assert "error [invalid_request, not retryable]" in result.stderr and "setup.exe" in result.stderr
    assert uploads(server)[0]["contentType"] == "application/octet-stream"  # no guess: the server says why not
    assert storage.posts == [] and result.stdout == ""


def test_storage_refusing_the_file_prints_s3_s_code_and_message_and_exits_non_zero(server, storage, tmp_path):
    storage.refuse = (403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    result = run_client(server, "upload", str(document_file(tmp_path)))
    assert result.returncode == exit_codes.STORAGE_REFUSED
    assert "storage refused the file (HTTP 403): AccessDenied: Invalid according to Policy: Policy expired." in result.stderr
    assert statuses(result.stdout) == []  # no status: nothing was stored


def test_storage_out_of_reach_exits_non_zero(server, storage, tmp_path):
    storage.close()
    result = run_client(server, "upload", str(document_file(tmp_path)))
    assert result.returncode == exit_codes.STORAGE_REFUSED
    assert "storage refused the file (not reached): unreachable" in result.stderr


def test_after_a_drop_the_client_reconnects_and_catches_up_with_documents(storage, tmp_path):
    def plan(name: str, data: bytes) -> List[Dict[str, Any]]:
        # Told: uploaded. Then the connection drops while the rest happens unseen.
        return [{"status": "uploaded"}, {"status": "extracted", "drop": True}, {"status": "indexed"},
                {"status": "analysed", "analysis": ANALYSIS}]

    server = FakeDocumentsServer(storage, plan=plan)
    try:
        result = run_client(server, "upload", str(document_file(tmp_path)))
    finally:
        server.close()
    assert result.returncode == exit_codes.OK, result.stderr
    assert statuses(result.stdout) == ["uploaded", "analysed"]  # where it stands; nothing missed
    assert "[reconnecting in" in result.stderr and "[reconnected]" in result.stderr
    assert server.actions() == ["upload", "documents"] and server.opened == 2


def test_a_document_still_in_the_pipeline_at_the_timeout_exits_non_zero(storage, tmp_path):
    server = FakeDocumentsServer(storage, plan=lambda name, data: [{"status": "uploaded"}, {"status": "ingesting"}])
    try:
        result = run_client(server, "upload", str(document_file(tmp_path)), "--timeout", "1")
    finally:
        server.close()
    assert result.returncode == exit_codes.TIMED_OUT
    (document_id,) = server.documents
    assert f"timed out after 1 s: document {document_id} is ingesting" in result.stderr
    assert statuses(result.stdout) == ["uploaded", "ingesting"]


def test_documents_lists_mine(server, tmp_path):
    kept = server.add("Q3 report.pdf", "analysed", analysis=ANALYSIS)
    broken = server.add("scan.pdf", "failed", code="empty", message="There is no text in it.")
    result = run_client(server, "documents")
    assert result.returncode == exit_codes.OK, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith(f"{kept}  analysed ") and first.endswith("  Q3 report.pdf")
    assert second.startswith(f"{broken}  failed ") and second.endswith("scan.pdf  [empty] There is no text in it.")


def test_usage_and_token_problems_exit_as_for_ask(server, tmp_path):
    empty = run_client(server, "upload", str(document_file(tmp_path, "empty.txt", b"")))
    assert empty.returncode == exit_codes.USAGE and "empty" in empty.stderr
    missing = run_client(server, "upload", str(tmp_path / "missing.txt"))
    assert missing.returncode == exit_codes.USAGE and "cannot read" in missing.stderr
    refused = run_client(server, "upload", str(document_file(tmp_path)), token="wrong")
    assert refused.returncode == exit_codes.REFUSED
    assert server.received == []


# ---- the parts, without a server -------------------------------------------------------------

def test_the_multipart_body_is_exact():
    body, content_type = multipart_form({"key": "uploads/k", "policy": "cG9s"}, 'a "b".txt', "text/plain", b"hi\r\n", "BOUNDARY")
    assert content_type == "multipart/form-data; boundary=BOUNDARY"
    assert body == (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="key"\r\n\r\nuploads/k\r\n'
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="policy"\r\n\r\ncG9s\r\n'
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="a %22b%22.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nhi\r\n\r\n"
        b"--BOUNDARY--\r\n"
    )


def test_a_boundary_found_in_the_file_is_replaced():
    body, content_type = multipart_form({"key": "k"}, "résumé.txt", "text/plain", b"--BOUNDARY--", "BOUNDARY")
    assert "BOUNDARY" not in content_type
    parts = parse_form(content_type, body)
    assert [(p.name, p.filename, p.value) for p in parts] == [("key", None, b"k"), ("file", "résumé.txt", b"--BOUNDARY--")]


@pytest.mark.parametrize("name, expected", [
    ("a.txt", "text/plain"), ("README.MD", "text/markdown"), ("page.html", "text/html"), ("page.htm", "text/html"),
    ("r.pdf", "application/pdf"), ("w.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("setup.exe", "application/octet-stream"), (".txt", "application/octet-stream"), ("noext", "application/octet-stream"),
])
def test_the_content_type_comes_from_the_extension(name, expected):
    assert content_type_for(name) == expected


def test_storage_s_error_document_is_read_and_anything_else_shown_as_it_is():
    xml = b"<?xml version='1.0'?><Error><Code>EntityTooLarge</Code><Message>Too big.</Message></Error>"
    assert storage_error(400, xml) == ("EntityTooLarge", "Too big.")
    assert storage_error(502, b"Bad Gateway") == ("HTTP 502", "Bad Gateway")


class ScriptedLink:
    """A connection on a manual clock: each message sent queues the frames scripted for its action;
    a recv with nothing queued moves the clock on by its timeout (time passes without waiting)."""

    def __init__(self, clock: ManualClock, **script: List[List[Dict[str, Any]]]) -> None:
        self.clock = clock
        self.script = script
        self.sent: List[Dict[str, Any]] = []
        self.frames: Deque[Dict[str, Any]] = deque()

    def send(self, message: Dict[str, Any]) -> None:
        self.sent.append(message)
        replies = self.script.get(message["action"])
        if replies:
            self.frames.extend(replies.pop(0))

    def recv(self, timeout: float) -> Optional[Dict[str, Any]]:
        if self.frames:
            return self.frames.popleft()
        self.clock.advance(timeout)
        return None

    def reopen(self) -> None:
        raise AssertionError("no drop here")

    def close(self) -> None:
        pass


def test_waiting_shows_progress_keeps_the_connection_alive_and_times_out():
    clock = ManualClock()
    link = ScriptedLink(clock)  # the server never answers
    out, err = io.StringIO(), io.StringIO()
    printer = UploadPrinter(out, err, StatusLine(err, live=False))
    upload = Upload(link, printer, "notes.txt", "text/plain", b"hi", timeout_s=300, clock=clock)
    assert upload.run() == exit_codes.TIMED_OUT
    assert "… asking the server where to upload (15 s)\n" in err.getvalue()
    assert err.getvalue().count("… asking the server") == 19  # every 15 s, on a line of its own (not a terminal)
    assert "timed out after 300 s: no upload URL came" in err.getvalue()
    assert [m["action"] for m in link.sent] == ["upload", "ping"]  # one keepalive after 240 s of silence
    assert out.getvalue() == ""


def test_an_upload_refused_for_now_is_described_again_when_the_server_says():
    clock = ManualClock()
    limited = {"type": "error", "code": "rate_limited", "message": "Too many.", "retryable": True, "retryAfterMs": 2000}
    answer = {"type": "upload", "documentId": "d1", "url": "http://storage.invalid/", "fields": {"key": "k"}, "expiresAt": 1}
    done = {"type": "document", "documentId": "d1", "fileName": "notes.txt", "status": "analysed", "analysis": ANALYSIS}
    link = ScriptedLink(clock, upload=[[limited], [answer, done]])
    posted: List[Any] = []

    def post(*args: Any) -> int:
        posted.append(args)
        return 204

    out, err = io.StringIO(), io.StringIO()
    upload = Upload(link, UploadPrinter(out, err, StatusLine(err, live=False)), "notes.txt", "text/plain", b"hi",
                    timeout_s=60, post=post, clock=clock)
    started = clock()
    assert upload.run() == exit_codes.OK
    assert [m["action"] for m in link.sent] == ["upload", "upload"]
    assert 2.0 <= clock() - started < 3.0  # sent again once the 2 s were up, not before
    assert "asking again in 2.0 s" in err.getvalue()
    ((*form, timeout),) = posted  # the POST may take the time left
    assert form == ["http://storage.invalid/", {"key": "k"}, "notes.txt", "text/plain", b"hi"] and 57 < timeout <= 58
    assert out.getvalue().splitlines()[:2] == ["document d1 notes.txt", "analysed: summary and topics below"]
