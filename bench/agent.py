"""The agent side of the workload: prompts that make the Bedrock emulator stream exactly N deltas,
and an emulator that records when it sent each delta.

The emulator (``devserver.bedrock``) is used unchanged: a plain prompt is answered
``You said: <prompt>`` one word per chunk, ``!slow S ...`` spreads the same chunks over S seconds
and ``!big N`` answers N characters in chunks of 1,000. ``RecordingBedrock`` only wraps each
InvokeAgent stream's plan to timestamp every ``chunk`` frame just before it is written to the
socket, so "overhead" and "lag" are measured against the agent's own clock, not guessed.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from botocore.eventstream import EventStreamBuffer

from devserver.bedrock import BedrockEmulator, big_answer, split_words

_TAG = re.compile(r"\b(bt[0-9a-f]{10})\b")
# Token-sized words (3-8 characters, like an LLM's tokens plus their space).
_VOCABULARY = (
    "the agent streams its answer token by token while the relay coalesces small deltas into "
    "frames and posts them through the management API so that clients read text early"
).split()


def new_tag() -> str:
    """A unique word that names one turn in prompts and in the emulator's recordings."""
    return "bt" + uuid.uuid4().hex[:10]


def tag_of(text: str) -> Optional[str]:
    match = _TAG.search(text or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class Prompt:
    text: str
    tag: str
    answer: str  # what the emulator answers, exactly
    deltas: int


def stream_prompt(deltas: int, tag: Optional[str] = None, slow_s: Optional[float] = None) -> Prompt:
    """A prompt the emulator answers in exactly ``deltas`` chunks (``!slow`` when ``slow_s``)."""
    tag = tag or new_tag()
    head = f"!slow {slow_s:g} " if slow_s else ""
    fixed = 2 + len(head.split())  # "You ", "said: " and the command words are chunks too
    words = [tag] + [_VOCABULARY[i % len(_VOCABULARY)] for i in range(max(deltas - fixed - 1, 0))]
    text = head + " ".join(words)
    answer = "You said: " + text
    count = len(split_words(answer))
    if count != deltas:
        raise ValueError(f"cannot make a prompt of {deltas} deltas (got {count})")
    return Prompt(text, tag, answer, deltas)


def big_prompt(chars: int, tag: Optional[str] = None) -> Prompt:
    """A prompt answered with exactly ``chars`` characters, in chunks of 1,000."""
    tag = tag or new_tag()
    return Prompt(f"!big {chars} {tag}", tag, big_answer(chars), -(-chars // 1000))


@dataclass
class AgentStream:
    """When the emulator received one InvokeAgent request and sent each of its text deltas."""

    key: str
    requested_at: float
    sent: List[Tuple[float, int]] = field(default_factory=list)  # (monotonic time, characters)
    ended_at: Optional[float] = None

    @property
    def first_at(self) -> float:
        return self.sent[0][0]

    @property
    def last_at(self) -> float:
        return self.sent[-1][0]

    @property
    def characters(self) -> int:
        return sum(n for _, n in self.sent)

    def to_json(self) -> Dict[str, Any]:
        return {"key": self.key, "requested_at": self.requested_at, "sent": self.sent, "ended_at": self.ended_at}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "AgentStream":
        return cls(data["key"], data["requested_at"], [tuple(x) for x in data["sent"]], data.get("ended_at"))


def _chunk_chars(frame: bytes) -> int:
    """Characters of text in one event-stream frame (0 for anything but a ``chunk``)."""
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    total = 0
    for message in buffer:
        if message.headers.get(":event-type") == "chunk":
            raw = json.loads(message.payload).get("bytes", "")
            total += len(base64.b64decode(raw).decode("utf-8", errors="replace"))
    return total


class RecordingBedrock(BedrockEmulator):
    """``devserver.bedrock.BedrockEmulator`` that timestamps every text delta it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recording_lock = threading.Lock()
        self._streams: Dict[str, AgentStream] = {}

    def invoke_agent(self, agent_id: str, alias_id: str, session_id: str, body: dict) -> tuple:
        requested_at = time.monotonic()
        headers, plan = super().invoke_agent(agent_id, alias_id, session_id, body)
        key = tag_of(body.get("inputText") or "") or session_id
        record = AgentStream(key, requested_at)
        with self._recording_lock:
            self._streams[key] = record
        return headers, self._recorded(plan, record)

    @staticmethod
    def _recorded(plan: Iterator[Any], record: AgentStream) -> Iterator[Any]:
        for item in plan:
            if isinstance(item, bytes):
                sent_at = time.monotonic()
                yield item  # the handler writes it to the socket before asking for the next item
                chars = _chunk_chars(item)
                if chars:
                    record.sent.append((sent_at, chars))
            else:
                yield item
        record.ended_at = time.monotonic()

    def stream(self, key: str, timeout: float = 10.0) -> AgentStream:
        """The recording of the turn named ``key`` (its tag), once its stream has ended."""
        deadline = time.monotonic() + timeout
        while True:
            with self._recording_lock:
                record = self._streams.get(key)
            if record is not None and record.ended_at is not None:
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"the agent never finished streaming turn {key}")
            time.sleep(0.005)

    def take_all(self) -> Dict[str, AgentStream]:
        """Every recording so far (forgotten here)."""
        with self._recording_lock:
            streams, self._streams = self._streams, {}
        return streams
