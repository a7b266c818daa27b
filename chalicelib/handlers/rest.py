"""/v1: the same turns over REST, for clients that cannot hold a WebSocket (scripts, servers, bots).

A turn asked here is the WebSocket's turn: the same validation, idempotency, rate limits and turns
in flight, queued to the same workers. It has no socket to stream to (``NO_CONNECTION``): the worker
keeps its answer, which ``GET /v1/turns/{turnId}`` reads as it grows, and a WebSocket client may
``resume`` it. Only ``GET /v1/answers`` waits for the agent, and never past ``ANSWER_WAIT_S``, so
none comes near API Gateway's 29 seconds. Another user's turn or conversation does not exist here
(404, never 403).
"""
from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from chalice import AuthResponse, CORSConfig, Response

from chalicelib import answers
from chalicelib.auth import AuthError, token_from_request
from chalicelib.cursor import decode_cursor, encode_cursor
from chalicelib.gateway import NO_CONNECTION
from chalicelib.http import HttpError, error_response, json_response
from chalicelib.logs import log_context, logger
from chalicelib.protocol import Ask, ErrorCode, Event, ProtocolError, parse_client_message
from chalicelib.runtime import Runtime
from chalicelib.store import Connection, now_ms
from chalicelib.turns import actions, ids
from chalicelib.turns.lifecycle import interrupt_if_dead
from chalicelib.turns.outcomes import NOT_YOURS, UNSERVED, Failure, Status
from chalicelib.turns.record import Turn
from chalicelib.turns.view import turn_view

# Browsers may call the API from the chat page's origin (CloudFront) with a bearer token; no
# cookies are involved, so any origin may (the token is what authorizes).
CORS = CORSConfig(allow_origin="*", allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
                  expose_headers=["Retry-After"], max_age=600)
IDEMPOTENCY_KEY = "idempotency-key"
NO_CONVERSATION = Failure(ErrorCode.NOT_FOUND, "You have no conversation with that id.", False)
# API Gateway keeps an authorizer's policy for this long, keyed by the Authorization header: a token
# is verified once per five minutes however many calls it makes (API Gateway's default). The price:
# a token that expires is still honoured for up to this long after (docs/rest.md).
AUTHORIZER_TTL_S = 300
# The verified user reaches a route only through the authorizer's principal; a route reached
# without one (a template that lost its authorizer) refuses rather than trusting a header.
NOT_AUTHORIZED = Failure(ErrorCode.UNAUTHORIZED, "This request was not authorized; send Authorization: Bearer <JWT>.",
                         False)


class Unauthorized(Exception):
    """An authorizer's refusal: API Gateway answers ``401`` for exactly this message (and caches
    nothing); any other exception is an authorizer failure (``500``)."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def served(handle: Callable[..., Response]) -> Callable[..., Response]:
    """A route's handler, whose failures are answered in the envelope: an ``HttpError`` as it
    says, anything else ``internal`` (500), never Chalice's own error page or a stack trace."""

    @functools.wraps(handle)  # Chalice names the route after the function
    def route(*args: Any, **kwargs: Any) -> Response:
        try:
            return handle(*args, **kwargs)
        except HttpError as exc:
            logger.info("request refused", extra={"code": str(exc.failure.code), "reason": exc.failure.message})
            return error_response(exc.failure)
        except Exception:  # noqa: BLE001 - the client gets the envelope, the log gets the trace
            logger.exception("could not serve the request")
            return error_response(UNSERVED)

    return route


def authorize(runtime: Runtime, authorization: Optional[str]) -> AuthResponse:
    """The REST API's authorizer: the bearer token verified exactly as at $connect; the policy
    allows every route, so the one API Gateway caches serves the token's next calls to any of them."""
    token = token_from_request(None, {"Authorization": authorization or ""})
    if token is None:
        logger.info("token refused", extra={"reason": "no bearer token"})
        raise Unauthorized()
    try:
        user_id = runtime.verifier.verify(token).user_id
    except AuthError as exc:
        logger.info("token refused", extra={"reason": str(exc)})
        raise Unauthorized() from None
    return AuthResponse(routes=["*"], principal_id=user_id)


def user_of(request: Any) -> str:
    """The user the authorizer verified (its ``principalId``), never anything else of the request."""
    principal = (request.context.get("authorizer") or {}).get("principalId")
    if not isinstance(principal, str) or not principal:
        raise HttpError(NOT_AUTHORIZED)
    return principal


