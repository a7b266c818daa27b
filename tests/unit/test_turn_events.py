"""Turn events on EventBridge: what one holds (ids, outcome, timings, usage; never content), and
that the worker puts it, after the terminal event, on the bus TURN_EVENT_BUS names."""
import json
from dataclasses import replace

import boto3
import pytest

from chalicelib.runtime import Runtime
from chalicelib.turns import eventbus
from chalicelib.turns.eventbus import COMPLETED, FAILED, SOURCE, turn_event, turn_event_detail
from chalicelib.turns.report import TurnReport, consumers, report_turn
from devserver.resources import subscribe_turn_events
from tests.support.events import sqs_event, ws_event
from tests.support.fakes import FakeClients, client_error
from tests.support.tokens import make_token

COMPLETED_FIELDS = {"turnId", "userId", "sessionId", "connectionId", "stage", "backend", "outcome", "durationMs", "queueMs",
                    "firstTokenMs", "messages", "usage"}
CONTENT_FIELDS = {"prompt", "answer", "text", "inputText", "content", "message", "output"}


def _report(**fields):
    base = dict(turn_id="t-1", user_id="alice", connection_id="c1", session_id="s-1", backend="converse", stage="dev",
                outcome="done", duration_ms=1200, queue_ms=40, first_token_ms=300, messages=7, input_tokens=12, output_tokens=34)
    return TurnReport(**{**base, **fields})


# ---- the event, a pure function of the report


def test_a_completed_turn_is_a_turn_completed_event_of_ids_timings_and_usage():
    entry = turn_event(_report(), "billing")
    assert (entry["EventBusName"], entry["Source"], entry["DetailType"]) == ("billing", SOURCE, COMPLETED)
    assert set(entry) == {"EventBusName", "Source", "DetailType", "Detail"}  # no Time: EventBridge stamps the put
    detail = json.loads(entry["Detail"])
    assert detail == {
        "turnId": "t-1", "userId": "alice", "sessionId": "s-1", "connectionId": "c1", "stage": "dev", "backend": "converse",
        "outcome": "done", "durationMs": 1200, "queueMs": 40, "firstTokenMs": 300, "messages": 7,
        "usage": {"inputTokens": 12, "outputTokens": 34},
    }
    assert set(detail) == COMPLETED_FIELDS and not set(detail) & CONTENT_FIELDS


def test_a_failed_turn_is_a_turn_failed_event_with_its_error_code_and_what_is_unknown_left_out():
    report = _report(outcome="throttled", first_token_ms=None, input_tokens=None, output_tokens=None, messages=1)
    entry = turn_event(report, "default")
    assert entry["DetailType"] == FAILED
    detail = json.loads(entry["Detail"])
    assert detail["errorCode"] == detail["outcome"] == "throttled"
    assert set(detail) == COMPLETED_FIELDS - {"firstTokenMs", "usage"} | {"errorCode"}
    assert not set(detail) & CONTENT_FIELDS


def test_an_interrupted_turn_is_a_turn_failed_event_too():
    # As the worker reports a turn whose worker died: no run of its own, so no timings but the wait.
    report = TurnReport("t-2", "bob", "c9", "s-2", "agent", "prod", "interrupted", queue_ms=90_000)
    detail = turn_event_detail(report)
    assert turn_event(report, "default")["DetailType"] == FAILED
    assert detail == {"turnId": "t-2", "userId": "bob", "sessionId": "s-2", "connectionId": "c9", "stage": "prod",
                      "backend": "agent", "outcome": "interrupted", "errorCode": "interrupted", "durationMs": 0,
                      "queueMs": 90_000, "messages": 0}


def test_the_detail_is_built_from_the_report_alone_which_holds_no_content():
    from dataclasses import fields

    assert not {f.name for f in fields(TurnReport)} & {"prompt", "answer", "text", "content"}
    assert turn_event_detail(_report()) == turn_event_detail(_report())  # nothing but the report goes in


