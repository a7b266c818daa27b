"""Agents hosted on Amazon Bedrock AgentCore Runtime (InvokeAgentRuntime).

The runtime's response is whatever the agent's code streams: Server-Sent Events
(``text/event-stream``, one ``data:`` line per piece) or a plain body. Each piece becomes text.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, List, Optional

from chalicelib.backends import Events, End, TextDelta, TurnRequest, add_usage, guarded

_TEXT_KEYS = ("text", "delta", "data", "content", "output", "result", "response")


def runtime_session_id(session_id: str) -> str:
    """AgentCore wants 33 to 256 characters; the derived session id is padded to fit."""
    return session_id if len(session_id) >= 33 else (session_id + "-" + "0" * 33)[:33]


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """The ``data`` of each Server-Sent Event, as soon as its blank line arrives.

    Takes raw byte chunks, not lines: a line splitter that waits for the next line would hold
    every event back until the one after it starts.
    """
    buffer = b""
    data: List[str] = []
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def usage_of(data: str) -> Optional[Dict[str, int]]:
    """Token counts, if this piece reports them instead of text.

    A runtime's stream is its own code's; agentstream reads the two shapes agents commonly send:
    ``{"usage": {...}}`` and Strands Agents' ``{"event": {"metadata": {"usage": {...}}}}`` (the
    ConverseStream metadata). A runtime that sends neither has no ``usage`` in ``done``.
    """
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    event = value.get("event")
    usage = value.get("usage") or (((event or {}).get("metadata") or {}).get("usage") if isinstance(event, dict) else None)
    if not isinstance(usage, dict) or not {"inputTokens", "outputTokens"} & set(usage):
        return None
    return {"inputTokens": int(usage.get("inputTokens") or 0), "outputTokens": int(usage.get("outputTokens") or 0)}


def text_of(data: str) -> str:
    """A piece's text: a JSON string, a JSON object's text field, or the raw data itself."""
    try:
        value = json.loads(data)
    except ValueError:
        return data
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in _TEXT_KEYS:
            if isinstance(value.get(key), str):
                return value[key]
    return data


class AgentCoreBackend:
    def __init__(self, client: Any, runtime_arn: str, qualifier: str = "") -> None:
        self._client = client
        self._runtime_arn = runtime_arn
        self._qualifier = qualifier

    def _params(self, request: TurnRequest) -> Dict[str, Any]:
        params: Dict[str, Any] = {
            "agentRuntimeArn": self._runtime_arn,
            "runtimeSessionId": runtime_session_id(request.session_id),
            "payload": json.dumps(self._payload(request)).encode("utf-8"),
            "contentType": "application/json",
            "accept": "text/event-stream, application/json",
        }
        if self._qualifier:
            params["qualifier"] = self._qualifier
        return params

    @staticmethod
    def _payload(request: TurnRequest) -> Dict[str, Any]:
        """The prompt, and the verified asker: the runtime filters its retrievals on ``userId``
        (each document chunk's ``owner``, docs/documents.md)."""
        payload: Dict[str, Any] = {"prompt": request.prompt}
        if request.user_id:
            payload["userId"] = request.user_id
        return payload

    def stream(self, request: TurnRequest) -> Events:
        return guarded(
            lambda: self._client.invoke_agent_runtime(**self._params(request)), lambda r: self._read(r, request)
        )

    def _read(self, response: Dict[str, Any], request: TurnRequest) -> Events:
        body = response["response"]
        usage: Optional[Dict[str, int]] = None
        try:
            if "text/event-stream" in (response.get("contentType") or ""):
                # One byte at a time: a larger read blocks until it is full, holding an event back.
                for data in sse_data(body.iter_chunks(chunk_size=1)):
                    reported = usage_of(data)
                    if reported is not None:
                        usage = add_usage(usage, reported)
                        continue
                    text = text_of(data)
                    if text:
                        yield TextDelta(text)
            else:
                text = text_of(body.read().decode("utf-8", "replace"))
                if text:
                    yield TextDelta(text)
        finally:
            body.close()
        yield End(session_id=request.session_id, usage=usage)
