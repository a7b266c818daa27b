"""How a turn stands and how it ends: its statuses, and the one ``Failure`` type.

Every path that ends a turn badly (the agent, the worker, a cancel, the $default handler) speaks
in a ``Failure``, which builds its own ``error`` event, so the code, message and retryability a
client sees are decided in one place and persisted exactly as they were sent.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Optional

from chalicelib.protocol import ErrorCode, Event, error_event


class Status(StrEnum):
    """A turn's life: queued -> running -> done | error, with a pause in ``waiting``."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # paused: the agent asked the client to run a tool (return of control)
    DONE = "done"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        return self in (Status.DONE, Status.ERROR)


@dataclass(frozen=True)
class Failure:
    """Why something the client asked for did not succeed: a stable code and a human message."""

    code: ErrorCode
    message: str
    retryable: bool
    retry_after_ms: Optional[int] = None  # sent as retryAfterMs: wait at least this long

    def event(self, turn_id: Optional[str] = None, seq: Optional[int] = None, **extra: Any) -> Event:
        """The ``error`` event that tells a client about this failure."""
        return error_event(self.code, self.message, self.retryable, turn_id, seq, retryAfterMs=self.retry_after_ms, **extra)


CRASHED = Failure(ErrorCode.INTERNAL, "The turn failed inside agentstream; try again.", True)
NO_END = Failure(ErrorCode.INTERNAL, "The agent's stream ended without saying it was finished.", True)
CANCELLED = Failure(ErrorCode.CANCELLED, "The turn was cancelled.", False)
INTERRUPTED = Failure(ErrorCode.INTERRUPTED, "The turn was interrupted before it finished; ask again.", True)
NOT_YOURS = Failure(ErrorCode.NOT_FOUND, "No turn with that id belongs to you.", False)
ALREADY_FINISHED = Failure(ErrorCode.INVALID_REQUEST, "That turn has already finished.", False)
NOT_SIGNED_IN = Failure(
    ErrorCode.UNAUTHORIZED,
    "This connection is not signed in (it expired or was never authenticated); reconnect with a token.",
    False,
)
SUPERSEDED = Failure(
    ErrorCode.SUPERSEDED,
    "This turn is now delivered to another connection (it was resumed there); this one gets no more of it.",
    False,
)
UNSERVED = Failure(ErrorCode.INTERNAL, "The request could not be served; try again.", True)


def rate_limited(reason: str, retry_after_ms: int) -> Failure:
    """Too many requests: the client should wait ``retry_after_ms`` (sent as ``retryAfterMs``)."""
    return Failure(ErrorCode.RATE_LIMITED, f"{reason} Try again in {retry_after_ms / 1000:.1f} s.", True, retry_after_ms)


def quota_exceeded(reason: str, retry_after_ms: int) -> Failure:
    """A token budget is spent: no new turns until its period resets, ``retry_after_ms`` from now."""
    return Failure(ErrorCode.QUOTA_EXCEEDED, reason, True, retry_after_ms)
