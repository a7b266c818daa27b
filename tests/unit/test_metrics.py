"""Per-turn metrics: which ones (pure), and the EMF lines the worker really writes (parsed)."""
import json
import time

import boto3

from chalicelib.turns.metrics import Metric, turn_metrics
from chalicelib.turns.report import TurnReport
from tests.support.fakes import client_error
from tests.support.events import sqs_event
from tests.support.worker import drain_queue, run_queued

DONE = TurnReport("t1", "alice", "c1", "s1", "agent", "dev", "done", duration_ms=900, queue_ms=20,
                  first_token_ms=300, messages=7, input_tokens=12, output_tokens=40)


def test_a_finished_turn_reports_timings_messages_and_tokens():
    assert turn_metrics(DONE) == [
        Metric("Turns", "Count", 1), Metric("TimeToFirstTokenMs", "Milliseconds", 300),
        Metric("TurnDurationMs", "Milliseconds", 900), Metric("QueueWaitMs", "Milliseconds", 20),
        Metric("Messages", "Count", 7), Metric("InputTokens", "Count", 12), Metric("OutputTokens", "Count", 40),
    ]


def test_throttled_and_interrupted_turns_are_counted_and_unknowns_left_out():
    throttled = TurnReport("t2", "bob", "c2", "s2", "converse", "dev", "throttled", duration_ms=50, queue_ms=5)
    names = [m.name for m in turn_metrics(throttled)]
    assert "BedrockThrottles" in names and "TimeToFirstTokenMs" not in names and "InputTokens" not in names
    interrupted = TurnReport("t3", "bob", "c3", "s3", "agent", "dev", "interrupted", queue_ms=70_000)
    assert [m.name for m in turn_metrics(interrupted)] == ["Turns", "TurnDurationMs", "QueueWaitMs", "InterruptedTurns"]


def emf_lines(text):
    """The embedded-metric-format documents among the log lines, parsed."""
    documents = []
    for line in text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def test_the_worker_writes_one_emf_line_per_turn_with_stage_and_backend_only(conn, client, settings, capsys):
    conn()(prompt="hi")
    assert run_queued(client, settings) == {"batchItemFailures": []}
    (document,) = emf_lines(capsys.readouterr().out)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "agentstream" and directive["Dimensions"] == [["stage", "backend"]]
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert units == {"Turns": "Count", "TimeToFirstTokenMs": "Milliseconds", "TurnDurationMs": "Milliseconds",
                     "QueueWaitMs": "Milliseconds", "Messages": "Count"}  # the fake agent reports no tokens
    assert (document["stage"], document["backend"]) == (settings.stage, "agent")
    assert document["Turns"] == [1.0] and document["Messages"] == [2.0]  # the coalesced chunk and done (accepted is $default's)
    assert "alice" not in json.dumps(document)  # no user id: a dimension per user would be a metric per user


def test_a_failed_turn_adds_an_error_count_by_code(conn, client, settings, agent, capsys):
    agent.script = client_error("throttlingException", "slow down", 429)
    conn()(prompt="hi")
    run_queued(client, settings)
    documents = emf_lines(capsys.readouterr().out)
    (errors,) = [d for d in documents if "TurnErrors" in d]
    assert errors["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["stage", "backend", "ErrorCode"]]
    assert (errors["ErrorCode"], errors["TurnErrors"]) == ("throttled", [1.0])
    (turn,) = [d for d in documents if "Turns" in d]
    assert turn["BedrockThrottles"] == [1.0]


def test_an_interrupted_turn_reports_its_wait_and_its_run_until_the_last_heartbeat(conn, client, runtime, settings, capsys):
    conn()(prompt="hi")
    (body,) = drain_queue(settings)
    turn_id = json.loads(body)["turnId"]
    assert runtime.turns.claim(turn_id)  # a worker claimed it, then died
    now = int(time.time() * 1000)
    created, claimed, heartbeat = now - 61_000, now - 60_000, now - 58_766  # long stale
    boto3.client("dynamodb").update_item(
        TableName=settings.turns_table, Key={"turnId": {"S": turn_id}},
        UpdateExpression="SET createdAt = :c, claimedAt = :cl, checkpointAt = :h",
        ExpressionAttributeValues={":c": {"N": str(created)}, ":cl": {"N": str(claimed)}, ":h": {"N": str(heartbeat)}},
    )
    capsys.readouterr()
    client.lambda_.invoke("turn_worker", sqs_event([body]))  # the redelivery ends it
    documents = emf_lines(capsys.readouterr().out)
    (turn,) = [d for d in documents if "Turns" in d]
    assert (turn["InterruptedTurns"], turn["QueueWaitMs"], turn["TurnDurationMs"]) == ([1.0], [1000.0], [1234.0])
    (errors,) = [d for d in documents if "TurnErrors" in d]
    assert errors["ErrorCode"] == "interrupted"
