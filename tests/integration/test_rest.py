"""The REST API (/v1) on the local stack, over real HTTP: the WebSocket's turns without a socket.

The stack serves it as API Gateway's REST API would (``devserver/apigw/rest.py``), on the
WebSocket's port under the stage (``stack.rest_url``). The Bedrock emulator answers a prompt the
same way every time, so a turn asked here can be compared with one asked over a socket.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple

import pytest

from devserver.tokens import issue_token
from tests.support.faults import unique_user
from tests.support.stack import Stack, answer_of, ask, receive_turn
from tests.support.timing import wait_until

pytestmark = pytest.mark.integration

Answer = Tuple[int, Any, Any]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy


def call(stack: Stack, method: str, path: str, user: Optional[str] = None, body: Any = None,
         token: Optional[str] = None, headers: Optional[Dict[str, str]] = None, base: Optional[str] = None) -> Answer:
    """One request to ``<rest_url><path>`` as ``user`` (or with ``token``): status, headers, JSON body."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token or user:
        sent["Authorization"] = f"Bearer {token or stack.token(user or '')}"
    data = body.encode() if isinstance(body, str) else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request((base or stack.rest_url) + path, data=data, method=method, headers=sent)
    try:
        with _OPENER.open(request, timeout=35) as response:
            status, got, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            status, got, raw = error.code, error.headers, error.read()
    return status, got, json.loads(raw) if raw else None


def create(stack: Stack, user: str, prompt: str, **fields: Any) -> str:
    status, _, body = call(stack, "POST", "/v1/turns", user, {"prompt": prompt, **fields})
    assert status == 202, body
    return body["turnId"]


def poll_until_finished(stack: Stack, user: str, turn_id: str, timeout: float = 30.0) -> Dict[str, Any]:
    """GET the turn until it ends (done or error), a look every 0.25 s at most (well within its
    ``pollAfterMs``); every view seen is kept in ``views`` on the result."""
    views = []

    def finished() -> Optional[Dict[str, Any]]:
        status, _, view = call(stack, "GET", f"/v1/turns/{turn_id}", user)
        assert status == 200, view
        views.append(view)
        return view if view["status"] in ("done", "error") else None

    view = wait_until(finished, timeout, f"turn {turn_id} still unfinished after {timeout} s", poll_s=0.25)
    return {**view, "views": views}


def test_a_rest_turn_has_the_answer_the_websocket_gets(stack):
    user = unique_user("rest")
    prompt = "what does the REST API answer?"
    turn_id = create(stack, user, prompt)
    done = poll_until_finished(stack, user, turn_id)
    with stack.connect(user) as ws:
        streamed = ask(ws, prompt)
    assert done["status"] == "done" and done["turnId"] == turn_id and "pollAfterMs" not in done
    assert done["answer"] == answer_of(streamed) == f"You said: {prompt}"
    assert done["stats"]["characters"] == streamed[-1]["stats"]["characters"]


def test_the_stageless_path_and_the_idempotency_key_reach_the_same_turn(stack):
    user = unique_user("rest")
    base = f"http://127.0.0.1:{stack.info['port']}"
    first = call(stack, "POST", "/v1/turns", user, {"prompt": "once"}, headers={"Idempotency-Key": "k-1"}, base=base)
    again = call(stack, "POST", "/v1/turns", user, {"prompt": "once"}, headers={"Idempotency-Key": "k-1"})
    assert (first[0], again[0]) == (202, 202) and again[2]["turnId"] == first[2]["turnId"]
    assert again[2]["duplicate"] is True and again[2]["requestId"] == "k-1"
    assert first[1]["Location"] == f"/v1/turns/{first[2]['turnId']}"


def test_a_websocket_client_resumes_a_rest_turn_through_done(stack):
    user = unique_user("rest")
    prompt = "!slow 3 asked over REST, heard over a socket"
    turn_id = create(stack, user, prompt)
    with stack.connect(user) as ws:
        ws.send(json.dumps({"action": "resume", "turnId": turn_id}))
        events = receive_turn(ws, timeout=30)
    assert events[0]["type"] == "accepted" and events[0]["turnId"] == turn_id
    numbered = [event for event in events[1:] if event["type"] != "progress"]
    assert [event["seq"] for event in numbered] == list(range(1, len(numbered) + 1))
    assert events[-1]["type"] == "done" and answer_of(events) == f"You said: {prompt}"
    assert poll_until_finished(stack, user, turn_id)["answer"] == answer_of(events)


def test_forty_second_answers_asked_as_a_turn_and_as_a_one_shot_question_are_read_by_polling(stack):
    """Both at once (one wait, not two): POST answers 202 at once; GET /v1/answers waits its
    ANSWER_WAIT_S and answers 202; both are then read by polling as they grow, and the one-shot
    question, asked again, is served from the cache."""
    from urllib.parse import quote

    user = unique_user("rest")
    prompt = "!slow 40 longer than API Gateway's twenty-nine seconds, answered all the same"
    question = "!slow 40 a one-shot question slower than API Gateway allows"
    turn_id = create(stack, user, prompt)  # 202: the handler queues the turn; nothing waits for the agent
    status, headers, accepted = call(stack, "GET", f"/v1/answers?q={quote(question)}", user)
    assert status == 202 and accepted["cached"] is False and headers["Location"] == f"/v1/turns/{accepted['turnId']}"
    done = poll_until_finished(stack, user, turn_id, timeout=120)
    assert done["status"] == "done" and done["answer"] == f"You said: {prompt}"
    growing = [view["answer"] for view in done["views"] if view["status"] == "running"]
    assert any(0 < len(answer) < len(done["answer"]) for answer in growing)  # read while it grew
    assert all(done["answer"].startswith(answer) for answer in growing)
    answered = poll_until_finished(stack, user, accepted["turnId"], timeout=120)
    assert answered["status"] == "done" and answered["answer"] == f"You said: {question}"
    status, _, cached = call(stack, "GET", f"/v1/answers?q={quote(question)}", user)
    assert status == 200 and cached["cached"] is True and cached["answer"] == answered["answer"]


