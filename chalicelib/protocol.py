"""The wire protocol: client messages in (parsed and validated), server events out.

Client messages are validated with ``ClientMessage`` from ``protocol.schema.json`` beside this file,
the JSON Schema that docs/protocol.md documents, so the contract clients read is the one the server
enforces. The schema is compiled (fastjsonschema) on first use, not at import, to keep cold starts
short; a schema violation becomes one ``invalid_request`` error with a message written for people.
Pure functions only: no I/O besides reading the schema once, so every rule is unit-tested without
mocks. Unknown fields are ignored (a client written for the original blog post still works) and
identity never comes from the body.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

# The limits the schema sets; tests/unit/test_schema.py checks that the two agree.
MAX_PROMPT_CHARS = 25_000  # InvokeAgent's inputText limit
MAX_ID_CHARS = 128
MAX_DEPTH = 32  # nesting of objects and lists in one frame (tool results are a few levels deep)
MAX_FILE_NAME_CHARS = 255  # an upload's fileName (most file systems' limit); documents.upload applies the rest
MAX_CONTENT_TYPE_CHARS = 255  # an upload's contentType (RFC 6838: 127 for the type, 127 for the subtype, "/")



class ErrorCode(StrEnum):
    """Stable error codes: clients branch on these, so they never change meaning."""

    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    THROTTLED = "throttled"
    NOT_FOUND = "not_found"
    AGENT_ERROR = "agent_error"
    GUARDRAIL = "guardrail"
    INTERRUPTED = "interrupted"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


Event = Dict[str, Any]


class ProtocolError(ValueError):
    """A client message that cannot be served; becomes one ``error`` event."""

    def __init__(
        self,
        message: str,
        code: ErrorCode = ErrorCode.INVALID_REQUEST,
        retryable: bool = False,
        request_id: Optional[str] = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.request_id = request_id  # the ask's requestId, when it had a valid one

    def event(self) -> Event:
        return error_event(self.code, self.message, self.retryable, requestId=self.request_id)


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
class UsageQuery:
    """The user's token usage and budgets, answered with a ``usage`` event."""


@dataclass(frozen=True)
class Resume:
    turn_id: str
    from_seq: int = 0  # the last seq the client has: only later events are sent again


@dataclass(frozen=True)
class Cancel:
    turn_id: str


@dataclass(frozen=True)
class ReturnControlResults:
    """The client ran the tools an agent asked for; ``results`` go back to InvokeAgent as is."""

    turn_id: str
    invocation_id: str
    results: List[Dict[str, Any]]


@dataclass(frozen=True)
class Upload:
    """A document the user wants to upload (issue #12), as the client describes it. Only its shape
    is checked here: ``documents.upload.check_upload`` applies the rules (kinds, content types, the
    size limit, a plain file name) before anything is signed."""

    file_name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class DocumentsQuery:
    """The user's documents and where each stands, answered with a ``documents`` event."""


@dataclass(frozen=True)
class DeleteDocument:
    """Delete one of the user's documents (its upload, its chunks, its place in the knowledge base)."""

    document_id: str


ClientMessage = Union[Ask, Ping, Resume, Cancel, ReturnControlResults, UsageQuery, Upload, DocumentsQuery, DeleteDocument]

MAX_RESULTS = 20
_RESULT_KINDS = ("apiResult", "functionResult")

# ---- the schema ----------------------------------------------------------------------------

SCHEMA_PATH = Path(__file__).with_name("protocol.schema.json")
_compile_lock = threading.Lock()
_validators: Dict[str, Callable[[Any], Any]] = {}