# ---- the publisher


class RecordingEvents:
    def __init__(self, response=None, error=None):
        self.calls, self.response, self.error = [], response, error

    def put_events(self, **params):
        self.calls.append(params)
        if self.error is not None:
            raise self.error
        return self.response or {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]}


class Recording:
    def __init__(self, settings, events):
        self.settings, self.clients = settings, type("Clients", (), {"events": events})()


def test_the_worker_reports_through_the_event_publisher():
    assert eventbus.publish_turn_event in consumers()


def test_the_publisher_puts_one_entry_on_the_configured_bus(settings):
    events = RecordingEvents()
    report_turn(Recording(replace(settings, turn_event_bus="billing"), events), _report())
    assert events.calls == [{"Entries": [turn_event(_report(), "billing")]}]


def test_no_bus_no_event_and_no_client(runtime):
    assert runtime.settings.turn_event_bus == ""  # the default: existing stages put nothing
    report_turn(runtime, _report())
    assert "events" not in vars(runtime.clients)  # the EventBridge client was never even built


def test_a_refused_entry_is_logged_and_a_failed_put_never_reaches_the_turn(settings, caplog):
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}
    events = RecordingEvents(response=refused)
    failing = RecordingEvents(error=client_error("ResourceNotFoundException", "Event bus gone does not exist."))
    with caplog.at_level("INFO"):
        report_turn(Recording(replace(settings, turn_event_bus="default"), events), _report())
        report_turn(Recording(replace(settings, turn_event_bus="gone"), failing), _report())  # logged, not raised
    assert len(events.calls) == len(failing.calls) == 1
    logged = [(record.getMessage(), getattr(record, "error", None)) for record in caplog.records]
    assert ("turn event not put", "InternalFailure") in logged
    assert any(message == "turn report consumer failed" for message, _ in logged)


# ---- through the worker, against moto's EventBridge


@pytest.fixture
def events_queue(resources):
    """A subscriber: a rule on the default bus matching the app's source, sending to a queue."""
    return subscribe_turn_events(boto3.client("events"), boto3.client("sqs"), prefix="test")


def _delivered(queue_url):
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def test_the_worker_puts_a_turn_completed_after_the_done_with_no_content(settings, management, agent, events_queue):
    from chalice.test import Client

    import app
    from chalicelib.runtime import set_runtime
    from tests.conftest import ROOT

    configured = replace(settings, turn_event_bus="default")
    runtime = Runtime(configured, FakeClients(configured, management, agent))
    set_runtime(runtime)
    try:
        with Client(app.app, stage_name="dev", project_dir=str(ROOT)) as client:
            client.lambda_.invoke("websocket_connect", ws_event("$connect", "c1", query={"token": make_token("alice")}))
            client.lambda_.invoke("websocket_message", ws_event("$default", "c1", body=json.dumps({"prompt": "What is SQS?"})))
            sqs = boto3.client("sqs")
            (message,) = sqs.receive_message(QueueUrl=settings.turn_queue_url)["Messages"]
            assert client.lambda_.invoke("turn_worker", sqs_event([message["Body"]])).payload == {"batchItemFailures": []}
    finally:
        set_runtime(None)
    turn_id = json.loads(message["Body"])["turnId"]
    assert management.events("c1")[-1]["type"] == "done"
    (event,) = _delivered(events_queue)
    assert (event["source"], event["detail-type"]) == (SOURCE, COMPLETED)
    detail = event["detail"]
    assert (detail["turnId"], detail["userId"], detail["connectionId"], detail["outcome"]) == (turn_id, "alice", "c1", "done")
    assert detail["stage"] == "local" and detail["backend"] == "agent" and detail["messages"] >= 2  # chunk(s) and done
    raw = json.dumps(event)
    assert "What is SQS?" not in raw and "Hello" not in raw and "world" not in raw  # neither the prompt nor the answer
