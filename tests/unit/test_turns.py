"""The whole turn through the handlers: connect, ask, then the SQS worker streams the answer."""
import json
import sys
import threading
import time
from functools import partial

import boto3
import pytest

from chalicelib.turns.outcomes import Status
from chalicelib.turns.run import TurnRun
from tests.support.events import sqs_event, ws_event
from tests.support.fakes import agent_stream, client_error, stream_error, until
from tests.support.timing import ManualClock
from tests.support.tokens import make_token


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


def chunks_posted(management, connection_id="c1"):
    """How many chunks reached the connection so far (a point in the turn a script can wait for)."""
    return sum(1 for event in management.events(connection_id) if event["type"] == "chunk")


def test_many_small_deltas_are_coalesced(client, ask, management, agent, monkeypatch):
    clock = ManualClock()  # the relay's clock: a millisecond passes per delta, however busy the machine
    run = sys.modules[TurnRun.__module__]
    monkeypatch.setattr(run, "Relay", partial(run.Relay, clock=clock))
    deltas = [f"w{i} " for i in range(200)]
    agent.script = []
    for index, delta in enumerate(deltas, start=1):
        agent.script += [partial(clock.advance, 0.001), {"chunk": {"bytes": delta.encode()}}]
        if index % 25 == 0:  # every 25 ms, the relay (20 ms interval) has posted what was due
            agent.script.append(until(lambda posts=index // 25: chunks_posted(management) >= posts))
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
    agent.script = [
        {"chunk": {"bytes": b"one "}},
        until(lambda: chunks_posted(management) == 1),  # the first chunk reached the client...
        {"chunk": {"bytes": b"two "}},  # ... which has left before the next
        {"chunk": {"bytes": b"three"}},
    ]
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
    claimed = runtime.turns.claim(turn_id)  # a worker claimed it, sent three events, then died
    assert runtime.turns.checkpoint(claimed, 0, {"answer": "one two", "seq_ends": "3,-,7"}) is None
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
    assert error["lastSeq"] == 3 and "seq" not in error  # as far as its last checkpoint knew
    assert runtime.turns.get(turn_id).status == "error"
    work(client, body)  # and a third delivery changes nothing
    assert len([e for e in management.events("c1") if e["type"] == "error"]) == 1


def test_a_duplicate_delivery_while_the_worker_lives_is_ignored(client, ask, management, agent, runtime):
    body = ask()
    turn_id = json.loads(body)["turnId"]
    assert runtime.turns.claim(turn_id)  # another worker is serving it right now
    assert work(client, body) == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}  # look again later
    assert agent.calls == []
    assert [e["type"] for e in management.events("c1")] == ["accepted"]
    assert runtime.turns.get(turn_id).status == "running"


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
    assert runtime.turns.get(turn_id).status == "error"
    assert runtime.turns.get(turn_id).status != Status.RUNNING


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


def test_every_worker_log_line_names_the_connection_turn_and_user(client, ask, agent, management, json_logs):
    # The reader waits while the relay thread posts: the lines of every thread of the turn are in.
    agent.script = [{"chunk": {"bytes": b"secret answer"}}, until(lambda: chunks_posted(management) == 1)]
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


def test_posts_refused_mid_answer_are_retried_and_the_answer_arrives_whole(client, ask, management, agent):
    agent.script = agent_stream("one ", "two ", "three")
    body = ask("hi")
    management.refusing["c1"] = 3  # three posts get 403, then the connection recovers
    assert work(client, body) == {"batchItemFailures": []}
    events = assert_well_formed(management.events("c1"), json.loads(body)["turnId"])
    assert "".join(e["text"] for e in events if e["type"] == "chunk") == "one two three"
    assert events[-1]["type"] == "done" and management.closed == []


def test_a_connection_that_refuses_every_post_is_closed_and_a_resume_gets_the_answer(client, ask, management, agent):
    agent.script = agent_stream("one ", "two")
    body = ask("hi")
    turn_id = json.loads(body)["turnId"]
    management.refusing["c1"] = -1
    assert work(client, body) == {"batchItemFailures": []}
    assert management.closed == ["c1"]  # never an open, silent socket: the client reconnects
    client.lambda_.invoke("websocket_connect", ws_event("$connect", "c2", query={"token": make_token("alice")}))
    resume = json.dumps({"action": "resume", "turnId": turn_id})
    client.lambda_.invoke("websocket_message", ws_event("$default", "c2", body=resume))
    events = assert_well_formed(management.events("c2"), turn_id)
    assert "".join(e["text"] for e in events if e["type"] == "chunk") == "one two"
    assert events[-1]["type"] == "done"


def test_a_silent_turn_sends_progress_with_the_agent_s_phase_but_not_its_trace(client, ask, management, agent, runtime):
    from dataclasses import replace

    runtime.settings = replace(runtime.settings, progress_interval_s=0.01, control_interval_ms=20)
    lookup = {"orchestrationTrace": {"invocationInput": {"knowledgeBaseLookupInput": {"knowledgeBaseId": "KB", "text": "secret query"}}}}

    def progress_posted():
        return [e for e in management.events("c1") if e["type"] == "progress"]

    agent.script = [*agent_stream(traces=[lookup]), until(progress_posted), *agent_stream("found it")]
    body = ask()  # no trace asked for
    work(client, body)
    events = management.events("c1")
    progress = progress_posted()[0]
    assert progress["phase"] == "searching the knowledge base" and "seq" not in progress and progress["elapsedMs"] >= 0
    assert "secret query" not in json.dumps(events) and "trace" not in [e["type"] for e in events]
    numbered = [e for e in events if "seq" in e]
    assert [e["seq"] for e in numbered] == list(range(1, len(numbered) + 1)) and numbered[-1]["type"] == "done"


def test_a_cancel_concluded_by_the_watcher_still_ends_the_turn_when_the_reader_stops_first(
    client, ask, management, agent, runtime, monkeypatch
):
    """The watcher sees the cancel and persists the end while the reader, seeing it too, leaves the
    stream: the reader must not close the relay before the watcher queued the terminal event."""
    from dataclasses import replace

    from chalicelib.turns.outbox import Outbox

    runtime.settings = replace(runtime.settings, control_interval_ms=20)
    sealed, finishing = threading.Event(), threading.Event()
    seal = Outbox.seal
    monkeypatch.setattr(Outbox, "seal", lambda self: (sealed.set(), seal(self))[1])
    finish = runtime.turns.finish

    def watcher_finishes_after_the_reader_left(*args, **kwargs):
        if threading.current_thread().name == "watcher":
            finishing.set()
            sealed.wait(2)  # the interleaving that lost the terminal, if the reader can get there
        return finish(*args, **kwargs)

    monkeypatch.setattr(runtime.turns, "finish", watcher_finishes_after_the_reader_left)
    body = ask()
    turn_id = json.loads(body)["turnId"]
    agent.script = [
        *agent_stream("one "),
        lambda: runtime.turns.request_cancel(turn_id, "alice"),
        until(finishing.is_set),
        *agent_stream("two"),
    ]
    work(client, body)
    events = assert_well_formed(management.events("c1"), turn_id)
    assert (events[-1]["type"], events[-1]["code"]) == ("error", "cancelled")
