"""One worker execution streams many turns: on the local stack, with Lambda's limits played by the poller.

The stacks are in conftest.py: ``scaled`` allows two worker executions with batches of ten;
``narrow`` one execution of two turns at a time, so a batch has turns waiting for a slot.
"""
import json
import threading
import time
from contextlib import ExitStack
from typing import Any, Dict, List, Sequence, Tuple

from tests.support.faults import arm_worker_kill, inject, kill_worker, unique_user, worker_stats
from tests.support.stack import answer_of, ask, assert_one_well_formed_turn, receive_turn
from tests.support.timing import wait_until

SLOW = "!slow 3 one two three four five six seven eight nine ten"
SLOW_8 = "!slow 8 " + " ".join(["word"] * 16)


class Client(threading.Thread):
    """One user on a connection of their own: asks once when told, keeps every frame with its arrival time."""

    def __init__(self, ws: Any, user: str, prompt: str, go: threading.Event, request_id: str = "") -> None:
        super().__init__(daemon=True)
        self.user = user
        self.ws = ws
        self.prompt, self.go, self.request_id = prompt, go, request_id
        self.asked_at = 0.0
        self.frames: List[Dict[str, Any]] = []
        self.arrived: List[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.go.wait()
            self.asked_at = time.monotonic()
            self.ws.send(json.dumps({"prompt": self.prompt, **({"requestId": self.request_id} if self.request_id else {})}))
            while not self.frames or self.frames[-1]["type"] not in ("done", "error"):
                self.frames.append(json.loads(self.ws.recv(timeout=60)))
                self.arrived.append(time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def first_text_at(self) -> float:
        return next(at for at, frame in zip(self.arrived, self.frames) if frame["type"] == "chunk")

    def has_text(self) -> bool:
        return any(frame["type"] == "chunk" for frame in list(self.frames))

    def nothing_more(self) -> None:
        """After its terminal event the connection carries nothing of the turn: the next frame answers a ping."""
        self.ws.send(json.dumps({"action": "ping"}))
        assert json.loads(self.ws.recv(timeout=15))["type"] == "pong"


def start_clients(
    stack: Any, sockets: ExitStack, prompts: List[str], prefix: str, request_ids: Sequence[str] = ()
) -> Tuple[threading.Event, List[Client]]:
    """One connected client per prompt (closed with ``sockets``), each waiting for ``go`` to ask."""
    go = threading.Event()
    clients = []
    for index, prompt in enumerate(prompts):
        user = unique_user(prefix)
        ws = sockets.enter_context(stack.connect(user))
        clients.append(Client(ws, user, prompt, go, *request_ids[index:index + 1]))
    for client in clients:
        client.start()
    return go, clients


def finish(clients: List[Client]) -> None:
    for client in clients:
        client.join(timeout=90)
        assert client.error is None, client.error
        assert not client.is_alive()


def test_twenty_slow_answers_stream_at_once_in_two_executions(scaled):
    assert scaled.info["worker"] == {"batch_size": 10, "max_concurrency": 2}  # the app's setting, as Lambda reads it
    with scaled.connect(unique_user("warm")) as ws:  # a warm stack, as a deployed one is: no client created on the clock
        assert answer_of(ask(ws, "warm up")) == "You said: warm up"
    with ExitStack() as sockets:
        go, clients = start_clients(scaled, sockets, [SLOW] * 20, "many")
        go.set()
        finish(clients)
        for client in clients:
            assert_one_well_formed_turn(client.frames)
            assert answer_of(client.frames) == "You said: " + SLOW
            client.nothing_more()
    # Two executions of one turn each would answer two at a time, each taking three seconds: every
    # first text would then not come before every end. Here all twenty stream together.
    assert max(client.first_text_at() for client in clients) < min(client.arrived[-1] for client in clients)
    # Asked: the ask was taken (its accepted arrived). Twenty simultaneous asks queue in the emulated
    # $default and moto first; that wait is theirs, not the worker's, and a busy machine stretches it.
    assert all(client.frames[0]["type"] == "accepted" for client in clients)
    lags = sorted(client.first_text_at() - client.arrived[0] for client in clients)
    sent = sorted(client.first_text_at() - client.asked_at for client in clients)
    assert lags[-1] < 2.0, f"first text {lags[-1]:.2f} s after accepted (all: {[round(lag, 2) for lag in lags]}; from send: {sent})"
    assert 1 <= worker_stats(scaled)["largest_batch"] <= 10


def test_a_record_failed_by_a_dynamodb_throttle_comes_back_in_seconds(scaled):
    before = worker_stats(scaled)["redelivered"]
    # Twenty throttled claims: all five of the worker's claim attempts (four requests each: botocore's
    # three retries) fail, so the record is reported failed; it must come back long before the
    # queue's 120 s visibility timeout. Only a claim writes claimedAt.
    inject(scaled, throttle_dynamodb=20, matching="claimedAt")
    with scaled.connect(unique_user("throttled")) as ws:
        events = ask(ws, "after a hiccup", timeout=60)
    assert_one_well_formed_turn(events)
    assert answer_of(events) == "You said: after a hiccup"
    assert worker_stats(scaled)["redelivered"] > before  # it was a second delivery, not a retried claim


def test_a_worker_killed_mid_batch_interrupts_its_claimed_turns_once_and_answers_the_rest(narrow):
    with ExitStack() as sockets:
        # A blocker holds the only execution until all five asks are queued, so they arrive as one batch.
        blocker = sockets.enter_context(narrow.connect(unique_user("blocker")))
        blocker.send(json.dumps({"prompt": "!slow 120 " + "hold " * 20}))
        blocked_turn = json.loads(blocker.recv(timeout=15))["turnId"]
        request_ids = [f"batch-{i}" for i in range(5)]
        go, clients = start_clients(narrow, sockets, [SLOW_8] * 5, "batch", request_ids)
        arm_worker_kill(narrow, clients[0].user, request_ids[0])
        go.set()
        wait_until(lambda: all(len(c.frames) >= 1 for c in clients), 15, "every ask accepted")
        blocker.send(json.dumps({"action": "cancel", "turnId": blocked_turn}))
        receive_turn(blocker, timeout=15)
        # The batch runs in the armed worker: two turns claimed and streaming, three waiting for a slot.
        wait_until(lambda: sum(c.has_text() for c in clients) == 2, 30, "two turns streaming")
        kill_worker(narrow)
        finish(clients)
        interrupted = [c for c in clients if c.frames[-1].get("code") == "interrupted"]
        answered = [c for c in clients if c.frames[-1]["type"] == "done"]
        assert (len(interrupted), len(answered)) == (2, 3)
        for client in interrupted:
            assert client.has_text() and [f["type"] for f in client.frames].count("error") == 1
        for client in answered:
            assert_one_well_formed_turn(client.frames)
            assert answer_of(client.frames) == "You said: " + SLOW_8
        for client in clients:
            client.nothing_more()
