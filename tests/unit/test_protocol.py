import json

import pytest

from chalicelib import protocol
from chalicelib.protocol import (
    Ask,
    Cancel,
    DeleteDocument,
    DocumentsQuery,
    DocumentStatus,
    Ping,
    ProtocolError,
    Resume,
    ReturnControlResults,
    Upload,
    UsageQuery,
    parse_client_message,
)


def test_ask_is_the_default_action_and_unknown_fields_are_ignored():
    # The original blog post's client sends an email; identity never comes from the body.
    parsed = parse_client_message(json.dumps({"email": "x@example.com", "prompt": "Hi"}))
    assert parsed == Ask(prompt="Hi")


def test_ask_with_every_field():
    parsed = parse_client_message(
        json.dumps({"action": "ask", "prompt": "Hi", "conversationId": "c1", "requestId": "r1", "trace": True})
    )
    assert parsed == Ask(prompt="Hi", conversation_id="c1", request_id="r1", trace=True)


def test_ping():
    assert parse_client_message('{"action": "ping"}') == Ping()


def test_usage():
    assert parse_client_message('{"action": "usage", "prompt": "ignored"}') == UsageQuery()


def test_return_control_results():
    body = {"action": "return_control", "turnId": "t", "invocationId": "i", "results": [{"functionResult": {"x": 1}}]}
    assert parse_client_message(json.dumps(body)) == ReturnControlResults("t", "i", [{"functionResult": {"x": 1}}])


def test_resume_and_cancel_name_a_turn():
    assert parse_client_message('{"action": "resume", "turnId": "t1"}') == Resume("t1")
    assert parse_client_message('{"action": "cancel", "turnId": "t1"}') == Cancel("t1")


def test_upload_is_parsed_as_the_client_describes_the_file():
    body = {"action": "upload", "fileName": "Q3 report.PDF", "contentType": "application/pdf; x=y", "size": 2048, "prompt": "x"}
    assert parse_client_message(json.dumps(body)) == Upload("Q3 report.PDF", "application/pdf; x=y", 2048)


def test_upload_checks_only_the_shape_here():
    # The rules (kinds, types, limit) are documents.upload.check_upload's, applied by the action.
    body = {"action": "upload", "fileName": "setup.exe", "contentType": "application/x-msdownload", "size": 10**9}
    assert parse_client_message(json.dumps(body)) == Upload("setup.exe", "application/x-msdownload", 10**9)


def test_documents_and_delete():
    assert parse_client_message('{"action": "documents", "documentId": "ignored"}') == DocumentsQuery()
    assert parse_client_message('{"action": "delete", "documentId": "0f8e5a3c"}') == DeleteDocument("0f8e5a3c")


@pytest.mark.parametrize(
    "body, fragment",
    [
        ('{"action": "upload", "contentType": "text/plain", "size": 1}', '"fileName" is missing'),
        ('{"action": "upload", "fileName": "a.txt", "size": 1}', '"contentType" is missing'),
        ('{"action": "upload", "fileName": "a.txt", "contentType": "text/plain"}', '"size" is missing'),
        ('{"action": "upload", "fileName": "", "contentType": "text/plain", "size": 1}', "1 to 255 characters"),
        ('{"action": "upload", "fileName": 5, "contentType": "text/plain", "size": 1}', "the file's name"),
        ('{"action": "upload", "fileName": "a.txt", "contentType": "", "size": 1}', "media type"),
        ('{"action": "upload", "fileName": "a.txt", "contentType": "text/plain", "size": 0}', "1 or more"),
        ('{"action": "upload", "fileName": "a.txt", "contentType": "text/plain", "size": 1.5}', "whole number"),
        ('{"action": "upload", "fileName": "a.txt", "contentType": "text/plain", "size": "1"}', "size in bytes"),
        ('{"action": "delete"}', '"documentId" is missing'),
        ('{"action": "delete", "documentId": ""}', '"documentId" must be a non-empty string'),
        ('{"action": "erase", "documentId": "d"}', '"upload", "documents" or "delete"'),
    ],
)
def test_bad_document_messages_say_what_to_fix(body, fragment):
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(body)
    assert caught.value.code == "invalid_request"
    assert fragment in caught.value.message


