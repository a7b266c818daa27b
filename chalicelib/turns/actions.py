"""What a client's actions do to turns: ask, resume, cancel, return_control.

Each sends its events to the client that acted through ``reply``; nothing here waits on the agent. Only a turn's
owner may resume or cancel it: for anyone else it does not exist (``not_found``), so turn ids
reveal nothing.
"""
from __future__ import annotations

from typing import Callable, Optional

from chalicelib import protocol
from chalicelib.gateway import Gateway
from chalicelib.logs import logger
from chalicelib.protocol import Ask, Event, ReturnControlResults
from chalicelib.runtime import Runtime
from chalicelib.store import Connection, TurnExists
from chalicelib.turns import ids
from chalicelib.turns.lifecycle import interrupt_if_dead, leave_flight, post_quietly
from chalicelib.turns.outbox import replay
from chalicelib.turns.outcomes import ALREADY_FINISHED, CANCELLED, CRASHED, NOT_YOURS, Failure, Status, rate_limited
from chalicelib.turns.queue import TurnMessage
from chalicelib.turns.record import Turn

Reply = Callable[[Event], None]  # sends one event to the client that acted


def ask(runtime: Runtime, reply: Reply, connection: Connection, message: Ask, api_id: str, stage: str) -> None:
    """Record the turn, tell the client it is accepted, then queue it (so `accepted` comes first).

    A repeated request id names the turn it already started instead.
    """
    settings = runtime.settings
    turn = Turn(
        turn_id=ids.turn_id(connection.user_id, message.request_id),
        user_id=connection.user_id,
        connection_id=connection.connection_id,
        prompt=message.prompt,
        session_id=ids.session_id(connection.user_id, message.conversation_id, connection.connection_id),
        conversation_id=message.conversation_id,
        request_id=message.request_id,
        memory_id=ids.memory_id(connection.user_id) if settings.agent_memory else None,
        trace=message.trace,
    )
    duplicate = _duplicate(runtime, turn)
    if duplicate:
        reply(duplicate)
        return
    decision = runtime.rate_limits.take(connection.user_id, settings.rate_per_s, settings.rate_burst)
    if not decision.allowed:
        reply(_rate_limited("You are sending questions too fast.", decision.retry_after_ms, message.request_id))
        return
    if not runtime.connections.enter_flight(connection.connection_id, settings.max_turns_in_flight):
        text = f"This connection already has {settings.max_turns_in_flight} turns in flight."
        reply(_rate_limited(text, 1000, message.request_id))
        return
    try:
        runtime.turns.create(turn)
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
    existing = runtime.turns.get(turn.turn_id)
    if existing is None:
        return None
    return {**protocol.accepted_event(existing.turn_id, turn.request_id), "duplicate": True}


def _rate_limited(reason: str, retry_after_ms: int, request_id: Optional[str]) -> Event:
    return rate_limited(reason, retry_after_ms).event(retryAfterMs=retry_after_ms, requestId=request_id)


def _owned(runtime: Runtime, connection: Connection, turn_id: str) -> Optional[Turn]:
    turn = runtime.turns.get(turn_id)
    return turn if turn is not None and turn.user_id == connection.user_id else None


def resume(runtime: Runtime, reply: Reply, connection: Connection, turn_id: str) -> None:
    """Attach this connection to an unfinished turn, or re-send a finished one from seq 1."""
    turn = _owned(runtime, connection, turn_id)
    if turn is None:
        reply(NOT_YOURS.event(turn_id))
        return
    reply(protocol.accepted_event(turn.turn_id, turn.request_id))
    if turn.status == Status.RUNNING:
        # A turn whose worker died and whose message is gone would otherwise run "forever".
        turn = interrupt_if_dead(runtime, turn_id) or turn
    if not turn.finished:
        attached = runtime.turns.attach(turn_id, connection.user_id, connection.connection_id)
        if attached is not None and attached.status != Status.WAITING:
            return  # its worker sends the answer so far, then the rest, here
        turn = attached or runtime.turns.get(turn_id) or turn  # waiting for tools, or finished meanwhile
    last = turn
    for event in replay(turn.turn_id, turn.answer, lambda seq: _last_event(last, seq), runtime.settings.max_frame_bytes):
        reply(event)


def _last_event(turn: Turn, seq: int) -> Event:
    """What a replay ends with: the terminal event, or the pending request for tool results."""
    if turn.status == Status.WAITING:
        control = turn.control
        return protocol.return_control_event(turn.turn_id, seq, control.get("invocationId", ""), control.get("inputs", []))
    if turn.status == Status.DONE:
        return protocol.done_event(turn.turn_id, seq, turn.session_id, turn.stats or None)
    return turn.failure.event(turn.turn_id, seq)


def cancel(runtime: Runtime, reply: Reply, gateway: Gateway, connection: Connection, turn_id: str) -> None:
    """Stop a turn: at once if no worker has it yet, else its worker ends it within a second."""
    turn = _owned(runtime, connection, turn_id)
    if turn is None:
        reply(NOT_YOURS.event(turn_id))
        return
    turns = runtime.turns
    if turn.status in (Status.QUEUED, Status.WAITING):
        ended = turns.end_unclaimed(turn_id, connection.user_id, CANCELLED)
        if ended is not None:
            leave_flight(runtime, ended)
            # A queued turn has sent nothing yet (seq 1); a waiting one already sent events, so no seq.
            seq = 1 if turn.status == Status.QUEUED else None
            event = CANCELLED.event(turn_id, seq)
            if ended.connection_id != connection.connection_id:
                post_quietly(gateway, ended.connection_id, event)
            reply(event)
            return
        turn = turns.get(turn_id) or turn
    if turn.status == Status.RUNNING and turns.request_cancel(turn_id, connection.user_id) is not None:
        return  # the worker sends the turn's `cancelled` terminal event
    reply(ALREADY_FINISHED.event())


def return_control(
    runtime: Runtime, reply: Reply, connection: Connection, message: ReturnControlResults, api_id: str, stage: str
) -> None:
    """The client ran the agent's tools: queue the paused turn again with the results."""
    turn = _owned(runtime, connection, message.turn_id)
    if turn is None:
        reply(NOT_YOURS.event(message.turn_id))
        return
    continued = runtime.turns.continue_with(
        turn.turn_id, connection.user_id, message.invocation_id, message.results, connection.connection_id
    )
    if continued is None:
        text = f"That turn is not waiting for the results of invocation {message.invocation_id!r}."
        reply(Failure(protocol.ErrorCode.INVALID_REQUEST, text, False).event())
        return
    reply(protocol.accepted_event(turn.turn_id, turn.request_id))
    _queue(runtime, reply, continued, api_id, stage)


def _queue(runtime: Runtime, reply: Reply, turn: Turn, api_id: str, stage: str) -> None:
    """Hand the turn to the workers; never leave one queued that no worker will see."""
    try:
        runtime.queue.put(TurnMessage(turn.turn_id, api_id, stage))
    except Exception:  # noqa: BLE001 - whatever failed, the client is told and the turn ended
        logger.exception("could not queue the turn")
        if runtime.turns.end_unclaimed(turn.turn_id, turn.user_id, CRASHED) is not None:
            leave_flight(runtime, turn)
        reply(CRASHED.event(turn.turn_id, 1))
