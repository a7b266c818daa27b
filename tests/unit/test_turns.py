"""The whole turn through the handlers: connect, ask, then the SQS worker streams the answer."""
import json
import time

import boto3
import pytest

from chalicelib.store import RUNNING
from tests.events import sqs_event, ws_event
from tests.fakes import agent_stream, client_error, sleeper, stream_error
from tests.tokens import make_token


@pytest.fixture
def ask(client, management, settings):
    """Connect as alice and ask; returns a function that runs the queued turn through the worker."""

    def _ask(prompt="hi", connection_id="c1", user="alice", **fields):
        client.lambda_.invoke("websocket_connect", ws_event("$connect", connection_id, query={"token": make_token(user)}))
        body = json.dumps({"prompt": prompt, **fields})
        client.lambda_.invoke("websocket_message", ws_event("$default", connection_id, body=body))
        sqs = boto3.client("sqs")
        (message,) = sqs.receive_message(QueueUrl=settings.turn_queue_url).get("Messages", [])
        sqs.delete_message(QueueUrl=settings.turn_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return message["Body"]

    return _ask


def work(client, *bodies):
    return client.lambda_.invoke("turn_worker", sqs_event(list(bodies))).payload


def turn_record(settings, turn_id):
    item = boto3.client("dynamodb").get_item(TableName=settings.turns_table, Key={"turnId": {"S": turn_id}})["Item"]
    return {key: list(value.values())[0] for key, value in item.items()}


def assert_well_formed(events, turn_id):
    """seq from 1, rising by one; exactly one terminal event, last."""
    turn_events = [event for event in events if event.get("turnId") == turn_id and event["type"] != "accepted"]
    assert [event["seq"] for event in turn_events] == list(range(1, len(turn_events) + 1))
    terminals = [event for event in turn_events if event["type"] in ("done", "error")]
    assert len(terminals) == 1 and terminals[0] is turn_events[-1]
    return turn_events


def test_a_turn_streams_in_order_with_one_done(client, ask, management, agent, settings):
    body = ask("What is SQS?")
    assert work(client, body) == {"batchItemFailures": []}
    turn_id = json.loads(body)["turnId"]
    events = assert_well_formed(management.events("c1"), turn_id)
    assert "".join(e["text"] for e in events if e["type"] == "chunk") == "Hello, world"
    done = events[-1]
    assert done["type"] == "done"
    assert done["sessionId"] == agent.calls[0]["sessionId"]
    assert done["stats"]["characters"] == len("Hello, world")
    assert done["stats"]["chunks"] == sum(1 for e in events if e["type"] == "chunk")
    assert done["stats"]["firstTokenMs"] >= 0 and done["stats"]["durationMs"] >= 0
    assert agent.calls[0]["inputText"] == "What is SQS?"
    record = turn_record(settings, turn_id)
    assert record["status"] == "done" and record["answer"] == "Hello, world"


def test_many_small_deltas_are_coalesced(client, ask, management, agent):
    deltas = [f"w{i} " for i in range(200)]
    agent.script = [item for d in deltas for item in (sleeper(0.001), {"chunk": {"bytes": d.encode()}})]
    body = ask()
    work(client, body)
    events = assert_well_formed(management.events("c1"), json.loads(body)["turnId"])
    chunks = [e for e in events if e["type"] == "chunk"]
    assert "".join(e["text"] for e in chunks) == "".join(deltas)
    assert len(chunks) < len(deltas) / 3


def test_a_big_answer_is_split_into_frames_of_at_most_32_kb(client, ask, management, agent):
    agent.script = agent_stream("é" * 50_000, "x" * 50_000)
    body = ask()
    work(client, body)
    events = assert_well_formed(management.events("c1"), json.loads(body)["turnId"])
    assert all(len(data) <= 32 * 1024 for _, data in management.posts)
    assert "".join(e["text"] for e in events if e["type"] == "chunk") == "é" * 50_000 + "x" * 50_000


def test_trace_events_only_when_asked(client, ask, management, agent):
    agent.script = agent_stream("a", traces=[{"orchestrationTrace": {"rationale": {"text": "think"}}}])
    body = ask(trace=True)
    work(client, body)
    events = assert_well_formed(management.events("c1"), json.loads(body)["turnId"])
    assert [e["type"] for e in events] == ["trace", "chunk", "done"]
    assert agent.calls[0]["enableTrace"] is True


def test_traces_are_dropped_when_not_asked(client, ask, management, agent):
    agent.script = agent_stream("a", traces=[{"x": 1}])
    body = ask()
    work(client, body)
    assert [e["type"] for e in management.events("c1")] == ["accepted", "chunk", "done"]


def test_session_is_derived_from_user_and_conversation(client, ask, agent):
    work(client, ask(conversationId="trip", connection_id="c1", user="alice"))
    work(client, ask(conversationId="trip", connection_id="c2", user="alice"))
    work(client, ask(conversationId="trip", connection_id="c3", user="bob"))
    first, second, third = (call["sessionId"] for call in agent.calls)
    assert first == second != third


@pytest.mark.parametrize(
    "script, code, retryable",
    [
        (client_error("ThrottlingException", "Rate exceeded", 429), "throttled", True),
        ([stream_error("throttlingException")], "throttled", True),
        (client_error("AccessDeniedException", "not allowed", 403), "agent_error", False),
        ([{"chunk": {"bytes": b"par"}}, stream_error("internalServerException")], "agent_error", True),
    ],
    ids=["throttle-before", "throttle-inside", "denied", "stream-error"],
)
def test_failures_end_with_one_error_event(client, ask, management, agent, settings, script, code, retryable):
    agent.script = script
    body = ask()
    assert work(client, body) == {"batchItemFailures": []}  # handled: no redelivery
    turn_id = json.loads(body)["turnId"]
    events = assert_well_formed(management.events("c1"), turn_id)
    error = events[-1]
    assert (error["type"], error["code"], error["retryable"]) == ("error", code, retryable)
    assert error["message"]
    record = turn_record(settings, turn_id)
    assert record["status"] == "error" and record["errorCode"] == code


def test_a_gone_client_stops_the_relay_keeps_the_answer_and_drops_the_connection(client, ask, management, agent, settings):
    agent.script = [item for word in ["one ", "two ", "three"] for item in (sleeper(0.05), {"chunk": {"bytes": word.encode()}})]
    body = ask()
    management.gone_after["c1"] = 1  # the client leaves after the first chunk
    assert work(client, body) == {"batchItemFailures": []}
    turn_id = json.loads(body)["turnId"]
    assert [e["type"] for e in management.events("c1")] == ["accepted", "chunk"]
    record = turn_record(settings, turn_id)
    assert record["status"] == "done" and record["answer"] == "one two three"
    assert boto3.client("dynamodb").scan(TableName=settings.connections_table)["Items"] == []


def test_duplicate_delivery_does_not_invoke_the_agent_twice(client, ask, management, agent):
    body = ask()
    work(client, body)
    posts = len(management.posts)
    assert work(client, body) == {"batchItemFailures": []}
    assert len(agent.calls) == 1
    assert len(management.posts) == posts


def test_a_claimed_turn_whose_worker_died_is_interrupted_not_rerun(client, ask, management, agent, runtime, settings):
    body = ask()
    turn_id = json.loads(body)["turnId"]
    assert runtime.store.claim_turn(turn_id)  # a worker claimed it, then died: no more heartbeats
    stale = str(int(time.time() * 1000) - runtime.settings.heartbeat_timeout_ms - 1)
    boto3.client("dynamodb").update_item(
        TableName=settings.turns_table,
        Key={"turnId": {"S": turn_id}},
        UpdateExpression="SET checkpointAt = :t",
        ExpressionAttributeValues={":t": {"N": stale}},
    )
    work(client, body)
    assert agent.calls == []
    (error,) = [e for e in management.events("c1") if e["type"] == "error"]
    assert (error["code"], error["retryable"], error["turnId"]) == ("interrupted", True, turn_id)
    assert runtime.store.get_turn(turn_id).status == "error"
    work(client, body)  # and a third delivery changes nothing
    assert len([e for e in management.events("c1") if e["type"] == "error"]) == 1


def test_a_duplicate_delivery_while_the_worker_lives_is_ignored(client, ask, management, agent, runtime):
    body = ask()
    turn_id = json.loads(body)["turnId"]
    assert runtime.store.claim_turn(turn_id)  # another worker is serving it right now
    assert work(client, body) == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}  # look again later
    assert agent.calls == []
    assert [e["type"] for e in management.events("c1")] == ["accepted"]
    assert runtime.store.get_turn(turn_id).status == "running"


