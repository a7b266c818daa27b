"""Who receives a running turn, on the local stack: the connection of the latest resume, from
the seq it asks for; every other follower gets one terminal `superseded`; nothing stale ever lands
after an `accepted`. And `progress` while a turn is silent.
"""
from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Dict, Iterator, List

import pytest

from tests.support.faults import unique_user
from tests.support.stack import Stack, answer_of, receive_turn, start_stack, stop_stack, until_chunk

pytestmark = pytest.mark.integration

SLOW = "!slow 3 one two three four five six seven eight nine ten eleven twelve"
WHOLE = "You said: " + SLOW


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    started = start_stack(CONTROL_INTERVAL_MS="100")
    yield started
    stop_stack(started)


def assert_clean_tellings(events: List[Dict[str, Any]], from_seq: int = 0) -> None:
    """After each `accepted`, the turn's events run from from_seq + 1 (the first telling from 1),
    rising by one, with nothing of an earlier telling in between; one terminal event, last."""
    tellings: List[List[Dict[str, Any]]] = []
    for event in events:
        if event["type"] == "accepted":
            tellings.append([])
        else:
            tellings[-1].append(event)
    for index, telling in enumerate(tellings):
        start = (from_seq if index == len(tellings) - 1 else 0) + 1
        seqs = [e["seq"] for e in telling if "seq" in e]
        assert seqs == list(range(start, start + len(seqs))) or not seqs, (index, seqs)
    terminals = [e for e in events if e["type"] in ("done", "error")]
    assert len(terminals) == 1 and terminals[0] is events[-1], terminals


def text_of_last_telling(events: List[Dict[str, Any]]) -> str:
    last = max(i for i, e in enumerate(events) if e["type"] == "accepted")
    return answer_of(events[last:])


def test_a_resume_on_the_connection_already_receiving_restarts_cleanly(stack):
    with stack.connect(unique_user("same")) as ws:
        ws.send(json.dumps({"prompt": SLOW}))
        events = until_chunk(ws, 2)
        ws.send(json.dumps({"action": "resume", "turnId": events[0]["turnId"]}))
        events += receive_turn(ws, timeout=30)
    assert [e["type"] for e in events].count("accepted") == 2
    assert_clean_tellings(events)
    assert text_of_last_telling(events) == WHOLE


def test_many_resumes_at_once_on_one_socket_end_in_one_clean_telling(stack):
    with stack.connect(unique_user("many")) as ws:
        ws.send(json.dumps({"prompt": SLOW}))
        events = until_chunk(ws)
        for _ in range(5):
            ws.send(json.dumps({"action": "resume", "turnId": events[0]["turnId"]}))
        events += receive_turn(ws, timeout=30)
    assert_clean_tellings(events)
    assert text_of_last_telling(events) == WHOLE


def test_many_connections_resuming_one_turn_one_gets_it_the_others_are_told(stack):
    user = unique_user("tabs")
    with contextlib.ExitStack() as sockets:
        first = sockets.enter_context(stack.connect(user))
        first.send(json.dumps({"prompt": SLOW}))
        opening = until_chunk(first)
        turn_id = opening[0]["turnId"]
        others = [sockets.enter_context(stack.connect(user)) for _ in range(4)]
        for ws in others:  # at once: which is the latest is up to the order the server records them
            ws.send(json.dumps({"action": "resume", "turnId": turn_id}))
        ends: Dict[int, List[Dict[str, Any]]] = {}

        def read(index: int, ws: Any) -> None:
            ends[index] = receive_turn(ws, timeout=30)

        readers = [threading.Thread(target=read, args=(i, ws)) for i, ws in enumerate([first, *others])]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
    tellings = [ends[i] for i in range(len(others) + 1)]
    (latest,) = [events for events in tellings if events[-1]["type"] == "done"]  # one gets it ...
    assert latest is not tellings[0]  # ... one that resumed: never the connection that asked
    assert_clean_tellings(latest)
    assert text_of_last_telling(latest) == WHOLE
    for events in tellings:  # ... and every other follower gets exactly one terminal: superseded
        if events is not latest:
            assert events[-1]["code"] == "superseded" and events[-1]["turnId"] == turn_id
            assert [e["type"] for e in events].count("error") == 1 and "done" not in [e["type"] for e in events]
    assert_clean_tellings(opening + tellings[0])  # the asker: its stream so far, in order, then superseded


def test_resume_from_a_seq_sends_only_what_the_client_lacks(stack):
    user = unique_user("fromseq")
    with stack.connect(user) as ws:
        ws.send(json.dumps({"prompt": SLOW}))
        had = until_chunk(ws, 3)
    turn_id, last_seq = had[0]["turnId"], max(e["seq"] for e in had if "seq" in e)
    with stack.connect(user) as ws:
        ws.send(json.dumps({"action": "resume", "turnId": turn_id, "fromSeq": last_seq}))
        rest = receive_turn(ws, timeout=30)
    assert rest[0]["type"] == "accepted"
    assert [e["seq"] for e in rest[1:]] == list(range(last_seq + 1, last_seq + len(rest)))
    assert answer_of(had) + answer_of(rest) == WHOLE  # nothing twice, nothing missing
    # The finished turn, read back from its record, is numbered the same way.
    with stack.connect(user) as ws:
        ws.send(json.dumps({"action": "resume", "turnId": turn_id, "fromSeq": last_seq}))
        again = receive_turn(ws, timeout=30)
    assert [(e["seq"], e.get("text")) for e in again[1:-1]] == [(e["seq"], e.get("text")) for e in rest[1:-1]]


def test_a_silent_turn_sends_progress_without_seq():
    quiet = start_stack(PROGRESS_INTERVAL_S="0.4")
    try:
        with quiet.connect(unique_user("progress")) as ws:
            ws.send(json.dumps({"prompt": "!slow 4 x"}))  # "You said: !slow 4 x": a chunk every second or so
            events = receive_turn(ws, timeout=30)
    finally:
        stop_stack(quiet)
    progress = [e for e in events if e["type"] == "progress"]
    assert progress, [e["type"] for e in events]
    assert all("seq" not in e and e["turnId"] == events[0]["turnId"] and e["elapsedMs"] >= 0 for e in progress)
    numbered = [e for e in events if e["type"] not in ("accepted", "progress")]
    assert [e["seq"] for e in numbered] == list(range(1, len(numbered) + 1))
