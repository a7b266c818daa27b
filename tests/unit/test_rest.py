"""The REST API (/v1/turns) through the Chalice test client: the WebSocket's turns without a socket."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Dict, Optional

import pytest

from chalicelib.gateway import NO_CONNECTION
from chalicelib.handlers import rest
from chalicelib.http import HttpError
from chalicelib.turns import ids
from tests.support.tokens import make_token
from tests.support.worker import drain_queue, run_queued


class Api:
    """Requests to /v1 as a user (``user=None``: no token), answered as (status, headers, JSON)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(self, method: str, path: str, user: Optional[str] = "alice", body: Any = None,
                 headers: Optional[Dict[str, str]] = None, token: Optional[str] = None) -> Any:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token or user:
            sent["Authorization"] = f"Bearer {token or make_token(user)}"
        payload = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        response = getattr(self.client.http, method.lower())(path, headers=sent, body=payload)
        return response.status_code, response.headers, json.loads(response.body) if response.body else None


@pytest.fixture
def api(client):
    return Api(client)


def test_a_turn_asked_over_rest_is_queued_then_read_back_as_it_ended(api, client, settings, management, agent):
    status, headers, body = api("POST", "/v1/turns", body={"prompt": "What is SQS?"})
    assert status == 202 and body == {"turnId": body["turnId"], "status": "queued"}
    assert headers["Location"] == f"/v1/turns/{body['turnId']}"
    turn_id = body["turnId"]
    status, _, queued = api("GET", f"/v1/turns/{turn_id}")
    assert status == 200 and queued["status"] == "queued" and queued["answer"] == "" and queued["pollAfterMs"] == 2000

    assert run_queued(client, settings) == {"batchItemFailures": []}
    status, _, done = api("GET", f"/v1/turns/{turn_id}")
    assert status == 200 and done["status"] == "done" and done["answer"] == "Hello, world"
    assert done["seq"] == 1 and done["stats"]["chunks"] == 1 and "pollAfterMs" not in done  # one chunk, then done
    assert management.posts == []  # no socket: nothing was posted, to anyone
    assert agent.calls[0]["inputText"] == "What is SQS?"


def test_without_a_conversation_each_rest_turn_is_its_own_session(api, client, settings, agent):
    for prompt in ("one", "two"):
        api("POST", "/v1/turns", body={"prompt": prompt})
    api("POST", "/v1/turns", body={"prompt": "three", "conversationId": "trip"})
    run_queued(client, settings)
    sessions = [call["sessionId"] for call in agent.calls]
    assert len(set(sessions)) == 3 and ids.session_id("alice", "trip", "ignored") in sessions


def authorizer_event(token: Optional[str], method: str = "POST", path: str = "v1/turns") -> Dict[str, Any]:
    """The TOKEN event API Gateway sends the REST API's authorizer."""
    return {"type": "TOKEN", "authorizationToken": token,
            "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:api1/dev/{method}/{path}"}


def test_the_authorizer_names_the_tokens_user_and_allows_every_route(client):
    """One policy for every route: API Gateway caches it for the token, whichever route comes next."""
    result = client.lambda_.invoke("rest_authorizer", authorizer_event(f"Bearer {make_token('alice')}")).payload
    assert result["principalId"] == "alice"
    (statement,) = result["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:api1/dev/*/*"]


@pytest.mark.parametrize("header", [
    "", "Bearer", f"Basic {make_token('alice')}", "Bearer not-a-token",
    f"Bearer {make_token('alice', secret='another-secret-another-secret-0123456789')}",
    f"Bearer {make_token('alice', ttl=-120)}",
])
def test_the_authorizer_refuses_a_missing_or_bad_token_with_api_gateways_401(client, header):
    # Exactly "Unauthorized": the one failure API Gateway answers with 401 (UNAUTHORIZED) rather than 500.
    with pytest.raises(rest.Unauthorized, match="^Unauthorized$"):
        client.lambda_.invoke("rest_authorizer", authorizer_event(header))