def test_poison_and_missing_messages(client, ask, management):
    good = ask()
    result = work(client, "not json", json.dumps({"turnId": "nope", "apiId": "a", "stage": "s"}), good)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}  # only the poison is retried
    assert management.events("c1")[-1]["type"] == "done"


def test_an_outage_before_the_claim_is_retried(client, ask, settings):
    body = ask()
    boto3.client("dynamodb").delete_table(TableName=settings.turns_table)
    assert work(client, body) == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}


def test_a_crash_after_the_claim_ends_the_turn_with_internal(client, ask, management, agent, runtime):
    def explode():
        raise RuntimeError("bug")

    agent.script = [{"chunk": {"bytes": b"a"}}, explode]
    body = ask()
    assert work(client, body) == {"batchItemFailures": []}
    turn_id = json.loads(body)["turnId"]
    errors = [e for e in management.events("c1") if e["type"] == "error"]
    assert [(e["code"], e["retryable"]) for e in errors] == [("internal", True)]
    assert runtime.store.get_turn(turn_id).status == "error"
    assert runtime.store.get_turn(turn_id).status != RUNNING


def test_an_outage_when_recording_the_end_still_ends_the_turn_for_the_client(client, ask, management, agent, settings):
    body = ask()
    agent.script = [
        {"chunk": {"bytes": b"almost"}},
        lambda: boto3.client("dynamodb").delete_table(TableName=settings.turns_table),
    ]
    assert work(client, body) == {"batchItemFailures": []}
    events = [e for e in management.events("c1") if e["type"] != "accepted"]
    assert [e["type"] for e in events] == ["chunk", "error"]
    assert (events[-1]["code"], events[-1]["retryable"], events[-1]["seq"]) == ("internal", True, 2)


@pytest.fixture
def json_logs():
    """The app's log lines as Powertools formats them, keys included (formatted in the emitting thread)."""
    import io
    import logging

    from chalicelib.logs import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    target = logging.getLogger(logger.service)
    target.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    target.removeHandler(handler)


def test_every_worker_log_line_names_the_connection_turn_and_user(client, ask, agent, json_logs):
    agent.script = [{"chunk": {"bytes": b"secret answer"}}, sleeper(0.05)]
    body = ask("my private prompt")
    work(client, body)
    lines = json_logs()
    worker = [line for line in lines if line.get("message_id")]
    assert worker and any(line["message"] == "turn finished" for line in worker)
    for line in worker:
        assert {"connection_id", "turn_id", "user_id"} <= set(line), line
    everything = json.dumps(lines)
    assert "my private prompt" not in everything and "secret answer" not in everything


def test_prompts_and_answers_are_logged_only_when_asked(client, ask, agent, runtime, json_logs):
    from dataclasses import replace

    runtime.settings = replace(runtime.settings, log_content=True)
    agent.script = agent_stream("secret answer")
    work(client, ask("my private prompt"))
    everything = json.dumps(json_logs())
    assert "my private prompt" in everything and "secret answer" in everything
