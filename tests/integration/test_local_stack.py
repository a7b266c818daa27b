"""The local stack end to end: a real WebSocket client, the app's unchanged handlers, boto3's parsers."""
from __future__ import annotations

import json
import threading
import time

import pytest
from websockets.exceptions import InvalidStatus

from devserver.tokens import issue_token
from tests.support.stack import answer_of, ask, assert_one_well_formed_turn, receive_turn, start_stack, stop_stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", ["none", "garbage", "tampered", "expired", "wrong-secret"])
def test_refused_connects(stack, case):
    good = stack.token("alice")
    header, payload, signature = good.split(".")
    tokens = {
        "none": "",
        "garbage": "not-a-token",
        "tampered": f"{header}.{payload[:-2]}AA.{signature}",
        "expired": stack.token("alice", ttl_s=-120),
        "wrong-secret": issue_token("alice", "some-other-secret-0123456789abcdef"),
    }
    with pytest.raises(InvalidStatus) as caught:
        stack.connect(token=tokens[case]).close()
    assert caught.value.response.status_code == 401


def test_a_streamed_answer(stack):
    with stack.connect() as ws:
        events = ask(ws, "hello local stack")
    assert_one_well_formed_turn(events)
    assert answer_of(events) == "You said: hello local stack"
    assert sum(1 for event in events if event["type"] == "chunk") >= 2  # it streamed
    done = events[-1]
    assert done["type"] == "done" and done["sessionId"] and done["stats"]["characters"] == len("You said: hello local stack")


@pytest.mark.parametrize(
    "body",
    ["{nope", "[]", "{}", '{"prompt": ""}', '{"prompt": 5}', json.dumps({"prompt": "x" * 25_001}), '{"action": "dance"}'],
)
def test_bad_input_gets_one_invalid_request(stack, body):
    with stack.connect() as ws:
        ws.send(body)
        (event,) = receive_turn(ws)
        assert (event["type"], event["code"], event["retryable"]) == ("error", "invalid_request", False)
        ws.send('{"action": "ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}  # nothing else was queued


def test_throttling_and_mid_stream_errors(stack):
    with stack.connect() as ws:
        throttled = ask(ws, "!throttle")
        broken = ask(ws, "!stream-error")
    assert_one_well_formed_turn(throttled)
    assert (throttled[-1]["code"], throttled[-1]["retryable"]) == ("throttled", True)
    assert_one_well_formed_turn(broken)
    assert broken[-1]["code"] == "agent_error" and broken[-1]["retryable"] is True
    assert answer_of(broken)  # the chunk before the failure arrived


def test_a_100k_answer_arrives_whole_in_frames_of_at_most_32_kb(stack):
    with stack.connect() as ws:
        events = ask(ws, "!big 100000", timeout=30)
    assert_one_well_formed_turn(events)
    text = answer_of(events)
    assert len(text) == 100_000 and text.startswith("You said: ")
    assert max(event["_bytes"] for event in events) <= 32 * 1024


def test_two_users_at_once_each_see_only_their_own_answer(stack):
    results = {}

    def chat(user):
        with stack.connect(user) as ws:
            results[user] = ask(ws, f"!slow 1 I am {user}")

    threads = [threading.Thread(target=chat, args=(user,)) for user in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for user in ("alice", "bob"):
        assert_one_well_formed_turn(results[user])
        assert answer_of(results[user]) == f"You said: !slow 1 I am {user}"
    assert results["alice"][-1]["sessionId"] != results["bob"][-1]["sessionId"]


def test_the_stack_still_serves_afterwards(stack):
    with stack.connect("carol") as ws:
        ws.send('{"action": "ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
        assert answer_of(ask(ws, "still there?")) == "You said: still there?"


def test_an_answer_longer_than_the_integration_timeout_arrives_whole():
    short = start_stack(INTEGRATION_TIMEOUT_S="1")
    try:
        with short.connect() as ws:
            started = time.monotonic()
            events = ask(ws, "!slow 3 patience", timeout=30)
            elapsed = time.monotonic() - started
    finally:
        stop_stack(short)
    assert elapsed > 2.5  # it really outlived the 1 s integration timeout
    assert_one_well_formed_turn(events)
    assert answer_of(events) == "You said: !slow 3 patience"
    assert not any(event.get("message") == "Endpoint request timed out" for event in events)


def test_ctrl_c_stops_everything_the_stack_started():
    import signal
    import socket
    from urllib.parse import urlparse

    stack = start_stack()
    ports = [stack.info["port"], urlparse(stack.info["dynamodb"]).port, urlparse(stack.info["bedrock"]).port]
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=20) == 0
    for port in ports:  # the gateway, moto's own process and the Bedrock emulator are all gone
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
