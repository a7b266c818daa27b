"""A turn as it is recorded: the one place that lists a turn's fields.

Each field names its DynamoDB attribute in its metadata, and the turn store marshals by walking
these fields, so a new field is added here and nowhere else. Turns outlive connections: an
answer can be read back (resumed) after a drop, until the record's TTL.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from chalicelib.protocol import ErrorCode
from chalicelib.turns.outcomes import Failure, Status


def _attr(name: str) -> Dict[str, str]:
    return {"attr": name}


@dataclass
class Turn:
    turn_id: str = field(metadata=_attr("turnId"))
    user_id: str = field(metadata=_attr("userId"))
    # Where the turn's events go; changes when a client resumes on another connection.
    connection_id: str = field(metadata=_attr("connectionId"))
    prompt: str = field(metadata=_attr("prompt"))
    session_id: str = field(metadata=_attr("sessionId"))
    status: Status = field(default=Status.QUEUED, metadata=_attr("status"))
    # The connection that asked (whose turns-in-flight count this turn holds).
    origin_connection_id: str = field(default="", metadata=_attr("originConnectionId"))
    conversation_id: Optional[str] = field(default=None, metadata=_attr("conversationId"))
    request_id: Optional[str] = field(default=None, metadata=_attr("requestId"))
    memory_id: Optional[str] = field(default=None, metadata=_attr("memoryId"))
    trace: bool = field(default=False, metadata=_attr("trace"))
    created_at: int = field(default=0, metadata=_attr("createdAt"))  # epoch ms
    # When the ask was let through the rate limits (epoch ms); until then its duplicates wait.
    admitted_at: Optional[int] = field(default=None, metadata=_attr("admittedAt"))
    expires_at: int = field(default=0, metadata=_attr("expiresAt"))  # epoch s, the table's TTL
    claim_id: Optional[str] = field(default=None, metadata=_attr("claimId"))  # the worker that owns it
    claimed_at: Optional[int] = field(default=None, metadata=_attr("claimedAt"))
    checkpoint_at: Optional[int] = field(default=None, metadata=_attr("checkpointAt"))  # the heartbeat
    cancel_requested: bool = field(default=False, metadata=_attr("cancelRequested"))
    # Every resume of the unfinished turn, in order, as "<fromSeq>:<connectionId>": the last one
    # gets the turn from then on; the others are told it went elsewhere. Its length is the
    # version a worker's writes are conditional on.
    resumers: List[str] = field(default_factory=list, metadata=_attr("resumers"))
    answer: str = field(default="", metadata=_attr("answer"))
    # How the answer was numbered: per seq, where that chunk ends ("-" for another event), and
    # the other events as a replay re-sends them (chalicelib.turns.outbox).
    seq_ends: str = field(default="", metadata=_attr("seqEnds"))
    extras: Dict[str, Any] = field(default_factory=dict, metadata=_attr("extras"))
    error_code: Optional[str] = field(default=None, metadata=_attr("errorCode"))
    error_message: Optional[str] = field(default=None, metadata=_attr("errorMessage"))
    error_retryable: bool = field(default=False, metadata=_attr("errorRetryable"))
    stats: Dict[str, Any] = field(default_factory=dict, metadata=_attr("stats"))
    # The agent's return-of-control request (invocationId, inputs) and the client's answer to it.
    control: Dict[str, Any] = field(default_factory=dict, metadata=_attr("control"))
    control_invocation_id: Optional[str] = field(default=None, metadata=_attr("controlInvocationId"))
    control_results: Dict[str, Any] = field(default_factory=dict, metadata=_attr("controlResults"))
    paused_at: Optional[int] = field(default=None, metadata=_attr("pausedAt"))
    finished_at: Optional[int] = field(default=None, metadata=_attr("finishedAt"))

    @property
    def finished(self) -> bool:
        return self.status.finished

    def ended_since(self, since_ms: int) -> bool:
        """Finished at or after ``since_ms`` (epoch ms): still fresh for a reuse of its answer."""
        return self.finished and (self.finished_at or 0) >= since_ms

    @property
    def failure(self) -> Failure:
        """How a turn that ended in ``error`` failed, as its client was told."""
        return Failure(ErrorCode(self.error_code or ErrorCode.INTERNAL), self.error_message or "", self.error_retryable)


# Python field name -> DynamoDB attribute name, in declaration order.
ATTRIBUTES: Dict[str, str] = {f.name: f.metadata["attr"] for f in fields(Turn)}


def failure_fields(failure: Failure) -> Dict[str, Any]:
    """The fields that record how a turn failed."""
    return {"error_code": failure.code, "error_message": failure.message, "error_retryable": failure.retryable}


def resumer(connection_id: str, from_seq: int) -> str:
    return f"{from_seq}:{connection_id}"


def parse_resumer(entry: str) -> Tuple[str, int]:
    """(connection id, fromSeq) of one resume."""
    from_seq, _, connection_id = entry.partition(":")
    return connection_id, int(from_seq or 0)


@dataclass(frozen=True)
class TurnState:
    """What a running turn's worker watches: who owns it, whether to stop, who resumed it."""

    status: Status
    connection_id: str
    claim_id: Optional[str] = None  # none until a worker claims it
    cancel_requested: bool = False
    resumers: List[str] = field(default_factory=list)

    def still(self, claim_id: Optional[str], resumes: int) -> bool:
        """Running, owned by that claim, with no resume since the ``resumes`` seen, not cancelled."""
        return (
            self.status == Status.RUNNING
            and self.claim_id == claim_id
            and len(self.resumers) == resumes
            and not self.cancel_requested
        )
