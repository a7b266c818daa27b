"""The turn lifecycle: accepted at $default, run by the worker, ended by exactly one terminal event.

A turn is claimed with a conditional write before the agent is called, so a redelivered SQS
message never invokes the agent twice; a turn found claimed but unfinished (its worker died) is
ended with ``interrupted`` instead of being silently re-run, since an agent's actions may have
side effects.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Dict, List, Optional

from chalicelib import protocol, sessions
from chalicelib.backends import End, Failure, ReturnControl, TextDelta, Trace, TurnRequest
from chalicelib.coalesce import Outbox
from chalicelib.gateway import ConnectionGone, Gateway
from chalicelib.logs import log_context, logger
from chalicelib.protocol import Ask, Event
from chalicelib.relay import Relay
from chalicelib.runtime import Runtime
from chalicelib.store import DONE, ERROR, RUNNING, Connection, Turn, now_ms
from chalicelib.turnqueue import TurnMessage

_UNSUPPORTED_RETURN_CONTROL = Failure(
    protocol.AGENT_ERROR,
    "The agent asked the client to run a tool (return of control), which this server does not support yet.",
    False,
)
_CRASHED = Failure(protocol.INTERNAL, "The turn failed inside agentstream; try again.", True)
_NO_END = Failure(protocol.INTERNAL, "The agent's stream ended without saying it was finished.", True)


def start_turn(runtime: Runtime, connection: Connection, ask: Ask, api_id: str, stage: str) -> Event:
    """Record the turn and queue it; returns the ``accepted`` event for the client."""
    settings = runtime.settings
    turn = Turn(
        turn_id=uuid.uuid4().hex,
        user_id=connection.user_id,
        connection_id=connection.connection_id,
        prompt=ask.prompt,
        session_id=sessions.session_id(connection.user_id, ask.conversation_id, connection.connection_id),
        conversation_id=ask.conversation_id,
        request_id=ask.request_id,
        memory_id=sessions.memory_id(connection.user_id) if settings.agent_memory else None,
        trace=ask.trace,
    )
    runtime.store.create_turn(turn)
    runtime.queue.put(TurnMessage(turn.turn_id, api_id, stage))
    extra: Dict[str, Any] = {"turn_id": turn.turn_id}
    if settings.log_content:
        extra["prompt"] = ask.prompt
    logger.info("turn accepted", extra=extra)
    return protocol.accepted_event(turn.turn_id, ask.request_id)


def run_turn(runtime: Runtime, message: TurnMessage) -> None:
    """Run one queued turn to its terminal event. Raises only before the agent was called."""
    with log_context(turn_id=message.turn_id):
        turn = runtime.store.get_turn(message.turn_id)
        if turn is None:
            logger.warning("queued turn not found; dropped")
            return
        with log_context(connection_id=turn.connection_id, user_id=turn.user_id):
            gateway = runtime.gateway(message.api_id, message.stage)
            if not runtime.store.claim_turn(turn.turn_id):
                _settle_redelivery(runtime, gateway, turn.turn_id)
                return
            settings = runtime.settings
            outbox = Outbox(turn.turn_id, settings.flush_interval_ms / 1000, settings.max_frame_bytes)
            try:
                _stream(runtime, gateway, turn, outbox)
            except Exception:  # noqa: BLE001 - after the claim, end the turn instead of retrying it
                logger.exception("turn failed")
                _end_after_crash(runtime, gateway, turn, told_client=outbox.terminal_queued)


def _stream(runtime: Runtime, gateway: Gateway, turn: Turn, outbox: Outbox) -> None:
    settings = runtime.settings
    started = time.monotonic()
    claimed_at = now_ms()
    answer: List[str] = []
    request = TurnRequest(turn.prompt, turn.session_id, turn.memory_id, turn.trace)

    def post(event: Event) -> None:
        gateway.post(turn.connection_id, event)

    outcome: Optional[Any] = None
    with Relay(post, outbox) as relay:
        try:
            for event in runtime.backend.stream(request):
                if isinstance(event, TextDelta):
                    answer.append(event.text)
                    relay.text(event.text)
                elif isinstance(event, Trace):
                    if turn.trace:
                        relay.event(lambda seq, trace=event.trace: protocol.trace_event(turn.turn_id, seq, trace))
                elif isinstance(event, ReturnControl):
                    outcome = _UNSUPPORTED_RETURN_CONTROL
                    break
                else:
                    outcome = event
                    break
        except Exception:  # noqa: BLE001 - a bug mid-stream still ends the turn in sequence
            logger.exception("turn failed while streaming")
            outcome = _CRASHED
        outcome = outcome or _NO_END
        text = "".join(answer)

        def stats() -> Dict[str, Any]:
            first = outbox.first_chunk_at
            return {
                "chunks": outbox.chunks,
                "characters": len(text),
                "firstTokenMs": None if first is None else round((first - started) * 1000),
                "durationMs": round((time.monotonic() - started) * 1000),
                "queueMs": max(0, claimed_at - turn.created_at),
            }

        final: Dict[str, Any] = {}

        def terminal(seq: int) -> Event:
            final["stats"] = stats()
            if isinstance(outcome, End):
                return protocol.done_event(turn.turn_id, seq, turn.session_id, final["stats"])
            return protocol.error_event(outcome.code, outcome.message, outcome.retryable, turn.turn_id, seq)

        relay.finish(terminal)

    if isinstance(outcome, End):
        runtime.store.finish_turn(turn.turn_id, DONE, text, final["stats"])
    else:
        runtime.store.finish_turn(turn.turn_id, ERROR, text, final["stats"], outcome.code, outcome.message)
    extra: Dict[str, Any] = {"outcome": "done" if isinstance(outcome, End) else outcome.code, **final["stats"]}
    if settings.log_content:
        extra["answer"] = text
    logger.info("turn finished", extra=extra)
    if relay.gone:
        logger.info("client gone; answer kept, connection record removed")
        runtime.store.delete_connection(turn.connection_id)


def _settle_redelivery(runtime: Runtime, gateway: Gateway, turn_id: str) -> None:
    """A second delivery: finished turns are left alone; a claimed, unfinished one is interrupted."""
    turn = runtime.store.get_turn(turn_id)
    if turn is None or turn.status != RUNNING:
        logger.info("duplicate delivery ignored")
        return
    message = "The turn was interrupted before it finished; ask again."
    if runtime.store.finish_turn(turn_id, ERROR, turn.answer, turn.stats, protocol.INTERRUPTED, message):
        logger.warning("turn interrupted by a worker failure")
        _post_quietly(gateway, turn.connection_id, protocol.error_event(protocol.INTERRUPTED, message, True, turn_id))


def _end_after_crash(runtime: Runtime, gateway: Gateway, turn: Turn, told_client: bool) -> None:
    """End a turn whose worker hit a bug or an outage; the client hears one terminal event only."""
    message = "The turn failed inside agentstream; try again."
    try:
        runtime.store.finish_turn(turn.turn_id, ERROR, "", {}, protocol.INTERNAL, message)
    except Exception:  # noqa: BLE001 - the record stays running; a redelivery will interrupt it
        logger.exception("could not record the failure")
    if not told_client:
        _post_quietly(gateway, turn.connection_id, protocol.error_event(protocol.INTERNAL, message, True, turn.turn_id))


def _post_quietly(gateway: Gateway, connection_id: str, event: Event) -> None:
    try:
        gateway.post(connection_id, event)
    except ConnectionGone:
        pass
    except Exception:  # noqa: BLE001 - best effort on an already failing path
        logger.exception("could not tell the client")
