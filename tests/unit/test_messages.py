"""$default through the Chalice test client: validation, ping, and starting a turn."""
import json

import boto3
import pytest

from tests.support.events import ws_event
from tests.support.tokens import make_token


@pytest.fixture
def connected(client):
    client.lambda_.invoke("websocket_connect", ws_event("$connect", "c1", query={"token": make_token("alice")}))
    return client


def send(client, body, connection_id="c1", binary=False):
    response = client.lambda_.invoke("websocket_message", ws_event("$default", connection_id, body=body, binary=binary))
    assert response.payload == {"statusCode": 200}


def queued(settings):
    sqs = boto3.client("sqs")
    return sqs.receive_message(QueueUrl=settings.turn_queue_url, MaxNumberOfMessages=10).get("Messages", [])


def turns(settings):
    return boto3.client("dynamodb").scan(TableName=settings.turns_table)["Items"]


def test_ask_records_the_turn_queues_it_and_replies_accepted(connected, management, settings):
    send(connected, json.dumps({"prompt": "What is SQS?", "requestId": "r1", "conversationId": "conv"}))
    (event,) = management.events("c1")
    assert event["type"] == "accepted" and event["requestId"] == "r1"
    (turn,) = turns(settings)
    assert turn["turnId"]["S"] == event["turnId"]
    assert turn["userId"] == {"S": "alice"}
    assert turn["connectionId"] == {"S": "c1"}
    assert turn["status"] == {"S": "queued"}
    assert turn["requestId"] == {"S": "r1"}
    (message,) = queued(settings)
    assert json.loads(message["Body"]) == {"turnId": event["turnId"], "apiId": "abc123", "stage": "dev"}
    assert management.endpoints[0] == "https://abc123.execute-api.us-east-1.amazonaws.com/dev"


@pytest.mark.parametrize(
    "body",
    [
        "{nope",
        "[]",
        "{}",
        '{"prompt": ""}',
        '{"prompt": 3}',
        json.dumps({"prompt": "x" * 25_001}),
        '{"action": "explode"}',
    ],
)
def test_bad_input_gets_one_error_and_nothing_else_happens(connected, management, settings, agent, body):
    send(connected, body)
    (event,) = management.events("c1")
    assert event["type"] == "error" and event["code"] == "invalid_request" and event["retryable"] is False
    assert event["message"]
    assert turns(settings) == [] and queued(settings) == [] and agent.calls == []


def test_binary_frames_are_decoded_or_refused(connected, management, settings):
    send(connected, json.dumps({"prompt": "hi"}), binary=True)
    assert management.events("c1")[0]["type"] == "accepted"


def test_an_action_parsed_but_not_served_is_answered_not_dropped(connected, management, monkeypatch):
    from dataclasses import dataclass

    from chalicelib.handlers import messages

    @dataclass(frozen=True)
    class Novelty:
        pass

    monkeypatch.setattr(messages, "parse_client_message", lambda *_args, **_kwargs: Novelty())
    send(connected, '{"action": "novelty"}')
    (event,) = management.events("c1")
    assert event["type"] == "error" and event["code"] == "invalid_request" and "Novelty" in event["message"]


def test_documents_on_a_stage_without_a_documents_bucket_are_refused_clearly(connected, management):
    for body in ('{"action": "documents"}', '{"action": "upload", "fileName": "a.md", "contentType": "text/markdown", "size": 3}'):
        send(connected, body)
    assert [(e["type"], e["code"], e["message"]) for e in management.events("c1")] == 2 * [
        ("error", "invalid_request", "Documents are not enabled on this stage (it has no documents bucket).")]


def test_ping_gets_pong(connected, management):
    send(connected, '{"action": "ping"}')
    assert management.events("c1") == [{"type": "pong"}]


def test_an_unknown_connection_cannot_ask(client, management, settings):
    send(client, '{"prompt": "hi"}', connection_id="stranger")
    (event,) = management.events("stranger")
    assert event["code"] == "unauthorized"
    assert turns(settings) == []


def test_memory_id_only_when_enabled(connected, management, runtime, settings):
    send(connected, '{"prompt": "hi"}')
    assert "memoryId" not in turns(settings)[0]


