"""The upload rules (chalicelib/documents/upload.py): what may be uploaded, and where it goes in S3."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chalicelib import protocol
from chalicelib.documents import upload
from chalicelib.documents.upload import (
    DOCX_TYPE,
    EXTENSIONS,
    MAX_UPLOAD_BYTES,
    Kind,
    UploadRefused,
    UploadRequest,
    check_upload,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
USER = "3f1c2b8e-0d4a-4e5b-9c6d-7e8f9a0b1c2d"
DOCUMENT = "0f8e5a3c9b7d4e21a6c5b4f3e2d1c0b9"


def refused(file_name: object, content_type: object = "text/plain", size: object = 10, **limit: int) -> UploadRefused:
    with pytest.raises(UploadRefused) as caught:
        check_upload(file_name, content_type, size, **limit)  # type: ignore[arg-type]
    return caught.value


# ---- check_upload ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "file_name, content_type, kind",
    [(f"notes{extension}", content_type, kind) for extension, (kind, types) in EXTENSIONS.items() for content_type in types],
)
def test_every_kind_is_accepted_with_each_of_its_content_types(file_name, content_type, kind):
    assert check_upload(file_name, content_type, 1234) == UploadRequest(file_name, content_type, 1234, kind)


def test_the_accepted_kinds_are_the_brief_s():
    assert {extension: (kind.value, types) for extension, (kind, types) in EXTENSIONS.items()} == {
        ".txt": ("txt", ("text/plain",)),
        ".md": ("md", ("text/markdown", "text/x-markdown", "text/plain")),
        ".html": ("html", ("text/html",)),
        ".htm": ("html", ("text/html",)),
        ".pdf": ("pdf", ("application/pdf",)),
        ".docx": ("docx", ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",)),
    }


def test_extension_and_content_type_are_compared_without_case_or_parameters():
    request = check_upload("Q3 Report.PDF", " Application/PDF; name=x ", 10)
    assert (request.file_name, request.content_type, request.kind) == ("Q3 Report.PDF", "application/pdf", Kind.PDF)
    assert check_upload("page.HTM", "text/html; charset=UTF-8", 10).content_type == "text/html"


@pytest.mark.parametrize("file_name", ["setup.exe", "archive.tar.gz", "README", ".txt", "notes.txt.", "photo.jpeg", "old.doc"])
def test_an_unknown_kind_names_the_accepted_ones(file_name):
    error = refused(file_name)
    assert error.reason == "kind"
    assert f'"{file_name}"' in error.message
    assert "upload a .txt, .md, .html, .htm, .pdf or .docx file" in error.message


def test_a_content_type_that_does_not_fit_the_extension_is_refused():
    error = refused("report.pdf", "text/plain")
    assert error.reason == "content_type"
    assert error.message == (
        '"report.pdf" is a .pdf file, but its content type is "text/plain"; send it as application/pdf.'
    )
    assert "text/markdown, text/x-markdown or text/plain" in refused("a.md", "text/html").message
    assert refused("a.docx", "application/msword").message.endswith(f"send it as {DOCX_TYPE}.")
    assert refused("a.txt", "").reason == "content_type"


def test_the_size_limit_is_inclusive_and_said_in_mb():
    assert MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    assert check_upload("a.pdf", "application/pdf", MAX_UPLOAD_BYTES).size == MAX_UPLOAD_BYTES
    error = refused("big.pdf", "application/pdf", MAX_UPLOAD_BYTES + 1)
    assert error.reason == "size"
    assert error.message == '"big.pdf" is 10 MB (10,485,761 bytes); the limit is 10 MB.'
    assert refused("big.pdf", "application/pdf", 13_107_200).message.startswith('"big.pdf" is 12.5 MB (13,107,200 bytes)')


def test_a_setting_may_change_the_limit():
    assert check_upload("a.txt", "text/plain", 3 * 1024 * 1024, max_bytes=50 * 1024 * 1024).size == 3 * 1024 * 1024
    assert refused("a.txt", size=3 * 1024 * 1024, max_bytes=2 * 1024 * 1024).message.endswith("the limit is 2 MB.")
    assert refused("a.txt", size=600_000, max_bytes=512 * 1024).message.endswith("the limit is 0.5 MB.")


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "10"])
def test_a_size_that_is_not_a_positive_whole_number_says_the_limit(size):
    error = refused("a.txt", size=size)
    assert error.reason == "size"
    assert "1 byte to 10 MB" in error.message


@pytest.mark.parametrize(
    "file_name, words",
    [
        ("", "1 to 255 characters"),
        ("x" * 252 + ".txt", "1 to 255 characters"),
        (None, "1 to 255 characters"),
        ("../../etc/passwd.txt", "not a path"),
        ("docs/a.txt", "not a path"),
        ("C:\\Users\\me\\a.txt", "not a path"),
        ("a\x00.txt", "control or invisible"),
        ("a\nb.txt", "control or invisible"),
        ("a\x7f.txt", "control or invisible"),
        ("invoice\u202etxt.exe", "control or invisible"),  # shows as "invoiceexe.txt"
        ("a\u200b.txt", "control or invisible"),
        ("a\u2028.txt", "control or invisible"),
        ("   ", "only spaces"),
    ],
)
def test_a_file_name_must_be_a_plain_name(file_name, words):
    error = refused(file_name)
    assert error.reason == "name"
    assert words in error.message


def test_the_longest_name_and_any_script_are_fine():
    assert check_upload("x" * 251 + ".txt", "text/plain", 1).file_name == "x" * 251 + ".txt"
    assert check_upload("Rapport d'été (final) 日本.docx", DOCX_TYPE, 1).kind == Kind.DOCX


def test_a_refusal_is_an_invalid_request_for_the_client():
    error = refused("setup.exe")
    assert isinstance(error, protocol.ProtocolError)
    event = error.event()
    assert (event["type"], event["code"], event["retryable"]) == ("error", "invalid_request", False)
    protocol.validator("ServerEvent")(event)


def test_the_protocol_doc_lists_exactly_the_accepted_kinds():
    rows = re.findall(r"^\| `(\.[a-z]+)` \| (.+) \|$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    documented = {extension: tuple(re.findall(r"`([^`]+)`", types)) for extension, types in rows}
    assert documented == {extension: types for extension, (_, types) in EXTENSIONS.items()}


# ---- ids and keys ------------------------------------------------------------------------------

def test_document_ids_are_new_hex_protocol_ids():
    ids = {upload.new_document_id() for _ in range(50)}
    assert len(ids) == 50
    for document_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", document_id) and upload.is_document_id(document_id)
        protocol.validator("Id")(document_id)
    assert not any(upload.is_document_id(value) for value in ["../x", DOCUMENT.upper(), DOCUMENT + "0", "", None, 7])


def test_the_upload_key():
    key = upload.upload_key(USER, DOCUMENT, "Q3 report (final).PDF")
    owner = upload.owner_segment(USER)
    assert key == f"uploads/{owner}/{DOCUMENT}/Q3-report-final.pdf"
    assert re.fullmatch(r"[0-9a-f]{48}", owner)
    assert upload.upload_prefix(USER, DOCUMENT) == f"uploads/{owner}/{DOCUMENT}/"
    assert upload.parse_upload_key(key) == (owner, DOCUMENT)


def test_the_owner_is_a_stable_unambiguous_digest_without_the_user_id():
    assert upload.owner_segment(USER) == upload.owner_segment(USER)
    users = ["alice", "Alice", "alice ", "a/b", "a\0b", "a\\0b", "alice@example.com", "", "é"]
    segments = {upload.owner_segment(user) for user in users}
    assert len(segments) == len(users)
    assert all(re.fullmatch(r"[0-9a-f]{48}", segment) for segment in segments)
    assert "alice" not in upload.upload_key("alice@example.com", DOCUMENT, "alice.txt").split("/")[1]
    # Not the session digest of the same user: each use of a user id has its own domain.
    from chalicelib.turns.ids import memory_id

    assert upload.owner_segment(USER) not in memory_id(USER)


@pytest.mark.parametrize(
    "file_name, in_key",
    [
        ("report.pdf", "report.pdf"),
        ("Résumé.PDF", "Resume.pdf"),
        ("Q3 report (final).docx", "Q3-report-final.docx"),
        ("../../etc/passwd.txt", "etc-passwd.txt"),
        ("..\\..\\boot.ini.md", "boot.ini.md"),
        ("日本語.txt", "document.txt"),
        ("...pdf", "document.pdf"),
        ("a....b.htm", "a.b.htm"),
        (".hidden", "hidden"),
        ("setup.exe", "setup"),  # an extension we do not take is dropped
        ("x" * 300 + ".md", "x" * 100 + ".md"),
        ("%2e%2e%2fa?b#c&d=e+f.txt", "2e-2e-2fa-b-c-d-e-f.txt"),
    ],
)
def test_a_key_holds_a_safe_form_of_the_name_never_a_path(file_name, in_key):
    assert upload.key_file_name(file_name) == in_key
    key = upload.upload_key(USER, DOCUMENT, file_name)
    assert key.endswith("/" + in_key)
    assert re.fullmatch(r"[A-Za-z0-9._/-]+", key)
    assert len(key.split("/")) == 4 and not {".", ".."} & set(key.split("/"))


def test_keys_refuse_a_document_id_this_server_did_not_make():
    for bad in ["../other", "", DOCUMENT + "/x", "x" * 32]:
        with pytest.raises(ValueError):
            upload.upload_key(USER, bad, "a.txt")
        with pytest.raises(ValueError):
            upload.chunk_key(USER, bad, 1)


@pytest.mark.parametrize(
    "key",
    ["kb/ab/cd/chunk-00001.txt", f"uploads/{'a' * 48}/{DOCUMENT}", f"uploads/{'a' * 48}/{DOCUMENT}/",
     f"uploads/{'a' * 47}/{DOCUMENT}/a.txt", f"uploads/{'a' * 48}/../a.txt", f"uploads/{'a' * 48}/{DOCUMENT}/a/b.txt"],
)
def test_only_upload_keys_parse(key):
    with pytest.raises(ValueError):
        upload.parse_upload_key(key)


def test_chunk_keys_and_their_sidecars():
    owner = upload.owner_segment(USER)
    assert upload.chunk_key(USER, DOCUMENT, 1) == f"kb/{owner}/{DOCUMENT}/chunk-00001.txt"
    assert upload.chunk_key(USER, DOCUMENT, 99_999) == f"kb/{owner}/{DOCUMENT}/chunk-99999.txt"
    assert upload.chunk_key(USER, DOCUMENT, 42).startswith(upload.chunks_prefix(USER, DOCUMENT))
    assert upload.metadata_key(upload.chunk_key(USER, DOCUMENT, 7)) == f"kb/{owner}/{DOCUMENT}/chunk-00007.txt.metadata.json"
    keys = [upload.chunk_key(USER, DOCUMENT, n) for n in (1, 2, 10, 100, 12_345)]
    assert sorted(keys) == keys  # listed in S3 in the chunks' order
    for bad in [0, -1, 100_000, True, 1.0]:
        with pytest.raises(ValueError):
            upload.chunk_key(USER, DOCUMENT, bad)  # type: ignore[arg-type]


def test_the_sidecar_is_bedrock_s_metadata_file():
    document = upload.sidecar(USER, DOCUMENT, "Q3 report.pdf")
    assert document == {"metadataAttributes": {"owner": USER, "documentId": DOCUMENT, "fileName": "Q3 report.pdf"}}
    assert json.loads(json.dumps(document)) == document
    # Bedrock reads at most 10 KB of metadata per file: the longest name and a long user id fit.
    assert len(json.dumps(upload.sidecar("u" * 1000, DOCUMENT, "é" * 255), ensure_ascii=False).encode()) < 10_000