def test_document_events():
    assert protocol.upload_event("d1", "https://b.s3.amazonaws.com/", {"key": "k"}, 1_790_000_000_000) == {
        "type": "upload", "documentId": "d1", "url": "https://b.s3.amazonaws.com/", "fields": {"key": "k"},
        "expiresAt": 1_790_000_000_000,
    }
    assert protocol.document_event("d1", "a.pdf", DocumentStatus.INDEXED) == {
        "type": "document", "documentId": "d1", "fileName": "a.pdf", "status": "indexed",
    }
    failed = protocol.document_event("d1", "a.pdf", DocumentStatus.FAILED, "encrypted", "Protected.")
    assert (failed["code"], failed["message"]) == ("encrypted", "Protected.")
    analysed = protocol.document_event("d1", "a.pdf", DocumentStatus.ANALYSED, analysis=protocol.document_analysis("S.", ["t"]))
    assert analysed["analysis"] == {"summary": "S.", "topics": ["t"]}
    entry = protocol.document_entry("d1", "a.pdf", DocumentStatus.UPLOADED, 5)
    assert protocol.documents_event([entry]) == {
        "type": "documents", "documents": [{"documentId": "d1", "fileName": "a.pdf", "status": "uploaded", "updatedAt": 5}],
    }
    assert b'"status":"uploaded"' in protocol.encode(protocol.documents_event([entry]))


@pytest.mark.parametrize(
    "body, fragment",
    [
        (None, "empty"),
        ("", "empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"hello"', "JSON object"),
        ("{}", "missing"),
        ('{"prompt": null}', "missing"),
        ('{"prompt": ""}', "empty"),
        ('{"prompt": "   "}', "empty"),
        ('{"prompt": 42}', "string"),
        ('{"prompt": ["a"]}', "string"),
        ('{"action": "dance", "prompt": "x"}', "Unknown action"),
        ('{"action": 7}', "must be a string"),
        ('{"action": "return_control", "turnId": "t", "invocationId": "i"}', "results"),
        ('{"action": "return_control", "turnId": "t", "invocationId": "i", "results": [{}]}', "functionResult"),
        ('{"action": "return_control", "turnId": "t", "results": [{"functionResult": {}}]}', "invocationId"),
        ('{"action": "resume"}', "turnId"),
        ('{"action": "cancel", "turnId": 7}', "turnId"),
        ('{"prompt": "x", "trace": "yes"}', "true or false"),
        ('{"prompt": "x", "conversationId": 5}', "conversationId"),
        ('{"prompt": "x", "requestId": ""}', "requestId"),
    ],
)
def test_bad_input_is_an_invalid_request(body, fragment):
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(body)
    event = caught.value.event()
    assert event["type"] == "error"
    assert event["code"] == "invalid_request"
    assert event["retryable"] is False
    assert fragment in event["message"]


def test_prompt_length_limit_is_inclusive():
    assert parse_client_message(json.dumps({"prompt": "a" * 25_000})).prompt == "a" * 25_000
    with pytest.raises(ProtocolError, match="25,001 characters"):
        parse_client_message(json.dumps({"prompt": "a" * 25_001}))


def test_events_drop_absent_optional_fields():
    assert protocol.accepted_event("t1") == {"type": "accepted", "turnId": "t1"}
    assert protocol.accepted_event("t1", "r1") == {"type": "accepted", "turnId": "t1", "requestId": "r1"}
    assert protocol.error_event("internal", "m", True) == {
        "type": "error",
        "code": "internal",
        "message": "m",
        "retryable": True,
    }


def test_encode_is_compact_utf8():
    assert protocol.encode(protocol.chunk_event("t", 1, "é")) == '{"type":"chunk","turnId":"t","seq":1,"text":"é"}'.encode()
