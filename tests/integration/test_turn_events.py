"""Turn events on the local stack: the worker puts them on moto's EventBridge, a rule sends them on
to an SQS queue (as a billing or analytics subscriber would), and they hold no content."""
from __future__ import annotations

import json
import secrets
from typing import Any, Dict, Iterator, List

import boto3
import pytest

from tests.support.stack import answer_of, ask, assert_one_well_formed_turn
from tests.support.timing import wait_until

pytestmark = pytest.mark.integration


def _strings(node: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_turn_events_arrive_on_the_local_bus_with_no_content_fields(stack):
    queue_url = stack.info["turn_events_queue_url"]
    assert queue_url, "the local stack subscribes a queue to its turn events"
    sqs = boto3.client("sqs", endpoint_url=stack.info["moto"], region_name="us-east-1")
    nonce = secrets.token_hex(6)  # in both prompts and both answers, and nowhere else
    user = f"events-{nonce}"
    with stack.connect(user) as ws:
        answered = ask(ws, f"what do turn events hold {nonce}")
        failed = ask(ws, f"!stream-error {nonce} and then more")
    assert_one_well_formed_turn(answered)
    assert_one_well_formed_turn(failed)
    assert answered[-1]["type"] == "done" and failed[-1]["code"] == "agent_error"
    assert nonce in answer_of(answered)
    turns = {answered[0]["turnId"]: "TurnCompleted", failed[0]["turnId"]: "TurnFailed"}

    seen: List[Dict[str, Any]] = []  # this test is the queue's only reader: it takes what it reads

    def both_arrived() -> bool:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            seen.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return {event["detail"]["turnId"] for event in seen} >= set(turns)

    wait_until(both_arrived, timeout=15, message="no turn events for both turns on the local bus")
    both_arrived()  # and nothing more for them
    ours = [event for event in seen if event["detail"]["turnId"] in turns]
    assert sorted(event["detail"]["turnId"] for event in ours) == sorted(turns)  # exactly one each

    for event in ours:
        detail = event["detail"]
        assert event["source"] == "agentstream" and event["detail-type"] == turns[detail["turnId"]]
        assert detail["userId"] == user and detail["stage"] == "local" and detail["backend"] == "agent"
        assert detail["durationMs"] >= 0 and detail["queueMs"] >= 0 and detail["messages"] >= 1
        assert not {"prompt", "answer", "text", "inputText", "content"} & set(_strings(detail))
        # Neither prompt nor answer text anywhere (the user id holds the nonce on purpose: an id).
        for value in _strings({key: value for key, value in detail.items() if key != "userId"}):
            assert nonce not in value and "You said" not in value and "turn events hold" not in value, (detail, value)
    (completed,) = [e["detail"] for e in ours if e["detail-type"] == "TurnCompleted"]
    (failure,) = [e["detail"] for e in ours if e["detail-type"] == "TurnFailed"]
    assert completed["outcome"] == "done" and "errorCode" not in completed and completed["firstTokenMs"] >= 0
    assert failure["outcome"] == failure["errorCode"] == "agent_error"
