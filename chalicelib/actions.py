"""What a client's actions do to turns: ask, resume, cancel.

Each returns the events for the client that acted; nothing here waits on the agent. Only a turn's
owner may resume or cancel it: for anyone else it does not exist (``not_found``), so turn ids
reveal nothing.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import List, Optional

from chalicelib import protocol, sessions
from chalicelib.coalesce import replay
from chalicelib.gateway import Gateway
from chalicelib.protocol import Ask, Event
from chalicelib.runtime import Runtime
from chalicelib.store import DONE, QUEUED, RUNNING, Connection, Turn, TurnExists
from chalicelib.turnqueue import TurnMessage
from chalicelib.turns import CANCELLED, CRASHED, leave_flight, post_quietly

_NOT_FOUND = "No turn with that id belongs to you."


def turn_id_for(user_id: str, request_id: Optional[str]) -> str:
    """A client's idempotency key names one turn per user; without one every ask is new."""
    if request_id is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"turn\0{user_id}\0{request_id}".encode()).hexdigest()[:32]


def ask(runtime: Runtime, connection: Connection, message: Ask, api_id: str, stage: str) -> List[Event]:
    """Record and queue a turn, or name the one this request id already started."""
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
        return duplicate
    decision = store.take_token(connection.user_id, settings.rate_per_s, settings.rate_burst)
    if not decision.allowed:
        return [_rate_limited("You are sending questions too fast.", decision.retry_after_ms, message.request_id)]
    if not store.enter_flight(connection.connection_id, settings.max_turns_in_flight):
        text = f"This connection already has {settings.max_turns_in_flight} turns in flight."
        return [_rate_limited(text, 1000, message.request_id)]
    try:
        store.create_turn(turn)
    except TurnExists:  # the same request id, a moment ago
        leave_flight(runtime, turn)
        return _duplicate(runtime, turn) or []
    except Exception:
        leave_flight(runtime, turn)
        raise
    try:
        runtime.queue.put(TurnMessage(turn.turn_id, api_id, stage))
    except Exception:
        # Never leave a turn queued that no worker will see; a retry can then use the same id.
        store.end_queued(turn.turn_id, turn.user_id, CRASHED)
        leave_flight(runtime, turn)
        raise
    return [protocol.accepted_event(turn.turn_id, message.request_id)]


def _duplicate(runtime: Runtime, turn: Turn) -> List[Event]:
    if turn.request_id is None:
        return []
    existing = runtime.store.get_turn(turn.turn_id)
    if existing is None:
        return []
    return [{**protocol.accepted_event(existing.turn_id, turn.request_id), "duplicate": True}]


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


def resume(runtime: Runtime, connection: Connection, turn_id: str) -> List[Event]:
    """Attach this connection to an unfinished turn, or re-send a finished one from seq 1."""
    turn = _owned(runtime, connection, turn_id)
    if turn is None:
        return [protocol.error_event(protocol.NOT_FOUND, _NOT_FOUND, False, turn_id)]
    accepted = protocol.accepted_event(turn.turn_id, turn.request_id)
    if not turn.finished:
        if runtime.store.attach(turn_id, connection.user_id, connection.connection_id) is not None:
            return [accepted]  # its worker sends the answer so far, then the rest, here
        turn = runtime.store.get_turn(turn_id) or turn  # it finished meanwhile
    return [accepted] + replay(
        turn.turn_id, turn.answer, lambda seq: _terminal(turn, seq), runtime.settings.max_frame_bytes
    )


def _terminal(turn: Turn, seq: int) -> Event:
    if turn.status == DONE:
        return protocol.done_event(turn.turn_id, seq, turn.session_id, turn.stats or None)
    return protocol.error_event(
        turn.error_code or protocol.INTERNAL, turn.error_message or "", turn.error_retryable, turn.turn_id, seq
    )


def cancel(runtime: Runtime, gateway: Gateway, connection: Connection, turn_id: str) -> List[Event]:
    """Stop a turn: at once if no worker has it yet, else its worker ends it within a second."""
    turn = _owned(runtime, connection, turn_id)
    if turn is None:
        return [protocol.error_event(protocol.NOT_FOUND, _NOT_FOUND, False, turn_id)]
    store = runtime.store
    if turn.status == QUEUED:
        ended = store.end_queued(turn_id, connection.user_id, CANCELLED)
        if ended is not None:
            leave_flight(runtime, ended)
            event = protocol.error_event(CANCELLED.code, CANCELLED.message, CANCELLED.retryable, turn_id, 1)
            if ended.connection_id != connection.connection_id:
                post_quietly(gateway, ended.connection_id, event)
            return [event]
        turn = store.get_turn(turn_id) or turn
    if turn.status == RUNNING and store.request_cancel(turn_id, connection.user_id) is not None:
        return []  # the worker sends the turn's `cancelled` terminal event
    return [protocol.error_event(protocol.INVALID_REQUEST, "That turn has already finished.", False)]
