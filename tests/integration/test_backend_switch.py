"""One client session, unchanged, against every backend: the wire protocol does not move."""
from __future__ import annotations

import json

import pytest

from tests.support.stack import answer_of, ask, assert_one_well_formed_turn, receive_turn, start_stack, stop_stack

pytestmark = pytest.mark.integration


def client_session(stack) -> list:
    """What a real client does: ask in a conversation, ping, resume, send something bad."""
    with stack.connect("switcher") as ws:
        first = ask(ws, "hello there", conversationId="trip")
        second = ask(ws, "and again", conversationId="trip")
        ws.send('{"action": "ping"}')
        pong = json.loads(ws.recv(timeout=5))
        ws.send(json.dumps({"action": "resume", "turnId": first[0]["turnId"]}))
        replay = receive_turn(ws)
        ws.send('{"prompt": ""}')
        bad = receive_turn(ws)
    return [first, second, pong, replay, bad]


def _terminal(events: list) -> dict:
    """The turn's last event without what differs by delivery (its seq, the frame's size)."""
    return {key: value for key, value in events[-1].items() if key not in ("seq", "_bytes")}


@pytest.mark.parametrize("backend, suffix", [("agent", ""), ("converse", " (turn {n})"), ("agentcore", "")])
def test_the_same_client_session_works_against_each_backend(backend, suffix):
    stack = start_stack(BACKEND=backend)
    try:
        first, second, pong, replay, bad = client_session(stack)
    finally:
        stop_stack(stack)
    for events in (first, second, replay):
        assert_one_well_formed_turn(events)
        assert set(events[-1]) >= {"type", "turnId", "seq", "sessionId", "stats"}
    assert answer_of(first) == "You said: hello there" + suffix.format(n=1)
    assert answer_of(second) == "You said: and again" + suffix.format(n=2)  # converse: history kept
    assert answer_of(replay) == answer_of(first)
    # A resume replays the very terminal event the live turn ended with (stats included).
    assert _terminal(replay) == _terminal(first)
    # Every backend reports the tokens it used (agent: its model invocations' traces; AgentCore: the runtime's metadata).
    usage = first[-1]["stats"]["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    if backend == "converse":
        assert "modelLatencyMs" in first[-1]["stats"]
    assert pong == {"type": "pong"}
    assert [(e["type"], e["code"]) for e in bad] == [("error", "invalid_request")]


def test_conversation_history_is_per_user():
    """Two users naming the same conversation share nothing: each model call sees only its own."""
    stack = start_stack(BACKEND="converse")
    try:
        with stack.connect("alice") as ws:
            ask(ws, "one", conversationId="shared-name")
            assert answer_of(ask(ws, "two", conversationId="shared-name")) == "You said: two (turn 2)"
        with stack.connect("bob") as ws:
            assert answer_of(ask(ws, "first", conversationId="shared-name")) == "You said: first (turn 1)"
    finally:
        stop_stack(stack)


def test_return_of_control_round_trip_over_a_real_websocket(stack):
    with stack.connect("tool-user") as ws:
        ws.send(json.dumps({"prompt": "!return-control weather in Oslo"}))
        accepted = json.loads(ws.recv(timeout=10))
        request = json.loads(ws.recv(timeout=10))
        assert request["type"] == "return_control" and request["turnId"] == accepted["turnId"]
        (tool,) = request["inputs"]
        assert tool["functionInvocationInput"]["function"] == "lookup"
        results = [
            {
                "functionResult": {
                    "actionGroup": tool["functionInvocationInput"]["actionGroup"],
                    "function": "lookup",
                    "responseBody": {"TEXT": {"body": "3 degrees and rain"}},
                }
            }
        ]
        ws.send(json.dumps({"action": "return_control", "turnId": accepted["turnId"], "invocationId": request["invocationId"], "results": results}))
        events = receive_turn(ws)
    assert_one_well_formed_turn(events)
    assert answer_of(events) == "You said: 3 degrees and rain"
