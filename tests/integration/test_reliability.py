"""No answer lost or duplicated: faults injected into the local stack, observed by a real client."""
from __future__ import annotations

import json
import time

import boto3
import pytest

from tests.support.faults import arm_worker_kill, inject, kill_worker, wait_for_no_connection, wait_for_turn_status
from tests.support.stack import answer_of, ask, assert_one_well_formed_turn, receive_turn, start_stack, stop_stack
from tests.support.timing import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def faulty():
    """A stack whose failures surface quickly: short visibility timeout and heartbeat, tight limits."""
    stack = start_stack(
        VISIBILITY_TIMEOUT_S="3",
        CONTROL_INTERVAL_MS="100",
        CHECKPOINT_INTERVAL_MS="300",
        RATE_LIMIT_BURST="3",
        RATE_LIMIT_PER_S="0.05",
    )
    yield stack
    stop_stack(stack)


def sqs(stack):
    return boto3.client(
        "sqs", endpoint_url=stack.info["dynamodb"], region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def quiet_for(ws, seconds):
    """Nothing more arrives on this connection for a while."""
    with pytest.raises(TimeoutError):
        ws.recv(timeout=seconds)


def test_drop_mid_stream_then_resume_gives_the_whole_answer_exactly_once(faulty):
    prompt = "!slow 3 one two three four five six seven eight nine ten"
    with faulty.connect("resumer") as ws:
        ws.send(json.dumps({"prompt": prompt}))
        accepted = json.loads(ws.recv(timeout=10))
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "chunk"
    # The connection is gone ($disconnect ran): the worker's posts get 410 while the agent keeps answering.
    wait_for_no_connection(faulty, "resumer")
    with faulty.connect("resumer") as ws:
        ws.send(json.dumps({"action": "resume", "turnId": accepted["turnId"]}))
        events = receive_turn(ws, timeout=20)
        assert_one_well_formed_turn(events)
        assert answer_of(events) == f"You said: {prompt}"
        quiet_for(ws, 1.0)


def test_resume_after_the_turn_finished_replays_it(faulty):
    with faulty.connect("late") as ws:
        ws.send(json.dumps({"prompt": "!slow 1 brief"}))
        turn_id = json.loads(ws.recv(timeout=10))["turnId"]
    wait_for_turn_status(faulty, turn_id, "done", "error")  # finished; the replay says how
    with faulty.connect("late") as ws:
        ws.send(json.dumps({"action": "resume", "turnId": turn_id}))
        events = receive_turn(ws)
    assert_one_well_formed_turn(events)
    assert answer_of(events) == "You said: !slow 1 brief"


def test_posts_that_hit_limit_exceeded_are_retried(faulty):
    inject(faulty, fail_posts=3)  # fewer than the management client's attempts
    with faulty.connect("busy-buffer") as ws:
        events = ask(ws, "retry my posts")
    assert_one_well_formed_turn(events)
    assert answer_of(events) == "You said: retry my posts"


def test_dynamodb_throttling_is_retried_and_when_it_persists_the_client_is_told(faulty):
    inject(faulty, throttle_dynamodb=2)
    with faulty.connect("throttled-db") as ws:
        assert answer_of(ask(ws, "through the throttle")) == "You said: through the throttle"
        inject(faulty, throttle_dynamodb=40)
        ws.send(json.dumps({"prompt": "this one cannot start"}))
        error = json.loads(ws.recv(timeout=30))
        assert (error["type"], error["code"], error["retryable"]) == ("error", "internal", True)
        inject(faulty, throttle_dynamodb=0)
        assert answer_of(ask(ws, "and afterwards")) == "You said: and afterwards"


def test_a_worker_killed_mid_turn_ends_in_one_interrupted_and_no_second_answer(faulty):
    arm_worker_kill(faulty, "doomed", "doomed-1")
    with faulty.connect("doomed") as ws:
        ws.send(json.dumps({"prompt": "!slow 8 a b c d e f g h i j k l m n o p", "requestId": "doomed-1"}))
        events = [json.loads(ws.recv(timeout=30)), json.loads(ws.recv(timeout=30))]
        kill_worker(faulty)  # at a point of the turn: its first chunk arrived
        events += receive_turn(ws, timeout=30)
        assert events[0]["type"] == "accepted"
        assert any(event["type"] == "chunk" for event in events)  # it was mid-turn
        terminal = events[-1]
        assert (terminal["code"], terminal["retryable"]) == ("interrupted", True)
        quiet_for(ws, 5.0)  # redelivered, but never run again


def test_a_duplicate_sqs_delivery_does_not_answer_twice(faulty):
    with faulty.connect("dup") as ws:
        ws.send(json.dumps({"prompt": "!slow 2 only once"}))
        accepted = json.loads(ws.recv(timeout=10))
        body = json.dumps({"turnId": accepted["turnId"], "apiId": "local", "stage": "local"})
        sqs(faulty).send_message(QueueUrl=faulty.info["queue_url"], MessageBody=body)
        events = [accepted] + receive_turn(ws, timeout=20)
        assert_one_well_formed_turn(events)
        assert answer_of(events) == "You said: !slow 2 only once"
        sqs(faulty).send_message(QueueUrl=faulty.info["queue_url"], MessageBody=body)  # and after it ended
        quiet_for(ws, 2.0)


def test_a_repeated_request_id_starts_no_second_turn(faulty):
    with faulty.connect("idem") as ws:
        ws.send(json.dumps({"prompt": "!slow 1 once", "requestId": "req-42"}))
        first = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"prompt": "!slow 1 once", "requestId": "req-42"}))
        events = [first] + receive_turn(ws, timeout=20)
        duplicates = [e for e in events if e.get("duplicate")]
        assert len(duplicates) == 1 and duplicates[0]["turnId"] == first["turnId"]
        assert answer_of(events) == "You said: !slow 1 once"
        quiet_for(ws, 1.5)


