"""Every kind of frame the server sends, provoked on a real local stack and checked against the schema.

Each frame received here is validated with the reference validator (jsonschema) and with the
server's own compiled validator, and may carry only the fields its definition documents.
"""
from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Dict, List

import pytest

from chalicelib import protocol
from tests.support.faults import arm_worker_kill, connection_ids, dynamodb, kill_worker, table_named, unique_user
from tests.support.frames import check_frame
from tests.support.stack import FAST, start_stack, stop_stack

pytestmark = pytest.mark.integration

RECV_S = 15


def frames_until_terminal(ws: Any, timeout: float = RECV_S, until=("done", "error")) -> List[Dict[str, Any]]:
    frames: List[Dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = check_frame(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        frames.append(frame)
        if frame.get("type") in until:
            return frames


def ask(ws: Any, prompt: str, **fields: Any) -> List[Dict[str, Any]]:
    ws.send(json.dumps({"prompt": prompt, **fields}))
    return frames_until_terminal(ws)


def kinds(frames: List[Dict[str, Any]]) -> List[str]:
    return [frame.get("type", "gateway") for frame in frames]


@pytest.fixture
def connect(local_stack):
    with contextlib.ExitStack() as opened:

        def _connect(prefix: str = "wire"):
            user = unique_user(prefix)
            return user, opened.enter_context(local_stack.connect(user))

        yield _connect


def test_an_answer_with_traces_and_stats(connect):
    _, ws = connect()
    frames = ask(ws, "!trace hello", trace=True, requestId="r-1", conversationId="c-1")
    assert kinds(frames)[:3] == ["accepted", "trace", "trace"]
    assert frames[0]["requestId"] == "r-1"
    done = frames[-1]
    assert kinds(frames)[-2] == "trace" and frames[-2]["trace"]["kind"] == "model"  # the tokens, before done
    assert done["type"] == "done" and set(done["stats"]) == {"chunks", "characters", "firstTokenMs", "durationMs", "queueMs", "usage"}
    assert done["stats"]["usage"] == {**frames[-2]["trace"]["usage"], "totalTokens": sum(frames[-2]["trace"]["usage"].values())}


def test_a_repeated_request_id_is_accepted_as_a_duplicate(connect):
    _, ws = connect()
    first = ask(ws, "once", requestId="same")
    ws.send(json.dumps({"prompt": "once", "requestId": "same"}))
    again = check_frame(ws.recv(timeout=RECV_S))
    assert again == {"type": "accepted", "turnId": first[0]["turnId"], "requestId": "same", "duplicate": True}


def test_a_big_answer_comes_in_frames_within_32_kb(connect):
    _, ws = connect()
    frames = ask(ws, "!big 70000")
    assert sum(len(f.get("text", "")) for f in frames) == 70000
    assert kinds(frames)[-1] == "done"


@pytest.mark.parametrize("prompt, code", [("!stream-error", protocol.ErrorCode.AGENT_ERROR), ("!stream-throttle", protocol.ErrorCode.THROTTLED)])
def test_agent_failures_end_the_turn_with_a_documented_error(connect, prompt, code):
    _, ws = connect()
    frames = ask(ws, prompt)
    terminal = frames[-1]
    assert (terminal["type"], terminal["code"], terminal["seq"]) == ("error", code, len(frames) - 1)


def test_return_of_control_then_the_answer_goes_on_from_seq_1(connect):
    _, ws = connect()
    ws.send(json.dumps({"prompt": "!return-control"}))
    frames = frames_until_terminal(ws, until=("return_control", "done", "error"))
    assert kinds(frames) == ["accepted", "return_control"]
    request = frames[-1]
    (tool,) = request["inputs"]
    call = tool["functionInvocationInput"]
    result = {"actionGroup": call["actionGroup"], "function": call["function"], "responseBody": {"TEXT": {"body": "42"}}}
    answer = {"action": "return_control", "turnId": request["turnId"], "invocationId": request["invocationId"],
              "results": [{"functionResult": result}]}
    protocol.validator("ClientMessage")(answer)
    ws.send(json.dumps(answer))
    going_on = frames_until_terminal(ws)
    assert going_on[0] == {"type": "accepted", "turnId": request["turnId"]}
    assert [f["seq"] for f in going_on[1:]] == list(range(1, len(going_on)))
    assert going_on[-1]["type"] == "done"
    ws.send(json.dumps(answer))  # the same results again: the turn is no longer waiting for them
    assert check_frame(ws.recv(timeout=RECV_S))["code"] == protocol.ErrorCode.INVALID_REQUEST


def test_files_the_agent_made(connect):
    _, ws = connect()
    frames = ask(ws, "!files")
    (files,) = [f for f in frames if f["type"] == "files"]
    (file,) = files["files"]
    assert (file["name"], file["type"], file["size"]) == ("weather.csv", "text/csv", 24) and "content" in file


def test_invalid_requests_answer_invalid_request_with_the_ask_s_request_id(connect):
    _, ws = connect()
    for body in ['{"prompt": ""}', "[]", "not json", '{"action": "dance"}', '{"action": "resume"}']:
        ws.send(body)
        frame = check_frame(ws.recv(timeout=RECV_S))
        assert (frame["type"], frame["code"], frame["retryable"]) == ("error", "invalid_request", False), body
    ws.send(json.dumps({"prompt": "   ", "requestId": "r-7"}))
    assert check_frame(ws.recv(timeout=RECV_S))["requestId"] == "r-7"


def test_usage_answers_the_user_s_day_and_month(connect):
    _, ws = connect()
    ws.send(json.dumps({"action": "usage"}))
    frame = check_frame(ws.recv(timeout=RECV_S))
    assert frame["type"] == "usage" and frame["day"]["budget"] is None and frame["month"]["turns"] == 0


def test_ping_resume_and_cancel(connect):
    _, ws = connect()
    ws.send('{"action": "ping"}')
    assert check_frame(ws.recv(timeout=RECV_S)) == {"type": "pong"}
    ws.send(json.dumps({"action": "resume", "turnId": "no-such-turn"}))
    assert check_frame(ws.recv(timeout=RECV_S))["code"] == protocol.ErrorCode.NOT_FOUND
    finished = ask(ws, "brief")
    ws.send(json.dumps({"action": "resume", "turnId": finished[0]["turnId"]}))
    replayed = frames_until_terminal(ws)
    assert kinds(replayed)[0] == "accepted" and replayed[-1]["seq"] == len(replayed) - 1
    ws.send(json.dumps({"prompt": "!slow 4 " + "word " * 20}))
    turn_id = check_frame(ws.recv(timeout=RECV_S))["turnId"]
    check_frame(ws.recv(timeout=RECV_S))  # the first chunk: it is running
    ws.send(json.dumps({"action": "cancel", "turnId": turn_id}))
    frames = frames_until_terminal(ws)
    assert frames[-1]["code"] == protocol.ErrorCode.CANCELLED
    ws.send(json.dumps({"action": "cancel", "turnId": turn_id}))
    assert check_frame(ws.recv(timeout=RECV_S))["code"] == protocol.ErrorCode.INVALID_REQUEST  # already finished


def test_too_many_turns_in_flight_is_rate_limited_with_a_hint(connect):
    _, ws = connect()
    for index in range(4):
        ws.send(json.dumps({"prompt": "!slow 2 busy", "requestId": f"busy-{index}"}))
    frames = [check_frame(ws.recv(timeout=RECV_S)) for _ in range(4)]
    (limited,) = [f for f in frames if f.get("code") == protocol.ErrorCode.RATE_LIMITED]  # whichever came fourth
    assert limited["retryAfterMs"] > 0 and limited["requestId"].startswith("busy-")
    for _ in range(3):  # let the three turns finish so they do not leak into other tests
        frames_until_terminal(ws)


def test_a_connection_whose_record_is_gone_is_unauthorized(local_stack, connect):
    user, ws = connect("forgotten")
    db = dynamodb(local_stack)
    (connection_id,) = connection_ids(local_stack, user)
    db.delete_item(TableName=table_named(db, "connections"), Key={"connectionId": {"S": connection_id}})
    ws.send(json.dumps({"prompt": "who am I?"}))
    frame = check_frame(ws.recv(timeout=RECV_S))
    assert (frame["code"], frame["retryable"]) == (protocol.ErrorCode.UNAUTHORIZED, False)


def test_a_killed_worker_ends_its_turn_interrupted():
    # A stack of its own, and the fault armed for this turn only.
    stack = start_stack(**FAST)
    try:
        user = unique_user("killed")
        with stack.connect(user) as ws:
            arm_worker_kill(stack, user, "killed-1")
            ws.send(json.dumps({"prompt": "!slow 6 " + "word " * 20, "requestId": "killed-1"}))
            frames = frames_until_terminal(ws, until=("chunk", "done", "error"))
            assert kinds(frames) == ["accepted", "chunk"]  # its worker claimed the turn and is answering
            kill_worker(stack)  # so it dies mid-turn, however long it took to get here
            frames += frames_until_terminal(ws)
        assert frames[-1]["code"] == protocol.ErrorCode.INTERRUPTED and frames[-1]["retryable"] is True
    finally:
        stop_stack(stack)
