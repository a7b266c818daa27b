"""A turn as the REST API shows it (GET /v1/turns/{turnId}): its status and its answer so far."""
from __future__ import annotations

from typing import Any, Dict

from chalicelib.http import error_body
from chalicelib.turns.outbox import decode_ends
from chalicelib.turns.outcomes import Status
from chalicelib.turns.record import Turn


def turn_view(turn: Turn, poll_after_ms: int) -> Dict[str, Any]:
    """What a poller sees: the answer grows while the turn runs (saved every ``poll_after_ms``,
    the worker's checkpoint interval, which is also when to ask again); ``seq`` is the last event
    number sent so far, what a WebSocket ``resume`` continues after.

    Ended, it holds ``stats`` (done) or ``error`` (the same code and message a socket was sent);
    ``waiting`` holds the agent's request for tool results (``control``), answered over a socket.
    """
    view: Dict[str, Any] = {
        "turnId": turn.turn_id,
        "status": str(turn.status),
        "answer": turn.answer,
        "seq": len(decode_ends(turn.seq_ends)),
        "createdAt": turn.created_at,
    }
    if turn.conversation_id is not None:
        view["conversationId"] = turn.conversation_id
    if turn.request_id is not None:
        view["requestId"] = turn.request_id
    if turn.status == Status.DONE:
        view["stats"] = turn.stats
    elif turn.status == Status.ERROR:
        view.update(error_body(turn.failure))
    elif turn.status == Status.WAITING:
        view["control"] = turn.control
    if not turn.finished:
        view["pollAfterMs"] = poll_after_ms
    if turn.finished_at is not None:
        view["finishedAt"] = turn.finished_at
    return view