def schema() -> Dict[str, Any]:
    """The protocol's JSON Schema (draft-07): ``definitions`` names every message and event."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_for(definition: str) -> Dict[str, Any]:
    """A schema validating one of the definitions (e.g. ``ClientMessage``, ``ServerEvent``)."""
    whole = schema()
    if definition not in whole["definitions"]:
        raise KeyError(definition)
    return {"$schema": whole["$schema"], "definitions": whole["definitions"], "$ref": f"#/definitions/{definition}"}


def validator(definition: str = "ClientMessage") -> Callable[[Any], Any]:
    """The compiled validator of one definition, built on first use (fastjsonschema).

    It raises ``fastjsonschema.JsonSchemaValueException`` for the first violation it finds.
    """
    compiled = _validators.get(definition)
    if compiled is None:
        with _compile_lock:
            compiled = _validators.get(definition)
            if compiled is None:
                import fastjsonschema

                compiled = fastjsonschema.compile(schema_for(definition), use_default=False)
                _validators[definition] = compiled
    return compiled


# ---- client -> server messages -------------------------------------------------------------

_ACTIONS = '"ask", "resume", "cancel", "return_control", "usage", "ping", "upload", "documents" or "delete"'
_ID_FIELDS = ("turnId", "invocationId", "conversationId", "requestId", "documentId")


def parse_client_message(body: Optional[str], max_prompt_chars: int = MAX_PROMPT_CHARS) -> ClientMessage:
    """Parse one WebSocket text frame; raise ``ProtocolError`` with a human message if invalid.

    ``max_prompt_chars`` may only tighten the schema's limit.
    """
    if body is None or body == "":
        raise ProtocolError("The message is empty; send a JSON object such as {\"prompt\": \"Hello\"}.")
    try:
        data = json.loads(body)
    except RecursionError:
        raise ProtocolError(_TOO_DEEP) from None
    except ValueError:
        raise ProtocolError("The message is not valid JSON; send a JSON object such as {\"prompt\": \"Hello\"}.") from None
    _check_shape(data)
    if isinstance(data, dict):  # a field given as null is the same as an absent one
        data = {key: value for key, value in data.items() if value is not None}
    check = validator("ClientMessage")
    from fastjsonschema import JsonSchemaValueException  # imported with the validator: free by now

    try:
        check(data)
    except JsonSchemaValueException as exc:
        raise ProtocolError(explain(exc, data), request_id=_request_id_of(data)) from None
    action = data.get("action", "ask")
    if action == "ping":
        return Ping()
    if action == "usage":
        return UsageQuery()
    if action == "resume":
        return Resume(data["turnId"], data.get("fromSeq", 0))
    if action == "cancel":
        return Cancel(data["turnId"])
    if action == "return_control":
        return ReturnControlResults(data["turnId"], data["invocationId"], data["results"])
    if action == "upload":
        return Upload(data["fileName"], data["contentType"], data["size"])
    if action == "documents":
        return DocumentsQuery()
    if action == "delete":
        return DeleteDocument(data["documentId"])
    prompt = data["prompt"]
    if len(prompt) > max_prompt_chars:
        raise ProtocolError(_too_long(prompt, max_prompt_chars), request_id=_request_id_of(data))
    return Ask(
        prompt=prompt,
        conversation_id=data.get("conversationId"),
        request_id=data.get("requestId"),
        trace=data.get("trace", False),
    )


_TOO_DEEP = f"The message is nested too deeply (more than {MAX_DEPTH} levels of objects and lists)."
def _check_shape(data: Any) -> None:
    """Refuse what would fail later, far from here: deep nesting (recursion in every consumer) and
    unpaired surrogates (``"\\ud800"`` parses, but can be neither stored nor sent as UTF-8).
    Walks iteratively, so a hostile frame cannot exhaust the stack here either."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise ProtocolError(_TOO_DEEP)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("The message holds text that is not valid Unicode (an unpaired surrogate such as \\ud800).") from None


def explain(exc: Any, data: Any) -> str:
    """A schema violation (fastjsonschema's exception) in words a person can act on."""
    path: List[str] = list(exc.path)[1:]  # without the leading "data"
    rule = exc.rule
    if not path:
        if rule == "required":
            missing = next((name for name in exc.rule_definition if name not in data), "a field")
            return _missing(missing)
        return "The message must be a JSON object, such as {\"prompt\": \"Hello\"}."
    field = path[0]
    value = data.get(field)
    if field == "results":
        if len(path) == 1:
            return f"\"results\" must be a list of 1 to {MAX_RESULTS} tool results."
        return "Each of \"results\" must be an object with one \"functionResult\" or \"apiResult\"."
    if value is None:
        return _missing(field)
    if field == "action":
        if not isinstance(value, str):
            return "\"action\" must be a string such as \"ask\" or \"ping\"."
        return f"Unknown action {value[:40]!r}; use {_ACTIONS}."
    if field == "prompt":
        if not isinstance(value, str):
            return "\"prompt\" must be a string."
        if rule == "maxLength":
            return _too_long(value, MAX_PROMPT_CHARS)
        return "\"prompt\" is empty (or only spaces and invisible characters); ask a question."
    if field == "trace":
        return "\"trace\" must be true or false."
    if field == "fromSeq":
        return "\"fromSeq\" must be a whole number, 0 or more: the last seq of the turn you already have."
    if field in _ID_FIELDS:
        return f"\"{field}\" must be a non-empty string of at most {MAX_ID_CHARS} characters."
    if field == "fileName":
        return f"\"fileName\" must be the file's name: a string of 1 to {MAX_FILE_NAME_CHARS} characters."
    if field == "contentType":
        return (f"\"contentType\" must be the file's media type, such as \"application/pdf\" "
                f"(1 to {MAX_CONTENT_TYPE_CHARS} characters).")
    if field == "size":
        return "\"size\" must be the file's size in bytes: a whole number, 1 or more."
    # A rule added to the schema without words here: still say what and where.
    return "The message does not follow the protocol: " + exc.message.replace("data.", "", 1)


