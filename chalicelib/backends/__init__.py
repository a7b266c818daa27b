"""Backends turn one Bedrock API's stream into the same neutral events.

The relay and the turn lifecycle only ever see these events, so a new Bedrock API plugs in as one
module that yields them, without touching anything downstream.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Protocol, Union

from chalicelib import protocol


@dataclass(frozen=True)
class TurnRequest:
    prompt: str
    session_id: str
    memory_id: Optional[str] = None
    trace: bool = False


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Trace:
    trace: Dict[str, Any]


@dataclass(frozen=True)
class ReturnControl:
    invocation_id: str
    inputs: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class End:
    session_id: str
    stop_reason: Optional[str] = None
    usage: Optional[Dict[str, Any]] = None


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    retryable: bool


BackendEvent = Union[TextDelta, Trace, ReturnControl, End, Failure]


class Backend(Protocol):
    def stream(self, request: TurnRequest) -> Iterator[BackendEvent]:
        """Yield the turn's events; the last is always ``End`` or ``Failure``, never an exception."""
        ...


# Bedrock error codes (modelled exceptions before the stream, and the lower-camel members
# inside it) that mean "too much traffic, try again later".
_THROTTLING = {"throttlingexception", "servicequotaexceededexception", "toomanyrequestsexception"}
# Failures on Bedrock's side that a retry may fix.
_TRANSIENT = {
    "internalserverexception",
    "badgatewayexception",
    "dependencyfailedexception",
    "modelnotreadyexception",
    "serviceunavailableexception",
    "modelstreamerrorexception",
    "modeltimeoutexception",
}


def classify_error(code: str, message: str) -> Failure:
    """Map a Bedrock error code to the client-facing failure (a pure, stable mapping)."""
    key = code.lower()
    if key in _THROTTLING:
        return Failure(protocol.THROTTLED, "The agent is busy (Bedrock throttled the request); try again shortly.", True)
    reason = f"{code}: {message}" if message else code
    return Failure(protocol.AGENT_ERROR, f"The agent failed ({reason}).", key in _TRANSIENT)
