"""A turn as it is recorded: the one place that lists a turn's fields.

Each field names its DynamoDB attribute in its metadata, and the turn store marshals by walking
these fields, so a new field is added here and nowhere else. Turns outlive connections: an
answer can be read back (resumed) after a drop, until the record's TTL.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional

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
    expires_at: int = field(default=0, metadata=_attr("expiresAt"))  # epoch s, the table's TTL
    claim_id: Optional[str] = field(default=None, metadata=_attr("claimId"))  # the worker that owns it
    claimed_at: Optional[int] = field(default=None, metadata=_attr("claimedAt"))
    checkpoint_at: Optional[int] = field(default=None, metadata=_attr("checkpointAt"))  # the heartbeat
    cancel_requested: bool = field(default=False, metadata=_attr("cancelRequested"))
    # The last resume (epoch ms): its client wants the turn again from seq 1.
    resumed_at: Optional[int] = field(default=None, metadata=_attr("resumedAt"))
    answer: str = field(default="", metadata=_attr("answer"))
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

    @property
    def failure(self) -> Failure:
        """How a turn that ended in ``error`` failed, as its client was told."""
        return Failure(ErrorCode(self.error_code or ErrorCode.INTERNAL), self.error_message or "", self.error_retryable)


# Python field name -> DynamoDB attribute name, in declaration order.
ATTRIBUTES: Dict[str, str] = {f.name: f.metadata["attr"] for f in fields(Turn)}


def failure_fields(failure: Failure) -> Dict[str, Any]:
    """The fields that record how a turn failed."""
    return {"error_code": failure.code, "error_message": failure.message, "error_retryable": failure.retryable}


@dataclass(frozen=True)
class TurnState:
    """What a running turn's worker watches: who owns it, where its events go, whether to stop."""

    status: Status
    claim_id: Optional[str]
    connection_id: str
    cancel_requested: bool = False
    resumed_at: Optional[int] = None

    def still(self, claim_id: Optional[str], connection_id: str, resumed_at: Optional[int]) -> bool:
        """Running, owned by that claim, streaming to that connection as last resumed, not cancelled."""
        return (
            self.status == Status.RUNNING
            and self.claim_id == claim_id
            and self.connection_id == connection_id
            and self.resumed_at == resumed_at
            and not self.cancel_requested
        )
