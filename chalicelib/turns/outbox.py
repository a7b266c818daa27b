"""Coalescing, sequencing and frame splitting: the relay's pure logic.

An agent streams many tiny deltas; API Gateway bills per message (in 32 KB units) and a client
reads faster from fewer, larger frames. The ``Outbox`` decides *what* to post and *when*, with the
clock passed in so every rule is testable without threads or sleeps:

- the first text goes out at once (time to first token is what users feel);
- after that, pending text is posted at most once per ``interval`` unless a whole frame's worth
  is waiting, and the relay only asks while no post is in flight, so text that arrives during a
  slow post is sent together as soon as that post finishes;
- any non-text event (trace, terminal) flushes the text before it, keeping order;
- every posted event gets the turn's next ``seq``; no frame exceeds ``max_frame_bytes``.
"""
from __future__ import annotations

import json
from typing import Callable, List, Optional, Union

from chalicelib.protocol import Event, chunk_event, encode

EventBuilder = Callable[[int], Event]  # given its seq, builds the event

_ASCII_COST = [len(json.dumps(chr(code))) - 2 for code in range(128)]


def escaped_size(char: str) -> int:
    """Bytes one character takes inside a compact UTF-8 JSON string."""
    code = ord(char)
    if code < 128:
        return _ASCII_COST[code]
    return len(char.encode("utf-8", "surrogatepass"))


def split_text(text: str, budget: int) -> List[str]:
    """Split text into pieces whose JSON-escaped UTF-8 size is at most ``budget`` bytes."""
    if len(text) * 6 <= budget:  # no character escapes to more than 6 bytes
        return [text]
    pieces: List[str] = []
    start = size = 0
    for index, char in enumerate(text):
        cost = escaped_size(char)
        if size + cost > budget:
            pieces.append(text[start:index])
            start, size = index, 0
        size += cost
    pieces.append(text[start:])
    return pieces


class Outbox:
    """Events waiting to be posted for one turn, in order."""

    def __init__(self, turn_id: str, interval_s: float, max_frame_bytes: int) -> None:
        self._turn_id = turn_id
        self._interval = interval_s
        self._max_frame_bytes = max_frame_bytes
        self._text_budget = max_frame_bytes - len(encode(chunk_event(turn_id, 10**9, "")))
        self._items: List[Union[List[str], EventBuilder]] = []
        self._taken: List[str] = []  # text already numbered, for a replay after a resume
        self._pending_chars = 0
        self._has_event = False
        self._force = False
        self._last_post: Optional[float] = None
        self.seq = 0
        self.chunks = 0
        self.first_chunk_at: Optional[float] = None
        self.closed = False  # nothing more will be added
        self.terminal_queued = False
        self.terminal_taken = False

    def add_text(self, text: str) -> None:
        if not text or self.closed:
            return
        if self._items and isinstance(self._items[-1], list):
            self._items[-1].append(text)
        else:
            self._items.append([text])
        self._pending_chars += len(text)

    def add_event(self, build: EventBuilder) -> None:
        if self.closed:
            return
        self._items.append(build)
        self._has_event = True

    def seal(self) -> None:
        """Take nothing more, with no terminal event (the turn was abandoned or its reader failed)."""
        self.closed = True

    def flush(self) -> None:
        """Let the next ``take`` have all pending text now, interval or not."""
        self._force = True

    def close(self, build_terminal: EventBuilder) -> None:
        """Queue the turn's terminal event; nothing may be added after it."""
        self.add_event(build_terminal)
        self.closed = self.terminal_queued = True

    @property
    def empty(self) -> bool:
        return not self._items

    def wait(self, now: float) -> Optional[float]:
        """Seconds until ``take`` has something to post: 0 for now, None when nothing is pending."""
        if not self._items:
            return None
        if self._has_event or self._force or self._last_post is None or self._pending_chars >= self._text_budget:
            return 0.0
        return max(0.0, self._last_post + self._interval - now)

    def take(self, now: float) -> List[Event]:
        """The events to post now, numbered; empty if it is not yet time."""
        if self.wait(now) != 0.0:
            return []
        events: List[Event] = []
        for item in self._items:
            if isinstance(item, list):
                text = "".join(item)
                self._taken.append(text)
                for piece in split_text(text, self._text_budget):
                    self.seq += 1
                    self.chunks += 1
                    if self.first_chunk_at is None:
                        self.first_chunk_at = now
                    events.append(chunk_event(self._turn_id, self.seq, piece))
            else:
                self.seq += 1
                events.append(self._fit(item(self.seq)))
        self.terminal_taken = self.terminal_queued
        self._items = []
        self._pending_chars = 0
        self._has_event = self._force = False
        self._last_post = now
        return events

    def rewind(self) -> None:
        """Start over for a new connection: the text so far goes out again from seq 1.

        Non-text events already posted (traces) are not repeated; the answer is.
        """
        taken = "".join(self._taken)
        self._taken = []
        if taken:
            if self._items and isinstance(self._items[0], list):
                self._items[0].insert(0, taken)
            else:
                self._items.insert(0, [taken])
            self._pending_chars += len(taken)
        self.seq = 0
        self.chunks = 0
        self._last_post = None

    def _fit(self, event: Event) -> Event:
        """Non-text events cannot be split; an oversized trace is replaced by a note."""
        size = len(encode(event))
        if size <= self._max_frame_bytes or "trace" not in event:
            return event
        return {**event, "trace": {"truncated": True, "bytes": size}}


def replay(turn_id: str, text: str, build_terminal: EventBuilder, max_frame_bytes: int) -> List[Event]:
    """A finished turn's events again from seq 1: its answer in as few frames as fit, then its end."""
    box = Outbox(turn_id, 0.0, max_frame_bytes)
    box.add_text(text)
    box.close(build_terminal)
    return box.take(0.0)
