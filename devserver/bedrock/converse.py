"""ConverseStream (``bedrock-runtime``): validation and the ``stream`` of model events.

``POST /model/{modelId}/converse-stream``. The answer gets `` (turn N)`` appended (N = user
messages in the history) so a test sees the history arrive; with no session, ``!throttle-once``
is keyed on (modelId, prompt, N).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from devserver.bedrock.errors import validation
from devserver.bedrock.eventstream import event, exception
from devserver.bedrock.scenarios import STREAM_ERROR, STREAM_THROTTLE, Pacing, Plan, base_answer, parse_command, timed_pieces

__all__ = ["DECODED_PATH", "OPERATION", "PATH", "URI_LABELS", "ConverseRequest", "parse_request", "stream"]

OPERATION = "ConverseStream"
#: The request path, the model id still percent-encoded.
PATH = re.compile(r"^/model/([^/]+)/converse-stream$")
#: The same once percent-decoded: model ARNs hold '/'.
DECODED_PATH = re.compile(r"^/model/(.+)/converse-stream$")
URI_LABELS = ("modelId",)


@dataclass(frozen=True)
class ConverseRequest:
    """A validated ConverseStream request: what to answer and the usage to report."""

    model_id: str
    prompt: str
    turn: int  # user messages in the history, this one included
    command: str
    arg: float | None
    text: str
    tokens_in: int

    @property
    def throttle_key(self) -> tuple[str, ...]:
        """No session here: ``!throttle-once`` refuses the first try of one model, prompt and turn."""
        return (OPERATION, self.model_id, self.prompt, str(self.turn))


def parse_request(model_id: str, body: dict[str, Any]) -> ConverseRequest:
    """Validate as the service does (raising ``ServiceError``) and work out the answer."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise validation("messages must be a non-empty list")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise validation("A conversation must start with a user message.")
    prompt = "".join(
        block.get("text", "") for block in users[-1].get("content") or [] if isinstance(block, dict)
    )
    command, arg = parse_command(prompt)
    text = base_answer(prompt, command, arg) + f" (turn {len(users)})"
    words_in = sum(len(json.dumps(m).split()) for m in messages) + len(json.dumps(body.get("system") or []).split())
    return ConverseRequest(model_id, prompt, len(users), command, arg, text, words_in)


def stream(request: ConverseRequest, pacing: Pacing) -> Plan:
    """messageStart, one contentBlockDelta per piece, contentBlockStop, messageStop, metadata."""
    started = time.monotonic()
    command = request.command
    if command == "!stream-throttle":
        yield pacing.first_token_delay
        yield exception(*STREAM_THROTTLE)
        return
    yield event("messageStart", {"role": "assistant"})
    for wait, piece in timed_pieces(request.text, command, request.arg, pacing):
        yield wait
        yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
    if command == "!stream-error":
        yield pacing.chunk_delay
        yield exception(*STREAM_ERROR)
        return
    tokens_in, tokens_out = request.tokens_in, len(request.text.split())
    yield event("contentBlockStop", {"contentBlockIndex": 0})
    yield event("messageStop", {"stopReason": "end_turn"})
    yield event("metadata", {
        "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalTokens": tokens_in + tokens_out},
        "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
    })
