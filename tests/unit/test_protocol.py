import json

import pytest

from chalicelib import protocol
from chalicelib.protocol import Ask, Cancel, Ping, ProtocolError, Resume, ReturnControlResults, UsageQuery, parse_client_message


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