def test_cancel_stops_a_running_turn_within_a_second(faulty):
    with faulty.connect("canceller") as ws:
        ws.send(json.dumps({"prompt": "!slow 6 " + " ".join(f"w{i}" for i in range(30))}))
        turn_id = json.loads(ws.recv(timeout=10))["turnId"]
        assert json.loads(ws.recv(timeout=10))["type"] == "chunk"
        ws.send(json.dumps({"action": "cancel", "turnId": turn_id}))
        asked = time.monotonic()
        events = receive_turn(ws, timeout=10)
        assert time.monotonic() - asked < 1.0
        assert (events[-1]["code"], events[-1]["retryable"]) == ("cancelled", False)
        quiet_for(ws, 1.0)


def test_rate_limits_answer_rate_limited_with_a_retry_hint(faulty):
    with faulty.connect("eager") as ws:
        for index in range(3):
            ask(ws, f"q{index}")
        ws.send(json.dumps({"prompt": "one too many"}))
        event = json.loads(ws.recv(timeout=10))
    assert (event["code"], event["retryable"]) == ("rate_limited", True)
    assert event["retryAfterMs"] > 0


@pytest.mark.parametrize("action", ["resume", "cancel"])
def test_another_users_resume_and_cancel_are_refused(faulty, action):
    with faulty.connect("owner") as ws:
        ws.send(json.dumps({"prompt": "!slow 1 mine"}))
        turn_id = json.loads(ws.recv(timeout=10))["turnId"]
        with faulty.connect("intruder") as other:
            other.send(json.dumps({"action": action, "turnId": turn_id}))
            refused = json.loads(other.recv(timeout=10))
            assert (refused["code"], refused["retryable"]) == ("not_found", False)
            quiet_for(other, 1.5)
        events = receive_turn(ws, timeout=10)
        assert events[-1]["type"] == "done"  # the owner's turn was untouched


def test_a_poison_message_goes_to_the_dead_letter_queue(faulty):
    client = sqs(faulty)
    client.send_message(QueueUrl=faulty.info["queue_url"], MessageBody="not a turn")

    def dead_letters() -> int:
        attributes = client.get_queue_attributes(
            QueueUrl=faulty.info["dead_letter_queue_url"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    wait_until(lambda: dead_letters() == 1, 25, "the poison message never reached the dead-letter queue")
    with faulty.connect("after-poison") as ws:
        assert answer_of(ask(ws, "still working")) == "You said: still working"
