"""Backends turn one Bedrock API's stream into the same neutral events.

The relay and the turn lifecycle only ever see these events, so a new Bedrock API plugs in as one
module that yields them, without touching anything downstream.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, List, Optional, Protocol, Union

from chalicelib.protocol import ErrorCode
from chalicelib.retry import backoff_s
from chalicelib.turns.outcomes import Failure


@dataclass(frozen=True)
class TurnRequest:
    prompt: str
    session_id: str
    memory_id: Optional[str] = None
    trace: bool = False
    # A paused agent turn continues with the client's tool results instead of a prompt.
    invocation_id: Optional[str] = None
    control_results: Optional[List[Dict[str, Any]]] = None
    # The verified asker: what answers may draw on (their own documents only, docs/documents.md).
    user_id: Optional[str] = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Trace:
    trace: Dict[str, Any]
    phase: Optional[str] = None  # what the agent is doing, without the trace's content


@dataclass(frozen=True)
class ReturnControl:
    invocation_id: str
    inputs: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Files:
    """Files the agent produced (code interpreter): name, MIME type, content bytes."""

    files: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class End:
    session_id: str
    stop_reason: Optional[str] = None
    usage: Optional[Dict[str, Any]] = None
    latency_ms: Optional[int] = None


def add_usage(total: Optional[Dict[str, int]], more: Optional[Dict[str, int]]) -> Optional[Dict[str, int]]:
    """Token counts summed, with ``totalTokens`` as ConverseStream reports it; None while nothing was reported."""
    if more is None:
        return total
    inputs = (total or {}).get("inputTokens", 0) + more.get("inputTokens", 0)
    outputs = (total or {}).get("outputTokens", 0) + more.get("outputTokens", 0)
    return {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs}


BackendEvent = Union[TextDelta, Trace, ReturnControl, Files, End, Failure]
Events = Generator[BackendEvent, None, None]  # a stream of them; closing it closes Bedrock's stream


class Backend(Protocol):
    def stream(self, request: TurnRequest) -> Events:
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
        return Failure(ErrorCode.THROTTLED, "The agent is busy (Bedrock throttled the request); try again shortly.", True)
    message = message.strip().rstrip(".")
    reason = f"{code}: {message}" if message else code
    return Failure(ErrorCode.AGENT_ERROR, f"The agent failed ({reason}).", key in _TRANSIENT)


def guarded(
    open_stream: Callable[[], Any],
    read: Callable[[Any], Events],
    stream_retries: int = 2,
    sleep: Callable[[float], None] = time.sleep,
) -> Events:
    """Run one streaming Bedrock call under the error rules every backend shares.

    Errors before the stream (botocore has already retried the retryable ones) and inside it
    become one ``Failure``, never an exception. A throttle inside the stream is retried with
    backoff only while nothing has been yielded: after text, a retry would say it twice.
    ``read`` maps the response to events and closes its stream when done or abandoned.
    """
    from botocore.exceptions import BotoCoreError, ClientError, EventStreamError

    for attempt in range(stream_retries + 1):
        try:
            response = open_stream()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            yield classify_error(error.get("Code", "ClientError"), error.get("Message", ""))
            return
        except BotoCoreError as exc:
            yield Failure(ErrorCode.AGENT_ERROR, f"Could not reach Bedrock ({type(exc).__name__}).", True)
            return
        events = read(response)
        yielded = False
        try:
            for event in events:
                yielded = True
                yield event
            return
        except EventStreamError as exc:
            error = exc.response.get("Error", {})
            failure = classify_error(error.get("Code", "EventStreamError"), error.get("Message", ""))
            if failure.code == ErrorCode.THROTTLED and not yielded and attempt < stream_retries:
                sleep(backoff_s(attempt))
                continue
            yield failure
            return
        except BotoCoreError as exc:  # the connection broke or timed out mid-stream
            yield Failure(ErrorCode.AGENT_ERROR, f"The stream from Bedrock broke ({type(exc).__name__}).", True)
            return
        finally:
            events.close()
