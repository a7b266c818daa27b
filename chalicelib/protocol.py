"""The wire protocol: client messages in (parsed and validated), server events out.

Pure functions only: no I/O, so every rule is unit-tested without mocks. Unknown fields are
ignored (a client written for the original blog post still works) and identity never comes from
the body.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

MAX_PROMPT_CHARS = 25_000  # InvokeAgent's inputText limit
MAX_ID_CHARS = 128

# Stable error codes: clients branch on these, so they never change meaning.
INVALID_REQUEST = "invalid_request"
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
THROTTLED = "throttled"
NOT_FOUND = "not_found"
AGENT_ERROR = "agent_error"
INTERRUPTED = "interrupted"
CANCELLED = "cancelled"
INTERNAL = "internal"

Event = Dict[str, Any]


class ProtocolError(ValueError):
    """A client message that cannot be served; becomes one ``error`` event."""

    def __init__(self, message: str, code: str = INVALID_REQUEST, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable

    def event(self) -> Event:
        return error_event(self.code, self.message, self.retryable)


@dataclass(frozen=True)
class Ask:
    prompt: str
    conversation_id: Optional[str] = None
    request_id: Optional[str] = None
    trace: bool = False


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Resume:
    turn_id: str


@dataclass(frozen=True)
class Cancel:
    turn_id: str


@dataclass(frozen=True)
class ReturnControlResults:
    """The client ran the tools an agent asked for; ``results`` go back to InvokeAgent as is."""

    turn_id: str
    invocation_id: str
    results: List[Dict[str, Any]]


ClientMessage = Union[Ask, Ping, Resume, Cancel, ReturnControlResults]

MAX_RESULTS = 20
_RESULT_KINDS = ("apiResult", "functionResult")


def parse_client_message(body: Optional[str], max_prompt_chars: int = MAX_PROMPT_CHARS) -> ClientMessage:
    """Parse one WebSocket text frame; raise ``ProtocolError`` with a human message if invalid."""
    if body is None or body == "":
        raise ProtocolError("The message is empty; send a JSON object such as {\"prompt\": \"Hello\"}.")
    try:
        data = json.loads(body)
    except ValueError:
        raise ProtocolError("The message is not valid JSON; send a JSON object such as {\"prompt\": \"Hello\"}.")
    if not isinstance(data, dict):
        raise ProtocolError("The message must be a JSON object, such as {\"prompt\": \"Hello\"}.")
    action = data.get("action", "ask")
    if action == "ask":
        return _parse_ask(data, max_prompt_chars)
    if action == "ping":
        return Ping()
    if action == "resume":
        return Resume(_required_id(data, "turnId"))
    if action == "cancel":
        return Cancel(_required_id(data, "turnId"))
    if action == "return_control":
        return _parse_return_control(data)
    if not isinstance(action, str):
        raise ProtocolError("\"action\" must be a string such as \"ask\" or \"ping\".")
    raise ProtocolError(
        f"Unknown action {action[:40]!r}; use \"ask\", \"resume\", \"cancel\", \"return_control\" or \"ping\"."
    )


def _parse_ask(data: Dict[str, Any], max_prompt_chars: int) -> Ask:
    prompt = data.get("prompt")
    if prompt is None:
        raise ProtocolError("\"prompt\" is missing; send the question as {\"prompt\": \"...\"}.")
    if not isinstance(prompt, str):
        raise ProtocolError("\"prompt\" must be a string.")
    if not prompt.strip():
        raise ProtocolError("\"prompt\" is empty; ask a question.")
    if len(prompt) > max_prompt_chars:
        raise ProtocolError(
            f"\"prompt\" is {len(prompt):,} characters long; the limit is {max_prompt_chars:,}."
        )
    trace = data.get("trace", False)
    if not isinstance(trace, bool):
        raise ProtocolError("\"trace\" must be true or false.")
    return Ask(
        prompt=prompt,
        conversation_id=_optional_id(data, "conversationId"),
        request_id=_optional_id(data, "requestId"),
        trace=trace,
    )


def _parse_return_control(data: Dict[str, Any]) -> ReturnControlResults:
    results = data.get("results")
    if not isinstance(results, list) or not results or len(results) > MAX_RESULTS:
        raise ProtocolError(f"\"results\" must be a list of 1 to {MAX_RESULTS} tool results.")
    for result in results:
        if not isinstance(result, dict) or len([k for k in _RESULT_KINDS if isinstance(result.get(k), dict)]) != 1:
            raise ProtocolError("Each of \"results\" must be an object with one \"functionResult\" or \"apiResult\".")
    return ReturnControlResults(_required_id(data, "turnId"), _required_id(data, "invocationId"), results)


def _required_id(data: Dict[str, Any], name: str) -> str:
    value = _optional_id(data, name)
    if value is None:
        raise ProtocolError(f"\"{name}\" is missing.")
    return value


def _optional_id(data: Dict[str, Any], name: str) -> Optional[str]:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise ProtocolError(f"\"{name}\" must be a non-empty string of at most {MAX_ID_CHARS} characters.")
    return value


# ---- server -> client events -------------------------------------------------------------

def _without_none(**fields: Any) -> Event:
    return {key: value for key, value in fields.items() if value is not None}


def accepted_event(turn_id: str, request_id: Optional[str] = None) -> Event:
    return _without_none(type="accepted", turnId=turn_id, requestId=request_id)


def chunk_event(turn_id: str, seq: int, text: str) -> Event:
    return {"type": "chunk", "turnId": turn_id, "seq": seq, "text": text}


def trace_event(turn_id: str, seq: int, trace: Any) -> Event:
    return {"type": "trace", "turnId": turn_id, "seq": seq, "trace": trace}


def return_control_event(turn_id: str, seq: int, invocation_id: str, inputs: List[Dict[str, Any]]) -> Event:
    return {"type": "return_control", "turnId": turn_id, "seq": seq, "invocationId": invocation_id, "inputs": inputs}


def done_event(turn_id: str, seq: int, session_id: str, stats: Optional[Dict[str, Any]] = None) -> Event:
    return _without_none(type="done", turnId=turn_id, seq=seq, sessionId=session_id, stats=stats)


def error_event(
    code: str,
    message: str,
    retryable: bool,
    turn_id: Optional[str] = None,
    seq: Optional[int] = None,
    **extra: Any,
) -> Event:
    return _without_none(
        type="error", turnId=turn_id, seq=seq, code=code, message=message, retryable=retryable, **extra
    )


def pong_event() -> Event:
    return {"type": "pong"}


def encode(event: Event) -> bytes:
    """Compact UTF-8 JSON, the form every frame travels in."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