def test_without_a_token_the_route_never_runs(api, settings):
    status, _, body = api("POST", "/v1/turns", user=None, body={"prompt": "hi"})
    assert status == 401 and body == {"message": "Unauthorized"}  # Chalice's LocalGateway, as API Gateway's default
    assert drain_queue(settings) == []


def test_a_route_trusts_only_the_authorizers_principal():
    request = SimpleNamespace(context={}, headers={"Authorization": f"Bearer {make_token('alice')}"})
    with pytest.raises(HttpError) as refused:
        rest.user_of(request)  # a header alone is no identity: only the authorizer's verdict is
    assert refused.value.failure.code == "unauthorized"
    assert rest.user_of(SimpleNamespace(context={"authorizer": {"principalId": "bob"}}, headers={})) == "bob"


@pytest.mark.parametrize("body, problem", [
    ("not json", "not valid JSON"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"action": "ping"}, "POST /v1/turns takes a question"),
    ({"prompt": "hi", "requestId": ""}, "requestId"),
])
def test_a_malformed_body_is_400_with_the_protocols_message(api, settings, body, problem):
    status, _, answer = api("POST", "/v1/turns", body=body)
    assert status == 400 and answer["error"]["code"] == "invalid_request", answer
    assert problem in answer["error"]["message"]
    assert drain_queue(settings) == []


def test_the_idempotency_key_names_one_turn(api, settings):
    first = api("POST", "/v1/turns", body={"prompt": "hi"}, headers={"Idempotency-Key": "k-1"})
    again = api("POST", "/v1/turns", body={"prompt": "hi"}, headers={"Idempotency-Key": "k-1"})
    by_body = api("POST", "/v1/turns", body={"prompt": "hi", "requestId": "k-1"})
    assert first[0] == again[0] == by_body[0] == 202
    assert first[2]["turnId"] == again[2]["turnId"] == by_body[2]["turnId"] == ids.turn_id("alice", "k-1")
    assert again[2]["duplicate"] is True and "duplicate" not in first[2] and first[2]["requestId"] == "k-1"
    assert len(drain_queue(settings)) == 1
    # Another user's same key is another turn.
    assert api("POST", "/v1/turns", user="bob", body={"prompt": "hi"}, headers={"Idempotency-Key": "k-1"})[2]["turnId"] \
        == ids.turn_id("bob", "k-1")


def test_an_idempotency_key_and_a_different_request_id_are_refused(api, settings):
    status, _, body = api("POST", "/v1/turns", body={"prompt": "hi", "requestId": "a"}, headers={"Idempotency-Key": "b"})
    assert status == 400 and "Idempotency-Key and requestId" in body["error"]["message"]
    assert drain_queue(settings) == []


def test_another_users_turn_does_not_exist(api):
    turn_id = api("POST", "/v1/turns", body={"prompt": "mine"})[2]["turnId"]
    for method in ("GET", "DELETE"):
        status, _, body = api(method, f"/v1/turns/{turn_id}", user="mallory")
        assert status == 404 and body["error"]["code"] == "not_found", method
    assert api("GET", "/v1/turns/no-such-turn")[0] == 404
    assert api("GET", f"/v1/turns/{turn_id}")[2]["status"] == "queued"  # untouched


def test_cancel_ends_a_queued_turn_at_once_and_an_ended_one_cannot_be(api, client, settings):
    turn_id = api("POST", "/v1/turns", body={"prompt": "never mind"})[2]["turnId"]
    status, _, body = api("DELETE", f"/v1/turns/{turn_id}")
    assert status == 200 and body["status"] == "error" and body["error"]["code"] == "cancelled"
    run_queued(client, settings)  # its message finds it ended: nothing runs
    assert api("GET", f"/v1/turns/{turn_id}")[2]["error"]["code"] == "cancelled"
    status, _, body = api("DELETE", f"/v1/turns/{turn_id}")
    assert status == 400 and body["error"]["message"] == "That turn has already finished."