@pytest.mark.parametrize(
    "body",
    ["{nope", "[]", "{}", '{"prompt": ""}', '{"prompt": 5}', json.dumps({"prompt": "x" * 25_001})],
)
def test_a_malformed_body_is_refused_by_api_gateway_as_the_socket_refuses_it(stack, body):
    """The packaged API's model answers (400 BAD_REQUEST_BODY, in the envelope, the validator's words
    in ``details``) before the function runs; the WebSocket's own validation refuses the same body."""
    user = unique_user("rest")
    status, headers, answer = call(stack, "POST", "/v1/turns", user, body)
    with stack.connect(user) as ws:
        ws.send(body)
        (event,) = receive_turn(ws)
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert answer["error"] | {"details": ""} == {
        "code": "invalid_request", "message": "Invalid request body", "retryable": False, "details": ""}
    assert answer["error"]["details"]  # what the model found wrong
    assert event["type"] == "error" and event["code"] == "invalid_request"


def test_what_the_model_cannot_see_the_function_refuses_with_the_sockets_message(stack):
    user = unique_user("rest")
    status, _, answer = call(stack, "POST", "/v1/turns", user, {"prompt": "hi", "requestId": "a"},
                             headers={"Idempotency-Key": "b"})
    assert status == 400 and "details" not in answer["error"]  # the function's own answer
    assert answer["error"]["code"] == "invalid_request" and "Idempotency-Key" in answer["error"]["message"]


def test_another_users_turn_does_not_exist(stack):
    owner, other = unique_user("rest"), unique_user("rest")
    turn_id = create(stack, owner, "mine alone")
    for method in ("GET", "DELETE"):
        status, _, answer = call(stack, method, f"/v1/turns/{turn_id}", other)
        assert status == 404 and answer["error"]["code"] == "not_found", (method, answer)
    assert call(stack, "GET", "/v1/turns/no-such-turn", owner)[0] == 404
    assert poll_until_finished(stack, owner, turn_id)["status"] == "done"  # untouched by the other user


@pytest.mark.parametrize("case", ["none", "garbage", "expired", "wrong-secret"])
def test_without_a_good_token_401(stack, case):
    tokens = {
        "none": None,
        "garbage": "not-a-token",
        "expired": stack.token("alice", ttl_s=-120),
        "wrong-secret": issue_token("alice", "some-other-secret-0123456789abcdef"),
    }
    status, headers, answer = call(stack, "POST", "/v1/turns", body={"prompt": "hi"}, token=tokens[case])
    assert status == 401 and answer["error"]["code"] == "unauthorized" and answer["error"]["retryable"] is False
    assert headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_paths_and_methods_get_api_gateways_403(stack):
    # API Gateway's REST API answers 403, never 404 or 405, for any path or method it lacks.
    status, headers, answer = call(stack, "GET", "/v1/nothing-here")
    assert (status, answer) == (403, {"message": "Missing Authentication Token"})
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    status, headers, _ = call(stack, "PUT", "/v1/turns", "alice", {"prompt": "hi"})
    assert status == 403 and headers["x-amzn-ErrorType"] == "IncompleteSignatureException"  # a Bearer header


def test_the_cors_preflight_allows_the_authorization_header(stack):
    preflight = {"Origin": "https://chat.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    status, headers, _ = call(stack, "OPTIONS", "/v1/turns", headers=preflight)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in headers["Access-Control-Allow-Headers"].split(",")
    assert "POST" in headers["Access-Control-Allow-Methods"].split(",")
    status, headers, _ = call(stack, "POST", "/v1/turns", unique_user("rest"), {"prompt": "from a page"},
                              headers={"Origin": "https://chat.example"})
    assert status == 202 and headers["Access-Control-Allow-Origin"] == "*"  # the app's own answer carries it too


# ---- one-shot answers (GET /v1/answers)


def test_a_one_shot_answer_is_returned_then_served_from_the_cache_without_the_agent(stack):
    from urllib.parse import quote

    from tests.support.faults import worker_stats

    user = unique_user("rest")
    question = f"what is a one-shot answer for {user}?"
    status, headers, first = call(stack, "GET", f"/v1/answers?q={quote(question)}", user)
    assert status == 200 and first["cached"] is False and headers["X-Cache"] == "Miss", first
    assert first["answer"] == f"You said: {question}"
    invocations = worker_stats(stack)["invocations"]
    status, headers, again = call(stack, "GET", f"/v1/answers?q={quote('  WHAT is a one-shot answer for ' + user)}", user)
    assert status == 200 and again["cached"] is True and headers["X-Cache"] == "Hit"
    assert (again["turnId"], again["answer"], again["answeredAt"]) == (first["turnId"], first["answer"], first["answeredAt"])
    assert worker_stats(stack)["invocations"] == invocations  # no turn queued, no worker, no agent call
