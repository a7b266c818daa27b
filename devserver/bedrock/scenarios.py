"""What the emulated agent answers, and how fast: pure functions, no I/O and no wire format.

Answers are deterministic, keyed on the prompt (InvokeAgent ``inputText``, the last user
message of ConverseStream, AgentCore's ``{"prompt": ...}``), so a test picks a behaviour by
what it asks:

=====================  ======================================================
prompt                 behaviour
=====================  ======================================================
anything else          ``You said: <prompt>``, about a word per chunk
``!slow N``            same answer, chunks spread evenly over N seconds
``!throttle``          HTTP 429 ThrottlingException on every attempt
``!throttle-once``     429 on the first request for the session, then normal
``!stream-error``      one chunk, then in-stream ``internalServerException``
``!stream-throttle``   no chunk, in-stream ``throttlingException``
``!big N``             exactly N ASCII characters, chunks of <= 1000
``!trace``             two ``trace`` events first when ``enableTrace`` is true
``!return-control``    a ``returnControl`` event, no text (InvokeAgent only)
``!files``             a ``files`` event (a small CSV) before the answer (InvokeAgent only)
``!kb WORDS``          the passages of the knowledge base's indexed chunks that contain every
                       word (case-insensitive), among those the request's knowledge base filter
                       admits, cited in ``attribution``; else ``NO_PASSAGES`` (InvokeAgent only)
=====================  ======================================================

Each API module turns these into its own frames; the shared rules live here so the three
APIs cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from devserver.bedrock.errors import ServiceError, validation

__all__ = [
    "BIG_CHUNK_CHARS", "MAX_BIG_CHARS", "NO_PASSAGES", "STREAM_ERROR", "STREAM_THROTTLE", "THROTTLE_MESSAGE",
    "Pacing", "Plan", "answer_pieces", "base_answer", "big_answer", "check_throttle",
    "parse_command", "piece_delays", "split_words", "timed_pieces",
]

BIG_CHUNK_CHARS = 1000
MAX_BIG_CHARS = 1_000_000  # PartBody max in the service model
THROTTLE_MESSAGE = "Rate exceeded (emulated). Reduce the frequency of requests."
#: In-stream errors as (modelled exception member, message).
STREAM_THROTTLE = ("throttlingException", THROTTLE_MESSAGE)
STREAM_ERROR = ("internalServerException", "Injected stream error (emulated).")
#: ``!kb``'s answer when no indexed chunk it may search contains the words.
NO_PASSAGES = "No passages in the knowledge base match."

_COMMAND = re.compile(r"^(![a-z-]+)(?:\s+(\d+(?:\.\d+)?))?")
_PAD = "lorem ipsum dolor sit amet consectetur adipiscing elit "

#: A response body as the server sends it: a float waits that many seconds, bytes are one
#: frame (one HTTP chunk). A generator, so each frame is made only when it is due.
Plan = Iterator[float | bytes]


@dataclass(frozen=True)
class Pacing:
    """How fast the emulated model answers: wait before the first chunk, then between chunks."""

    first_token_delay: float
    chunk_delay: float


def parse_command(prompt: str) -> tuple[str, float | None]:
    """Split ``!command N`` off a prompt; ("", None) for a plain prompt."""
    match = _COMMAND.match(prompt)
    if not match:
        return "", None
    arg = match.group(2)
    return match.group(1), (float(arg) if arg is not None else None)


def split_words(text: str) -> list[str]:
    """About a word per piece, keeping whitespace, so pieces join back exactly."""
    return re.findall(r"\s*\S+\s*", text) or [text]


def big_answer(size: int) -> str:
    """Exactly ``size`` ASCII characters starting ``You said: ``."""
    head = "You said: "
    body = _PAD * (max(size - len(head), 0) // len(_PAD) + 1)
    return (head + body)[:size]


def base_answer(prompt: str, command: str, arg: float | None) -> str:
    """The answer's text before any API-specific suffix; ``!big`` over the limit is refused."""
    if command == "!big":
        size = int(arg or 0)
        if size > MAX_BIG_CHARS:
            raise validation(f"emulator: !big is limited to {MAX_BIG_CHARS} characters")
        return big_answer(size)
    return "You said: " + prompt


def answer_pieces(text: str, command: str) -> list[str]:
    """How an answer is cut into chunks when streamed."""
    if command == "!big":
        return [text[i : i + BIG_CHUNK_CHARS] for i in range(0, len(text), BIG_CHUNK_CHARS)] or [""]
    return split_words(text)


def piece_delays(count: int, command: str, arg: float | None, first: float, step: float) -> list[float]:
    """Wait before each chunk: ``!slow N`` spreads them over N seconds."""
    if command == "!slow" and arg is not None:
        step = arg / count
        first += step
    return [first] + [step] * (count - 1)


def timed_pieces(text: str, command: str, arg: float | None, pacing: Pacing) -> list[tuple[float, str]]:
    """(wait, piece) for each chunk; ``!stream-error`` keeps only the first, as the stream breaks after it."""
    pieces = answer_pieces(text, command)
    delays = piece_delays(len(pieces), command, arg, pacing.first_token_delay, pacing.chunk_delay)
    timed = list(zip(delays, pieces, strict=True))
    return timed[:1] if command == "!stream-error" else timed


def check_throttle(command: str, first_time: Callable[[], bool]) -> None:
    """Refuse ``!throttle`` always and ``!throttle-once`` when ``first_time()`` says its key is new.

    ``first_time`` is called only for ``!throttle-once``, as it records the key it is asked about.
    """
    if command == "!throttle" or (command == "!throttle-once" and first_time()):
        raise ServiceError(429, "ThrottlingException", THROTTLE_MESSAGE)