def test_a_failing_queue_ends_the_turn_with_a_retryable_internal_error(connected, management, runtime, settings):
    boto3.client("sqs").delete_queue(QueueUrl=settings.turn_queue_url)
    send(connected, '{"prompt": "hi"}')
    accepted, error = management.events("c1")
    assert accepted["type"] == "accepted"
    assert (error["code"], error["retryable"], error["turnId"], error["seq"]) == ("internal", True, accepted["turnId"], 1)
    assert runtime.turns.get(accepted["turnId"]).status == "error"  # no turn left queued forever


def test_a_failing_table_becomes_a_retryable_internal_error(connected, management, settings):
    boto3.client("dynamodb").delete_table(TableName=settings.turns_table)
    send(connected, '{"prompt": "hi"}')
    (error,) = management.events("c1")
    assert (error["code"], error["retryable"]) == ("internal", True)


def test_a_client_that_left_does_not_break_the_handler(connected, management):
    management.gone.add("c1")
    send(connected, '{"prompt": "hi"}')
    assert management.events() == []


def test_an_expired_connection_record_is_no_record(client, management, settings):
    """$disconnect may never run: a record past its TTL must not keep a connection signed in."""
    boto3.client("dynamodb").put_item(
        TableName=settings.connections_table,
        Item={
            "connectionId": {"S": "stale"},
            "userId": {"S": "alice"},
            "connectedAt": {"N": "0"},
            "expiresAt": {"N": "1"},  # long past: DynamoDB's TTL sweep may lag by days
            "inFlight": {"N": "0"},
        },
    )
    send(client, '{"prompt": "hi"}', connection_id="stale")
    (event,) = management.events("stale")
    assert event["code"] == "unauthorized"
    assert turns(settings) == []


@pytest.mark.parametrize(
    "body, words",
    [
        ("[" * 10_000 + "]" * 10_000, "nested too deeply"),
        ('{"prompt": ' + "[" * 40 + "1" + "]" * 40 + "}", "nested too deeply"),
        ('{"prompt": "\\ud800"}', "unpaired surrogate"),
        ('{"prompt": "hi", "conversationId": "\\udfff"}', "unpaired surrogate"),
        ('{"prompt": "hi", "requestId": "r\\ud83d"}', "unpaired surrogate"),
        ('{"action": "resume", "turnId": "\\ud800"}', "unpaired surrogate"),
        ('{"action": "return_control", "turnId": "t", "invocationId": "i", '
         '"results": [{"functionResult": {"responseBody": {"TEXT": {"body": "\\udc00"}}}}]}', "unpaired surrogate"),
        ('{"prompt": "\\u200b\\u200b\\ufeff"}', "invisible"),
    ],
    ids=["deep-10000", "deep-40", "prompt", "conversationId", "requestId", "turnId", "tool-result", "invisible"],
)
def test_hostile_frames_get_invalid_request_before_any_write(connected, management, settings, body, words):
    send(connected, body)
    (event,) = management.events("c1")
    assert (event["type"], event["code"], event["retryable"]) == ("error", "invalid_request", False)
    assert words in event["message"]
    assert turns(settings) == [] and queued(settings) == []


def test_a_null_action_is_an_ask(connected, management, settings):
    send(connected, json.dumps({"action": None, "prompt": "hi", "trace": None}))
    assert management.events("c1")[0]["type"] == "accepted"
    assert len(queued(settings)) == 1


@pytest.mark.parametrize(
    "frame",
    ['{"action": "ping"}', '{"action": "resume", "turnId": "nope"}', "{not json"],
    ids=["ping", "resume", "invalid"],
)
def test_floods_of_frames_other_than_asks_are_limited_per_connection(connected, management, runtime, frame):
    from dataclasses import replace

    runtime.settings = replace(runtime.settings, frame_limit=5, frame_window_s=3600)
    for _ in range(8):
        send(connected, frame)
    events = management.events("c1")
    assert len(events) == 8  # every frame answered, none silently dropped
    assert all(e.get("code") != "rate_limited" for e in events[:5])
    for limited in events[5:]:
        assert (limited["code"], limited["retryable"]) == ("rate_limited", True) and limited["retryAfterMs"] > 0
    send(connected, json.dumps({"prompt": "asks have their own bucket"}))
    assert management.events("c1")[-1]["type"] == "accepted"