def _ask_of(raw_body: Optional[bytes], headers: Mapping[str, str]) -> Ask:
    """The body as the WebSocket's ask, its ``requestId`` from ``Idempotency-Key`` if sent."""
    try:
        body = (raw_body or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(Failure(ErrorCode.INVALID_REQUEST, "The body must be UTF-8 JSON.", False)) from None
    key = {name.lower(): value for name, value in headers.items()}.get(IDEMPOTENCY_KEY)
    if key is not None:
        try:
            document = json.loads(body)
        except ValueError:
            document = None  # the parser below says what is wrong with it
        if isinstance(document, dict):
            if document.get("requestId", key) != key:
                text = "Idempotency-Key and requestId name different requests; send one of them."
                raise HttpError(Failure(ErrorCode.INVALID_REQUEST, text, False))
            body = json.dumps({**document, "requestId": key})
    return _parsed_ask(body)


def _parsed_ask(body: str) -> Ask:
    """An ask, validated as the WebSocket validates it; 400 with the protocol's message if not one."""
    try:
        message = parse_client_message(body)
    except ProtocolError as exc:
        raise HttpError(Failure(ErrorCode.INVALID_REQUEST, exc.message, False)) from None
    if not isinstance(message, Ask):
        raise HttpError(Failure(ErrorCode.INVALID_REQUEST, "POST /v1/turns takes a question: {\"prompt\": ...}.", False))
    return message


def create_turn(runtime: Runtime, request: Any) -> Response:
    """``POST /v1/turns``: record and queue the turn, ``202`` with its id at once."""
    user_id = user_of(request)
    message = _ask_of(request.raw_body, request.headers)
    accepted = _ask(runtime, request, user_id, message)
    body: Dict[str, Any] = {"turnId": accepted["turnId"], "status": str(Status.QUEUED)}
    if accepted.get("duplicate"):
        turn = runtime.turns.get(accepted["turnId"])
        body.update(status=str(turn.status) if turn else body["status"], duplicate=True)
    if message.request_id is not None:
        body["requestId"] = message.request_id
    return json_response(202, body, {"Location": f"/v1/turns/{accepted['turnId']}"})


ANSWER_POLL_S = 0.2  # how often a waiting one-shot question looks at its turn (a projected read)


def answer(runtime: Runtime, request: Any) -> Response:
    """``GET /v1/answers?q=``: a one-shot question (no conversation), answered ``200`` within
    ``ANSWER_WAIT_S``, else ``202`` with its turn to poll. The same question (``answers.normal_form``)
    asked again within ``ANSWER_CACHE_TTL_S`` of its answer gets that answer, ``cached``, with no
    call to the agent and no rate-limit token spent."""
    user_id = user_of(request)
    question = (request.query_params or {}).get("q")
    if question is None:
        raise HttpError(Failure(ErrorCode.INVALID_REQUEST, "GET /v1/answers takes the question as ?q=.", False))
    message = _parsed_ask(json.dumps({"prompt": question, "requestId": answers.request_id(question)}))
    settings = runtime.settings
    turn_id = ids.turn_id(user_id, message.request_id)
    reuse_ms = settings.answer_cache_ttl_s * 1000
    known = runtime.turns.get(turn_id)
    if known is not None and known.ended_since(now_ms() - reuse_ms):
        return _answered(known, cached=True)
    _ask(runtime, request, user_id, message, reuse_ms)
    deadline = time.monotonic() + settings.answer_wait_s
    while True:
        state = runtime.turns.state(turn_id)
        if state is not None and state.status.finished:
            turn = runtime.turns.get(turn_id)
            if turn is not None:
                return _answered(turn, cached=False)
        if time.monotonic() >= deadline:
            break
        time.sleep(ANSWER_POLL_S)
    turn = runtime.turns.get(turn_id)
    status = str(turn.status) if turn is not None else str(Status.QUEUED)
    body = {"turnId": turn_id, "status": status, "cached": False, "pollAfterMs": settings.checkpoint_interval_ms}
    return json_response(202, body, {"Location": f"/v1/turns/{turn_id}"})


def _answered(turn: Turn, cached: bool) -> Response:
    """A finished one-shot turn: its answer (200), or its error in the envelope."""
    if turn.status == Status.ERROR:
        raise HttpError(turn.failure)
    body = {"turnId": turn.turn_id, "answer": turn.answer, "cached": cached, "stats": turn.stats,
            "answeredAt": turn.finished_at}
    return json_response(200, body, {"X-Cache": "Hit" if cached else "Miss"})


def _ask(runtime: Runtime, request: Any, user_id: str, message: Ask, reuse_for_ms: Optional[int] = None) -> Event:
    """The WebSocket's ask, for a caller with no socket; its ``accepted`` event, or the refusal
    raised (refused, or accepted and then not queued: the turn ended ``internal``)."""
    events: List[Event] = []
    with log_context(user_id=user_id):
        asker = Connection(NO_CONNECTION, user_id, 0, 0)
        actions.ask(runtime, events.append, asker, message, runtime.settings.websocket_api_id, _stage(runtime, request),
                    reuse_for_ms)
    errors = [event for event in events if event["type"] == "error"]
    if errors:
        raise HttpError(_failure_of(errors[-1]))
    (accepted,) = events
    return accepted


def get_turn(runtime: Runtime, request: Any, turn_id: str) -> Response:
    """``GET /v1/turns/{turnId}``: the turn and its answer so far."""
    user_id = user_of(request)
    turn = runtime.turns.get(turn_id)
    if turn is None or turn.user_id != user_id:
        raise HttpError(NOT_YOURS)
    if turn.status == Status.RUNNING:  # its worker died: say so, rather than "running" forever
        turn = interrupt_if_dead(runtime, turn_id) or turn
    return json_response(200, turn_view(turn, runtime.settings.checkpoint_interval_ms))


def cancel_turn(runtime: Runtime, request: Any, turn_id: str) -> Response:
    """``DELETE /v1/turns/{turnId}``: a queued (or waiting) turn ends ``cancelled`` at once (200),
    a running one within a second, by its worker (202); an ended one cannot be (400)."""
    user_id = user_of(request)
    events: List[Event] = []
    gateway = runtime.gateway(runtime.settings.websocket_api_id, _stage(runtime, request))
    with log_context(user_id=user_id):
        actions.cancel(runtime, events.append, gateway, Connection(NO_CONNECTION, user_id, 0, 0), turn_id)
    refusals = [event for event in events if event["type"] == "error" and event["code"] != ErrorCode.CANCELLED]
    if refusals:
        raise HttpError(_failure_of(refusals[-1]))
    turn = runtime.turns.get(turn_id)
    if turn is None:  # expired meanwhile
        raise HttpError(NOT_YOURS)
    return json_response(200 if turn.finished else 202, turn_view(turn, runtime.settings.checkpoint_interval_ms))


PAGE_SIZE, MAX_PAGE_SIZE = 20, 50


def _page(request: Any, keys: Dict[str, type]) -> Tuple[int, Optional[Dict[str, Any]]]:
    """``?limit=`` (1 to 50, default 20) and ``?cursor=`` (from the previous page)."""
    query = request.query_params or {}
    try:
        limit = int(query.get("limit", PAGE_SIZE))
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError
    except ValueError:
        raise HttpError(Failure(ErrorCode.INVALID_REQUEST, f"limit takes 1 to {MAX_PAGE_SIZE}.", False)) from None
    try:
        return limit, decode_cursor(query.get("cursor"), keys)
    except ValueError:
        raise HttpError(Failure(ErrorCode.INVALID_REQUEST, "cursor is not one this API gave; start again without it.",
                                False)) from None


def _with_cursor(body: Dict[str, Any], position: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    cursor = encode_cursor(position)
    return {**body, "cursor": cursor} if cursor else body


def list_conversations(runtime: Runtime, request: Any) -> Response:
    """``GET /v1/conversations``: the user's conversations, newest first, a page at a time."""
    user_id = user_of(request)
    limit, after = _page(request, {"conversationId": str, "updatedAt": int})
    conversations, end = runtime.conversations.newest(user_id, limit, after)
    return json_response(200, _with_cursor({"conversations": [c.view() for c in conversations]}, end))


def get_conversation(runtime: Runtime, request: Any, conversation_id: str) -> Response:
    """``GET /v1/conversations/{conversationId}``: its turns in order (prompt, answer, status), a
    page at a time; 404 when the user has no turn in it."""
    user_id = user_of(request)
    limit, after = _page(request, {"turnId": str, "createdAt": int})
    session = ids.session_id(user_id, conversation_id, "")
    turns, end = runtime.turns.in_session(session, limit, after)
    if not turns and after is None:
        raise HttpError(NO_CONVERSATION)
    poll = runtime.settings.checkpoint_interval_ms
    views = [{"prompt": turn.prompt, **turn_view(turn, poll)} for turn in turns]
    return json_response(200, _with_cursor({"conversationId": conversation_id, "turns": views}, end))


def _stage(runtime: Runtime, request: Any) -> str:
    """The API stage, the WebSocket API's too (Chalice gives both APIs the stage's name)."""
    return str(request.context.get("stage") or runtime.settings.stage)


def _failure_of(event: Event) -> Failure:
    return Failure(ErrorCode(event["code"]), event["message"], bool(event["retryable"]), event.get("retryAfterMs"))
