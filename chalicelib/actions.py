"""What a client's actions do to turns: ask, resume, cancel, return_control.

Each sends its events to the client that acted through ``reply``; nothing here waits on the agent. Only a turn's
owner may resume or cancel it: for anyone else it does not exist (``not_found``), so turn ids
reveal nothing.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Callable, Optional

from chalicelib import protocol, sessions
from chalicelib.coalesce import replay
from chalicelib.gateway import Gateway
from chalicelib.logs import logger
from chalicelib.protocol import Ask, Event, ReturnControlResults
from chalicelib.runtime import Runtime
from chalicelib.store import DONE, QUEUED, RUNNING, WAITING, Connection, Turn, TurnExists
from chalicelib.turnqueue import TurnMessage
from chalicelib.turns import CANCELLED, CRASHED, interrupt_if_dead, leave_flight, post_quietly

_NOT_FOUND = "No turn with that id belongs to you."
Reply = Callable[[Event], None]  # sends one event to the client that acted


def turn_id_for(user_id: str, request_id: Optional[str]) -> str:
    """A client's idempotency key names one turn per user; without one every ask is new."""
    if request_id is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"turn\0{user_id}\0{request_id}".encode()).hexdigest()[:32]


def ask(runtime: Runtime, reply: Reply, connection: Connection, message: Ask, api_id: str, stage: str) -> None:
    """Record the turn, tell the client it is accepted, then queue it (so `accepted` comes first).

    A repeated request id names the turn it already started instead.
    """
    settings, store = runtime.settings, runtime.store
    turn = Turn(
        turn_id=turn_id_for(connection.user_id, message.request_id),
        user_id=connection.user_id,
        connection_id=connection.connection_id,
        prompt=message.prompt,
        session_id=sessions.session_id(connection.user_id, message.conversation_id, connection.connection_id),
        conversation_id=message.conversation_id,
        request_id=message.request_id,
        memory_id=sessions.memory_id(connection.user_id) if settings.agent_memory else None,
        trace=message.trace,
    )
    duplicate = _duplicate(runtime, turn)
    if duplicate:
        reply(duplicate)
        return
    decision = store.take_token(connection.user_id, settings.rate_per_s, settings.rate_burst)
    if not decision.allowed:
        reply(_rate_limited("You are sending questions too fast.", decision.retry_after_ms, message.request_id))
        return
    if not store.enter_flight(connection.connection_id, settings.max_turns_in_flight):
        text = f"This connection already has {settings.max_turns_in_flight} turns in flight."
        reply(_rate_limited(text, 1000, message.request_id))
        return
    try:
        store.create_turn(turn)
    except TurnExists:  # the same request id, a moment ago
        leave_flight(runtime, turn)
        reply(_duplicate(runtime, turn) or protocol.accepted_event(turn.turn_id, message.request_id))
        return
    except Exception:
        leave_flight(runtime, turn)
        raise
    extra = {"turn_id": turn.turn_id, **({"prompt": message.prompt} if settings.log_content else {})}
    logger.info("turn accepted", extra=extra)
    try:
        reply(protocol.accepted_event(turn.turn_id, message.request_id))
    except Exception:  # noqa: BLE001 - the turn is recorded: run it, the client can resume it
        logger.exception("could not send accepted")
    _queue(runtime, reply, turn, api_id, stage)


def _duplicate(runtime: Runtime, turn: Turn) -> Optional[Event]:
    if turn.request_id is None:
        return None
    existing = runtime.store.get_turn(turn.turn_id)
    if existing is None:
        return None
    return {**protocol.accepted_event(existing.turn_id, turn.request_id), "duplicate": True}


def _rate_limited(message: str, retry_after_ms: int, request_id: Optional[str]) -> Event:
    return protocol.error_event(
        protocol.RATE_LIMITED,
        f"{message} Try again in {retry_after_ms / 1000:.1f} s.",
        True,
        retryAfterMs=retry_after_ms,
        requestId=request_id,
    )


def _owned(runtime: Runtime, connection: Connection, turn_id: str) -> Optional[Turn]:
    turn = runtime.store.get_turn(turn_id)
    return turn if turn is not None and turn.user_id == connection.user_id else None