def _missing(field: str) -> str:
    if field == "prompt":
        return "\"prompt\" is missing; send the question as {\"prompt\": \"...\"}."
    return f"\"{field}\" is missing."


def _too_long(prompt: str, limit: int) -> str:
    return f"\"prompt\" is {len(prompt):,} characters long; the limit is {limit:,}."


def _request_id_of(data: Any) -> Optional[str]:
    """The ask's requestId if it is a valid one, so a client can match the error to its ask."""
    value = data.get("requestId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS else None


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


def files_event(turn_id: str, seq: int, files: List[Dict[str, Any]]) -> Event:
    return {"type": "files", "turnId": turn_id, "seq": seq, "files": files}


def done_event(turn_id: str, seq: int, session_id: str, stats: Optional[Dict[str, Any]] = None) -> Event:
    return _without_none(type="done", turnId=turn_id, seq=seq, sessionId=session_id, stats=stats)


def error_event(
    code: ErrorCode,
    message: str,
    retryable: bool,
    turn_id: Optional[str] = None,
    seq: Optional[int] = None,
    **extra: Any,
) -> Event:
    return _without_none(
        type="error", turnId=turn_id, seq=seq, code=code, message=message, retryable=retryable, **extra
    )


def progress_event(turn_id: str, elapsed_ms: int, phase: Optional[str] = None) -> Event:
    """The turn is still running (nothing was sent for a while). Not numbered, not replayed."""
    return _without_none(type="progress", turnId=turn_id, elapsedMs=elapsed_ms, phase=phase)


def pong_event() -> Event:
    return {"type": "pong"}


def usage_period(
    period: str, input_tokens: int, output_tokens: int, turns: int, budget: Optional[int], resets_in_ms: int
) -> Dict[str, Any]:
    """One period of a ``usage`` event; ``budget`` None: no limit."""
    return {
        "period": period,
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "turns": turns,
        "budget": budget,
        "resetsInMs": resets_in_ms,
    }


def usage_event(day: Dict[str, Any], month: Dict[str, Any]) -> Event:
    """The answer to ``usage``: the user's tokens and budgets this UTC day and month (``usage_period``)."""
    return {"type": "usage", "day": day, "month": month}


class DocumentStatus(StrEnum):
    """Where a document stands, in the order the pipeline moves it (issue #12); ``failed`` and
    ``deleted`` end it. Stable words: clients branch on them."""

    UPLOADED = "uploaded"
    EXTRACTED = "extracted"
    INGESTING = "ingesting"
    INDEXED = "indexed"
    ANALYSED = "analysed"
    FAILED = "failed"
    DELETED = "deleted"


def upload_event(document_id: str, url: str, fields: Dict[str, str], expires_at_ms: int) -> Event:
    """The answer to ``upload``: POST the file to ``url`` as multipart/form-data with ``fields``
    (then the file, last) before ``expiresAt`` (epoch milliseconds)."""
    return {"type": "upload", "documentId": document_id, "url": url, "fields": fields, "expiresAt": expires_at_ms}


def document_analysis(summary: str, topics: List[str]) -> Dict[str, Any]:
    """What the pipeline's analysis found in a document: a ``document`` event's ``analysis``."""
    return {"summary": summary, "topics": topics}


def document_event(
    document_id: str,
    file_name: str,
    status: DocumentStatus,
    code: Optional[str] = None,
    message: Optional[str] = None,
    analysis: Optional[Dict[str, Any]] = None,
) -> Event:
    """A document moved on (pushed to the owner's connections); ``failed`` carries ``code`` and ``message``."""
    return _without_none(
        type="document", documentId=document_id, fileName=file_name, status=status, code=code, message=message,
        analysis=analysis,
    )


def document_entry(
    document_id: str,
    file_name: str,
    status: DocumentStatus,
    updated_at_ms: int,
    code: Optional[str] = None,
    message: Optional[str] = None,
    analysis: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """One document of a ``documents`` event: where it stands since ``updatedAt`` (epoch milliseconds)."""
    return _without_none(
        documentId=document_id, fileName=file_name, status=status, updatedAt=updated_at_ms, code=code,
        message=message, analysis=analysis,
    )


def documents_event(documents: List[Dict[str, Any]]) -> Event:
    """The answer to ``documents``: the user's documents (``document_entry``)."""
    return {"type": "documents", "documents": documents}


def encode(event: Event) -> bytes:
    """Compact UTF-8 JSON, the form every frame travels in."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