def test_rate_limits_are_the_websockets_and_say_when_to_retry(api, runtime):
    runtime.settings = replace(runtime.settings, rate_burst=1, rate_per_s=0.01)
    assert api("POST", "/v1/turns", body={"prompt": "one"})[0] == 202
    status, headers, body = api("POST", "/v1/turns", body={"prompt": "two"})
    assert status == 429 and body["error"]["code"] == "rate_limited" and body["error"]["retryable"] is True
    assert int(headers["Retry-After"]) == -(-body["error"]["retryAfterMs"] // 1000)


def test_a_rest_turn_holds_a_slot_among_the_users_turns_in_flight(api, conn, management, runtime):
    runtime.settings = replace(runtime.settings, max_user_turns_in_flight=1)
    assert api("POST", "/v1/turns", body={"prompt": "one"})[0] == 202
    conn("c1")(prompt="two")  # the same user over a socket: the REST turn holds the user's one slot
    (refused,) = management.events("c1")
    assert refused["code"] == "rate_limited" and "turns in flight" in refused["message"]


def test_a_websocket_client_resumes_a_turn_asked_over_rest(api, client, conn, management, settings):
    turn_id = api("POST", "/v1/turns", body={"prompt": "hello"})[2]["turnId"]
    conn("c9")(action="resume", turnId=turn_id)  # queued: attached, its worker streams to c9
    run_queued(client, settings)
    events = management.events("c9")
    assert [e["type"] for e in events][0] == "accepted" and events[-1]["type"] == "done"
    assert "".join(e["text"] for e in events if e["type"] == "chunk") == "Hello, world"
    assert api("GET", f"/v1/turns/{turn_id}")[2]["answer"] == "Hello, world"
    assert NO_CONNECTION not in {post[0] for post in management.posts}


def test_a_socket_turn_cancelled_over_rest_tells_its_socket(api, conn, management):
    conn("c1")(prompt="long one")
    (accepted,) = management.events("c1")
    status, _, body = api("DELETE", f"/v1/turns/{accepted['turnId']}")
    assert status == 200 and body["error"]["code"] == "cancelled"
    assert management.events("c1")[-1]["code"] == "cancelled"  # the socket that asked hears it


def test_an_unexpected_failure_is_answered_in_the_envelope(api, runtime, monkeypatch):
    def broken(*_: Any) -> None:
        raise RuntimeError("DynamoDB on fire")

    monkeypatch.setattr(runtime.turns, "get", broken)
    status, _, body = api("GET", "/v1/turns/abc")
    assert status == 500 and body == {"error": {"code": "internal", "message": "The request could not be served; try again.",
                                                "retryable": True}}


# ---- conversations


def test_conversations_are_listed_newest_first_a_page_at_a_time(api, conn):
    socket = conn("c1")
    socket(prompt="Plan a trip to Lisbon", conversationId="trip")
    socket(prompt="and where to eat?", conversationId="trip")
    api("POST", "/v1/turns", body={"prompt": "Draft the quarterly report", "conversationId": "work"})
    api("POST", "/v1/turns", body={"prompt": "no conversation"})  # listed nowhere

    status, _, page = api("GET", "/v1/conversations")
    assert status == 200 and "cursor" not in page
    assert [(c["conversationId"], c["title"], c["turns"]) for c in page["conversations"]] == [
        ("work", "Draft the quarterly report", 1), ("trip", "Plan a trip to Lisbon", 2)]
    first = api("GET", "/v1/conversations?limit=1")[2]
    assert [c["conversationId"] for c in first["conversations"]] == ["work"]
    second = api("GET", f"/v1/conversations?limit=1&cursor={first['cursor']}")[2]
    assert [c["conversationId"] for c in second["conversations"]] == ["trip"]
    assert api("GET", "/v1/conversations", user="mallory")[2] == {"conversations": []}


@pytest.mark.parametrize("query", ["limit=0", "limit=51", "limit=ten", "cursor=not-a-cursor",
                                   "cursor=eyJ0dXJuSWQiOiJ4In0"])  # a cursor of another shape
def test_a_bad_page_is_400(api, query):
    status, _, body = api("GET", f"/v1/conversations?{query}")
    assert status == 400 and body["error"]["code"] == "invalid_request"


def test_a_conversation_shows_its_turns_in_order_with_their_answers(api, client, conn, settings):
    conn("c1")(prompt="first question", conversationId="trip")
    api("POST", "/v1/turns", body={"prompt": "second question", "conversationId": "trip"})
    run_queued(client, settings)
    status, _, body = api("GET", "/v1/conversations/trip")
    assert status == 200 and body["conversationId"] == "trip" and "cursor" not in body
    assert [(t["prompt"], t["status"], t["answer"]) for t in body["turns"]] == [
        ("first question", "done", "Hello, world"), ("second question", "done", "Hello, world")]
    first = api("GET", "/v1/conversations/trip?limit=1")[2]
    assert [t["prompt"] for t in first["turns"]] == ["first question"]
    rest = api("GET", f"/v1/conversations/trip?limit=1&cursor={first['cursor']}")[2]
    assert [t["prompt"] for t in rest["turns"]] == ["second question"]


def test_another_users_conversation_does_not_exist(api):
    api("POST", "/v1/turns", body={"prompt": "secret plans", "conversationId": "trip"})
    for user in ("mallory", "alice"):
        conversation = "trip" if user == "mallory" else "never-had-one"
        status, _, body = api("GET", f"/v1/conversations/{conversation}", user=user)
        assert status == 404 and body["error"]["code"] == "not_found", user


# ---- one-shot answers


@pytest.fixture
def no_wait(runtime):
    """The handler answers 202 at once (the worker runs here only when a test runs it)."""
    runtime.settings = replace(runtime.settings, answer_wait_s=0)
    return runtime


def test_a_one_shot_question_is_answered_once_then_served_from_the_cache(api, client, settings, agent, no_wait):
    status, headers, body = api("GET", "/v1/answers?q=What%20is%20SQS%3F")
    assert status == 202 and body["cached"] is False and headers["Location"] == f"/v1/turns/{body['turnId']}"
    run_queued(client, settings)
    for question in ("What is SQS?", "  what   is SQS ", "WHAT IS SQS"):  # the same question
        status, headers, again = api("GET", f"/v1/answers?q={question}")
        assert status == 200 and again["cached"] is True and headers["X-Cache"] == "Hit", question
        assert again["answer"] == "Hello, world" and again["turnId"] == body["turnId"]
    assert len(agent.calls) == 1 and drain_queue(settings) == []  # one agent call in all
    assert api("GET", "/v1/answers?q=What is SNS?")[0] == 202  # another question
    assert api("GET", "/v1/answers?q=What is SQS?", user="bob")[0] == 202  # another user: their own answer


def test_a_cached_answer_past_its_ttl_is_asked_again(api, client, settings, agent, no_wait):
    turn_id = api("GET", "/v1/answers?q=What is SQS?")[2]["turnId"]
    run_queued(client, settings)
    no_wait.settings = replace(no_wait.settings, answer_cache_ttl_s=0)  # every answer is stale at once
    status, _, body = api("GET", "/v1/answers?q=What is SQS?")
    assert status == 202 and body["turnId"] == turn_id  # the same turn, run anew
    run_queued(client, settings)
    assert len(agent.calls) == 2
    assert api("GET", f"/v1/turns/{turn_id}")[2]["status"] == "done"


def test_a_one_shot_question_needs_a_question(api, settings):
    for query in ("", "?q=", "?q=%20%20"):
        status, _, body = api("GET", f"/v1/answers{query}")
        assert status == 400 and body["error"]["code"] == "invalid_request", query
    assert drain_queue(settings) == []


def test_a_one_shot_question_that_failed_answers_its_error(api, client, settings, agent, no_wait):
    from tests.support.fakes import client_error

    agent.script = client_error("ValidationException")  # for good: not retryable
    turn_id = api("GET", "/v1/answers?q=boom")[2]["turnId"]
    run_queued(client, settings)
    status, _, body = api("GET", "/v1/answers?q=boom")
    assert status >= 400 and body["error"]["code"] == "agent_error"
    assert api("GET", f"/v1/turns/{turn_id}")[2]["status"] == "error"
