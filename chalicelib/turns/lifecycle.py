"""What both sides of a turn do to it: the $default handler (actions) and the worker (run).

Kept apart from both so neither imports the other's internals: ending a turn whose worker died,
giving back a connection's in-flight slot, and telling a client something on a failing path.
"""
from __future__ import annotations

from typing import Optional

from chalicelib.gateway import NO_CONNECTION, ConnectionGone, Gateway
from chalicelib.logs import logger
from chalicelib.protocol import Event
from chalicelib.runtime import Runtime
from chalicelib.store import now_ms
from chalicelib.turns.outcomes import INTERRUPTED
from chalicelib.turns.record import Turn


def interrupt_if_dead(runtime: Runtime, turn_id: str) -> Optional[Turn]:
    """End a running turn whose heartbeat went stale (its worker died); None if it was not one.

    It ends ``interrupted``, never runs again: the agent may already have acted on it.
    """
    stale_before = now_ms() - runtime.settings.heartbeat_timeout_ms
    turn = runtime.turns.interrupt(turn_id, INTERRUPTED, stale_before)
    if turn is not None:
        logger.warning("turn interrupted by a worker failure")
        leave_flight(runtime, turn)
    return turn


def leave_flight(runtime: Runtime, turn: Turn) -> None:
    """Give back the turn's in-flight slots, its asking connection's and its user's (best effort)."""
    try:
        if turn.origin_connection_id != NO_CONNECTION:  # a REST ask holds no connection's slot
            runtime.connections.leave_flight(turn.origin_connection_id)
    except Exception:  # noqa: BLE001 - the counter only limits; the connection's TTL resets it
        logger.exception("could not update the connection's turns in flight")
    try:
        runtime.rate_limits.leave_flight(turn.user_id, turn.turn_id)
    except Exception:  # noqa: BLE001 - an ended turn's slot is given back when the user next needs it
        logger.exception("could not update the user's turns in flight")


def post_quietly(gateway: Gateway, connection_id: str, event: Event) -> None:
    """Tell a client something on a path that is already failing; never raise."""
    try:
        gateway.post(connection_id, event)
    except ConnectionGone:
        pass
    except Exception:  # noqa: BLE001 - best effort on an already failing path
        logger.exception("could not tell the client")
