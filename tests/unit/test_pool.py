"""One worker execution, many turns: the batch at once, failures alone and soon, refills from the queue."""
import dataclasses
import json
import threading
from dataclasses import dataclass
from typing import Any, List, Tuple

import boto3
import pytest

from chalicelib.handlers import worker
from chalicelib.turns.queue import Delivery, TurnQueue
from tests.support.events import sqs_event, ws_event
from tests.support.fakes import agent_stream
from tests.support.tokens import make_token


@dataclass
class Context:
    """The Lambda context's clock, as the worker reads it."""

    remaining_ms: float = 900_000.0

    def get_remaining_time_in_millis(self) -> float:
        return self.remaining_ms


class RecordingQueue(TurnQueue):
    """The real queue (moto), and a note of every message settled by the worker."""

    def __init__(self, sqs: Any, url: str) -> None:
        super().__init__(sqs, url)
        self.settled: List[Tuple[str, str, Any]] = []

    def delete(self, delivery: Delivery) -> None:
        self.settled.append(("delete", delivery.message_id, None))
        super().delete(delivery)

    def retry_in(self, delivery: Delivery, seconds: int) -> None:
        self.settled.append(("retry_in", delivery.message_id, seconds))


@pytest.fixture
def queue(runtime):
    recording = RecordingQueue(runtime.clients.sqs, runtime.settings.turn_queue_url)
    runtime.queue = recording  # the runtime hands this one out from now on
    return recording


def queue_turns(client, count: int) -> None:
    """``count`` users each connect and ask once (on connections c0, c1, ...); their turns wait in the queue."""
    for index in range(count):
        connection_id, user = f"c{index}", f"user{index}"
        client.lambda_.invoke("websocket_connect", ws_event("$connect", connection_id, query={"token": make_token(user)}))
        client.lambda_.invoke("websocket_message", ws_event("$default", connection_id, body=json.dumps({"prompt": f"q{index}"})))


def receive(settings, most: int) -> List[dict]:
    messages = boto3.client("sqs").receive_message(QueueUrl=settings.turn_queue_url, MaxNumberOfMessages=most)
    return messages.get("Messages", [])


def records(messages: List[dict]) -> List[dict]:
    return sqs_event([message["Body"] for message in messages])["Records"]


def terminal_types(management, connections: List[str]) -> List[str]:
    return [[e["type"] for e in management.events(c) if e["type"] in ("done", "error")] for c in connections]


def test_every_turn_of_a_batch_streams_at_once(client, runtime, management, agent, settings, queue):
    # Each stream waits at a barrier for all three: run one after another, they would break it.
    barrier = threading.Barrier(3, timeout=10)
    agent.script = agent_stream("Hello") + [barrier.wait] + agent_stream(", world")
    queue_turns(client, 3)
    batch = receive(settings, 3)
    assert len(batch) == 3
    assert worker.handle_batch(runtime, records(batch), Context()) == {"batchItemFailures": []}
    assert terminal_types(management, ["c0", "c1", "c2"]) == [["done"], ["done"], ["done"]]
    assert not barrier.broken


def test_a_record_that_cannot_start_is_reported_alone_and_comes_back_in_seconds(client, runtime, management, settings, queue):
    queue_turns(client, 1)
    (good,) = receive(settings, 1)
    event = sqs_event(["{not a turn", good["Body"]], receive_count=3)
    assert worker.handle_batch(runtime, event["Records"], Context()) == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}
    assert terminal_types(management, ["c0"]) == [["done"]]
    # The third receive waits 2 s x 2 x 2, not the queue's visibility timeout; the good one is left to Lambda.
    assert queue.settled == [("retry_in", "m-0", 8)]


def test_free_slots_take_queued_turns_and_delete_them_once_served(client, runtime, management, settings, queue):
    queue_turns(client, 3)
    first = receive(settings, 1)
    assert worker.handle_batch(runtime, records(first), Context()) == {"batchItemFailures": []}
    assert terminal_types(management, ["c0", "c1", "c2"]) == [["done"], ["done"], ["done"]]
    assert sorted(kind for kind, _, _ in queue.settled) == ["delete", "delete"]  # the two it took itself
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=settings.turn_queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"  # the batch's: Lambda deletes it


def test_no_turn_is_taken_when_too_little_time_is_left(client, runtime, management, settings, queue):
    queue_turns(client, 2)
    first = receive(settings, 1)
    almost_out = Context(remaining_ms=settings.worker_refill_reserve_s * 1000 - 1)
    assert worker.handle_batch(runtime, records(first), almost_out) == {"batchItemFailures": []}
    assert [len(management.events(c)) > 0 for c in ("c0", "c1")] == [True, True]  # c1 only has its accepted
    assert terminal_types(management, ["c1"]) == [[]]
    assert len(receive(settings, 10)) == 1  # still queued, for the next execution


def test_a_batch_larger_than_the_pool_waits_for_slots_and_every_turn_still_ends(client, runtime, management, settings, queue):
    runtime.settings = dataclasses.replace(runtime.settings, worker_max_turns=1)
    queue_turns(client, 3)
    batch = receive(settings, 3)
    assert worker.handle_batch(runtime, records(batch), Context()) == {"batchItemFailures": []}
    assert terminal_types(management, ["c0", "c1", "c2"]) == [["done"], ["done"], ["done"]]
    assert queue.settled == []  # nothing taken: the pool never had room