def resume(runtime: Runtime, reply: Reply, connection: Connection, turn_id: str) -> None:
    """Attach this connection to an unfinished turn, or re-send a finished one from seq 1."""
    turn = _owned(runtime, connection, turn_id)
    if turn is None:
        reply(protocol.error_event(protocol.NOT_FOUND, _NOT_FOUND, False, turn_id))
        return
    reply(protocol.accepted_event(turn.turn_id, turn.request_id))
    if turn.status == RUNNING:
        # A turn whose worker died and whose message is gone would otherwise run "forever".
        turn = interrupt_if_dead(runtime, turn_id) or turn
    if not turn.finished:
        attached = runtime.store.attach(turn_id, connection.user_id, connection.connection_id)
        if attached is not None and attached.status != WAITING:
            return  # its worker sends the answer so far, then the rest, here
        turn = attached or runtime.store.get_turn(turn_id) or turn  # waiting for tools, or finished meanwhile
    last = turn
    for event in replay(turn.turn_id, turn.answer, lambda seq: _last_event(last, seq), runtime.settings.max_frame_bytes):
        reply(event)


def _last_event(turn: Turn, seq: int) -> Event:
    """What a replay ends with: the terminal event, or the pending request for tool results."""
    if turn.status == WAITING:
        control = turn.control
        return protocol.return_control_event(turn.turn_id, seq, control.get("invocationId", ""), control.get("inputs", []))
    if turn.status == DONE:
        return protocol.done_event(turn.turn_id, seq, turn.session_id, turn.stats or None)
    return protocol.error_event(
        turn.error_code or protocol.INTERNAL, turn.error_message or "", turn.error_retryable, turn.turn_id, seq
    )


def cancel(runtime: Runtime, reply: Reply, gateway: Gateway, connection: Connection, turn_id: str) -> None:
    """Stop a turn: at once if no worker has it yet, else its worker ends it within a second."""
    turn = _owned(runtime, connection, turn_id)
    if turn is None:
        reply(protocol.error_event(protocol.NOT_FOUND, _NOT_FOUND, False, turn_id))
        return
    store = runtime.store
    if turn.status in (QUEUED, WAITING):
        ended = store.end_queued(turn_id, connection.user_id, CANCELLED)
        if ended is not None:
            leave_flight(runtime, ended)
            # A queued turn has sent nothing yet (seq 1); a waiting one already sent events, so no seq.
            seq = 1 if turn.status == QUEUED else None
            event = protocol.error_event(CANCELLED.code, CANCELLED.message, CANCELLED.retryable, turn_id, seq)
            if ended.connection_id != connection.connection_id:
                post_quietly(gateway, ended.connection_id, event)
            reply(event)
            return
        turn = store.get_turn(turn_id) or turn
    if turn.status == RUNNING and store.request_cancel(turn_id, connection.user_id) is not None:
        return  # the worker sends the turn's `cancelled` terminal event
    reply(protocol.error_event(protocol.INVALID_REQUEST, "That turn has already finished.", False))


def return_control(
    runtime: Runtime, reply: Reply, connection: Connection, message: ReturnControlResults, api_id: str, stage: str
) -> None:
    """The client ran the agent's tools: queue the paused turn again with the results."""
    turn = _owned(runtime, connection, message.turn_id)
    if turn is None:
        reply(protocol.error_event(protocol.NOT_FOUND, _NOT_FOUND, False, message.turn_id))
        return
    continued = runtime.store.continue_turn(
        turn.turn_id, connection.user_id, message.invocation_id, message.results, connection.connection_id
    )
    if continued is None:
        text = f"That turn is not waiting for the results of invocation {message.invocation_id!r}."
        reply(protocol.error_event(protocol.INVALID_REQUEST, text, False))
        return
    reply(protocol.accepted_event(turn.turn_id, turn.request_id))
    _queue(runtime, reply, continued, api_id, stage)


def _queue(runtime: Runtime, reply: Reply, turn: Turn, api_id: str, stage: str) -> None:
    """Hand the turn to the workers; never leave one queued that no worker will see."""
    try:
        runtime.queue.put(TurnMessage(turn.turn_id, api_id, stage))
    except Exception:
        logger.exception("could not queue the turn")
        if runtime.store.end_queued(turn.turn_id, turn.user_id, CRASHED) is not None:
            leave_flight(runtime, turn)
        reply(protocol.error_event(CRASHED.code, CRASHED.message, CRASHED.retryable, turn.turn_id, 1))
