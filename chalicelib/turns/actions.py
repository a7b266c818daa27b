"""What a client's actions do to turns: ask, resume, cancel, return_control; and usage.

Each sends its events to the client that acted through ``reply``; nothing here waits on the agent. Only a turn's
owner may resume or cancel it: for anyone else it does not exist (``not_found``), so turn ids
reveal nothing.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from chalicelib import protocol
from chalicelib.gateway import NO_CONNECTION, Gateway
from chalicelib.logs import logger
from chalicelib.protocol import Ask, Event, ReturnControlResults
from chalicelib.runtime import Runtime
from chalicelib.store import Connection, TurnExists, now_ms
from chalicelib.turns import ids, metering
from chalicelib.turns.lifecycle import interrupt_if_dead, leave_flight, post_quietly
from chalicelib.turns.outbox import decode_ends, replay
from chalicelib.turns.outcomes import ALREADY_FINISHED, CANCELLED, CRASHED, NOT_YOURS, Failure, Status, rate_limited
from chalicelib.turns.queue import TurnMessage
from chalicelib.turns.record import Turn

Reply = Callable[[Event], None]  # sends one event to the client that acted


def ask(runtime: Runtime, reply: Reply, connection: Connection, message: Ask, api_id: str, stage: str,
        reuse_for_ms: Optional[int] = None) -> None:
    """Record the turn, tell the client it is accepted, then queue it (so `accepted` comes first).

    With a request id the turn is recorded first and charged to the rate limits only if it is new,
    so asks repeated at the same moment (a retrying client, two tabs) are all answered as the one
    turn, never rate-limited by each other, and spend one token and one slot between them.
    ``reuse_for_ms``: the request id's turn answers again only that long after it ended; later, the
    same request runs anew (the REST API's cached one-shot answers).
    """
    settings = runtime.settings
    turn_id = ids.turn_id(connection.user_id, message.request_id)
    # Without a conversation name: one session per connection, or per turn when asked over REST.
    asker = turn_id if connection.connection_id == NO_CONNECTION else connection.connection_id
    turn = Turn(
        turn_id=turn_id,
        user_id=connection.user_id,
        connection_id=connection.connection_id,
        prompt=message.prompt,
        session_id=ids.session_id(connection.user_id, message.conversation_id, asker),
        conversation_id=message.conversation_id,
        request_id=message.request_id,
        memory_id=ids.memory_id(connection.user_id) if settings.agent_memory else None,
        trace=message.trace,
    )
    if message.request_id is not None:
        settled = _record_idempotent(runtime, turn, reuse_for_ms)
        if settled is not None:  # the request id names a turn that is not this ask's to start
            reply(settled)
            return
    refusal = _charge(runtime, turn)
    if refusal is not None:
        if message.request_id is not None:  # duplicates waiting on this ask get the same answer
            runtime.turns.end_unclaimed(turn.turn_id, turn.user_id, refusal)
        reply(refusal.event(requestId=message.request_id))
        return
    try:
        if message.request_id is None:
            turn.admitted_at = now_ms()
            runtime.turns.create(turn)
        else:
            runtime.turns.admit(turn.turn_id)
    except Exception:
        leave_flight(runtime, turn)
        if message.request_id is not None:  # else its request id would name a turn that never runs
            _end_quietly(runtime, turn, CRASHED)
        raise
    extra = {"turn_id": turn.turn_id, **({"prompt": message.prompt} if settings.log_content else {})}
    logger.info("turn accepted", extra=extra)
    if message.conversation_id is not None:
        _index_conversation(runtime, turn)
    try:
        reply(protocol.accepted_event(turn.turn_id, message.request_id))
    except Exception:  # noqa: BLE001 - the turn is recorded: run it, the client can resume it
        logger.exception("could not send accepted")
    _queue(runtime, reply, turn, api_id, stage)


ADMISSION_WAIT_S = 3.0  # how long a duplicate waits for the first ask to pass the rate limits
ABANDONED_AFTER_MS = 60_000  # an ask that recorded its turn and did not admit it in this long died
_ADMISSION_POLL_S = 0.02


def _record_idempotent(runtime: Runtime, turn: Turn, reuse_for_ms: Optional[int] = None) -> Optional[Event]:
    """Record a turn named by a request id; None if this ask is to start it, else the reply.

    The turn already exists: a duplicate, answered ``accepted`` with ``duplicate: true`` once the
    first ask was admitted (or with the refusal it got); unless it ended in a retryable failure,
    which the same request id may run again.
    """
    duplicate = {**protocol.accepted_event(turn.turn_id, turn.request_id), "duplicate": True}
    deadline = time.monotonic() + ADMISSION_WAIT_S
    while time.monotonic() < deadline:
        try:
            runtime.turns.create(turn)
            return None
        except TurnExists:
            pass
        existing = runtime.turns.get(turn.turn_id)
        if existing is None:
            continue  # gone meanwhile (its TTL): record it again
        abandoned = existing.admitted_at is None and existing.created_at < now_ms() - ABANDONED_AFTER_MS
        stale = reuse_for_ms is not None and existing.finished and not existing.ended_since(now_ms() - reuse_for_ms)
        retryable = existing.status == Status.ERROR and existing.error_retryable
        if retryable or (existing.status == Status.QUEUED and abandoned) or stale:
            if runtime.turns.replace(existing, turn):
                logger.info("the turn of this request id never ran, failed retryably or is past its reuse: it runs again")
                return None
            continue  # another ask replaced it first: look again
        if existing.admitted_at is None and existing.status == Status.ERROR:
            return existing.failure.event(requestId=turn.request_id)  # refused for good before it ran
        if existing.admitted_at is not None or existing.status != Status.QUEUED:
            return duplicate
        time.sleep(_ADMISSION_POLL_S)  # the first ask is being charged: its answer is ours
    return duplicate  # the first ask stalled before its admission; a resume will find the turn


def _index_conversation(runtime: Runtime, turn: Turn) -> None:
    """List the turn's conversation as the user's newest (GET /v1/conversations). Best effort: the
    turn is recorded and runs either way; its conversation's turns are found from the turns."""
    try:
        runtime.conversations.touch(turn.user_id, str(turn.conversation_id), turn.prompt)
    except Exception:  # noqa: BLE001 - an index, not the turn
        logger.exception("could not record the conversation")


def _end_quietly(runtime: Runtime, turn: Turn, failure: Failure) -> None:
    try:
        runtime.turns.end_unclaimed(turn.turn_id, turn.user_id, failure)
    except Exception:  # noqa: BLE001 - already failing; a retryable end is what a retry would replace
        logger.exception("could not end the turn")


def _charge(runtime: Runtime, turn: Turn) -> Optional[Failure]:
    """Check the user's token budgets, then take a token from the user's bucket and a slot on the
    connection and the user, or say why not. An ask over budget spends none of them."""
    settings = runtime.settings
    if settings.user_daily_token_budget or settings.user_monthly_token_budget:
        spent = metering.over_budget(runtime, turn.user_id)
        if spent is not None:
            return spent
    decision = runtime.rate_limits.take(turn.user_id, settings.rate_per_s, settings.rate_burst)
    if not decision.allowed:
        return rate_limited("You are sending questions too fast.", decision.retry_after_ms)
    on_socket = turn.connection_id != NO_CONNECTION  # a REST ask holds only the user's slot
    if on_socket and not runtime.connections.enter_flight(turn.connection_id, settings.max_turns_in_flight):
        return rate_limited(f"This connection already has {settings.max_turns_in_flight} turns in flight.", 1000)
    if not _enter_user_flight(runtime, turn):
        if on_socket:
            runtime.connections.leave_flight(turn.connection_id)
        cap = settings.max_user_turns_in_flight
        return rate_limited(f"You already have {cap} turns in flight; wait for one to finish.", 1000)
    return None


def _enter_user_flight(runtime: Runtime, turn: Turn) -> bool:
    """A slot among the user's turns in flight; a slot held by a turn that has ended is given back."""
    cap = runtime.settings.max_user_turns_in_flight
    rate_limits = runtime.rate_limits
    if rate_limits.enter_flight(turn.user_id, turn.turn_id, cap):
        return True
    freed = False
    for turn_id in rate_limits.in_flight(turn.user_id):
        held = runtime.turns.get(turn_id)
        if held is None or held.finished:
            rate_limits.leave_flight(turn.user_id, turn_id)
            freed = True
    return freed and rate_limits.enter_flight(turn.user_id, turn.turn_id, cap)


def _owned(runtime: Runtime, connection: Connection, turn_id: str) -> Optional[Turn]:
    turn = runtime.turns.get(turn_id)
    return turn if turn is not None and turn.user_id == connection.user_id else None


def resume(runtime: Runtime, reply: Reply, connection: Connection, turn_id: str, from_seq: int = 0) -> None:
    """Send a turn again to this connection: the events after ``from_seq``, numbered as they were.

    A finished (or waiting) turn is read back here, after ``accepted``. A running or queued one is
    attached: its worker sends ``accepted`` and the replay itself, in order with what it streams,
    so no event of the old stream lands between them, and tells any connection it stops serving.
    """
    turn = _owned(runtime, connection, turn_id)
    if turn is None:
        reply(NOT_YOURS.event(turn_id))
        return
    if turn.status == Status.RUNNING:
        # A turn whose worker died and whose message is gone would otherwise run "forever".
        turn = interrupt_if_dead(runtime, turn_id) or turn
    if not turn.finished:
        attached = runtime.turns.attach(turn_id, connection.user_id, connection.connection_id, from_seq)
        if attached is not None and attached.status != Status.WAITING:
            return  # its worker answers
        turn = attached or runtime.turns.get(turn_id) or turn  # waiting for tools, or finished meanwhile
    reply(protocol.accepted_event(turn.turn_id, turn.request_id))
    last = turn
    events = replay(
        turn.turn_id,
        turn.answer,
        lambda seq: _last_event(last, seq),
        runtime.settings.max_frame_bytes,
        decode_ends(turn.seq_ends),
        turn.extras,
        from_seq,
    )
    for event in events:
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
            if ended.connection_id != connection.connection_id:  # resumed elsewhere (NO_CONNECTION: nobody)
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


def usage(runtime: Runtime, reply: Reply, connection: Connection) -> None:
    """The user's token usage and budgets this UTC day and month."""
    reply(metering.usage_event(runtime, connection.user_id))


def _queue(runtime: Runtime, reply: Reply, turn: Turn, api_id: str, stage: str) -> None:
    """Hand the turn to the workers; never leave one queued that no worker will see."""
    try:
        runtime.queue.put(TurnMessage(turn.turn_id, api_id, stage))
    except Exception:  # noqa: BLE001 - whatever failed, the client is told and the turn ended
        logger.exception("could not queue the turn")
        if runtime.turns.end_unclaimed(turn.turn_id, turn.user_id, CRASHED) is not None:
            leave_flight(runtime, turn)
        reply(CRASHED.event(turn.turn_id, 1))
