"""AgentCore InvokeAgentRuntime (``bedrock-agentcore``): an agent answering in Server-Sent Events.

``POST /runtimes/{agentRuntimeArn}/invocations`` with the payload ``{"prompt": ...}``; the body
is ``text/event-stream``, one ``data: "<piece>"`` (a JSON string) per chunk, with the same
scenarios as the other APIs. There is no modelled in-stream error: on ``!stream-error`` the
agent's process dies mid-answer, so the body just ends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from devserver.bedrock.errors import validation
from devserver.bedrock.scenarios import Pacing, Plan, base_answer, parse_command, timed_pieces

__all__ = ["CONTENT_TYPE", "OPERATION", "PATH", "SESSION_HEADER", "RuntimeRequest", "events", "parse_request"]

OPERATION = "InvokeAgentRuntime"
PATH = re.compile(r"^/runtimes/([^/]+)/invocations$")
SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
CONTENT_TYPE = "text/event-stream"


@dataclass(frozen=True)
class RuntimeRequest:
    """A validated InvokeAgentRuntime request."""

    runtime_arn: str
    session_id: str | None
    command: str
    arg: float | None
    text: str
    prompt: str = ""

    @property
    def throttle_key(self) -> tuple[str, ...]:
        """``!throttle-once`` refuses the first request of a runtime session."""
        return (OPERATION, self.runtime_arn, self.session_id or "")


def parse_request(runtime_arn: str, session_id: str | None, body: dict[str, Any]) -> RuntimeRequest:
    """Validate as the service does (raising ``ServiceError``) and work out the answer."""
    if session_id is not None and not 33 <= len(session_id) <= 256:
        raise validation("runtimeSessionId must be between 33 and 256 characters long")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise validation("emulator: the payload must be a JSON object with a non-empty 'prompt'")
    command, arg = parse_command(prompt)
    return RuntimeRequest(runtime_arn, session_id, command, arg, base_answer(prompt, command, arg), prompt)


def events(request: RuntimeRequest, pacing: Pacing) -> Plan:
    """One ``data:`` event per piece; after the first only, on ``!stream-error``."""
    for wait, piece in timed_pieces(request.text, request.command, request.arg, pacing):
        yield wait
        yield b"data: " + json.dumps(piece).encode("utf-8") + b"\n\n"
    if request.command != "!stream-error":  # the agent's model call ends: Strands Agents' metadata event
        usage = {"inputTokens": len(request.prompt.split()), "outputTokens": len(request.text.split())}
        metadata = {"event": {"metadata": {"usage": {**usage, "totalTokens": sum(usage.values())}}}}
        yield b"data: " + json.dumps(metadata).encode("utf-8") + b"\n\n"
