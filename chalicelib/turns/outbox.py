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

A turn's numbering is fixed once an event is taken: a resume gets the same events again, with the
same seqs (from 1, or after the ``fromSeq`` the client already has), and the turn goes on
numbering after them. What was taken is kept as frames, and persisted as the text's seq ends, so
a finished turn read back by $default is numbered exactly as it was streamed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from chalicelib.protocol import Event, chunk_event, encode

EventBuilder = Callable[[int], Event]  # given its seq, builds the event
SeqEnds = List[Optional[int]]  # per seq: the answer's length after that chunk; None for another event
MAX_KEPT_EXTRAS_BYTES = 64 * 1024  # non-text events kept for replays (the turn record holds 400 KB)


@dataclass(frozen=True)
class Frame:
    """One event as it was taken: a chunk ends the answer at ``end``; other events have no text."""

    seq: int
    end: Optional[int]
    event: Event


def encode_ends(ends: Sequence[Optional[int]]) -> str:
    """Seq ends as stored: compact, a few bytes a frame ("-" for an event without text)."""
    return ",".join("-" if end is None else str(end) for end in ends)


def decode_ends(stored: str) -> SeqEnds:
    return [None if part == "-" else int(part) for part in stored.split(",")] if stored else []


def kept_for_replay(event: Event) -> Event:
    """A non-text event as a replay re-sends it: a file without its content (sent once, live)."""
    if event.get("type") == "files":
        files = [
            {key: value for key, value in f.items() if key != "content"} | {"note": "Sent once, when the answer streamed."}
            for f in event.get("files", [])
        ]
        return {**event, "files": files}
    return event

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
        self._frames: List[Frame] = []  # everything numbered so far, for a replay after a resume
        self._chars = 0  # answer characters numbered so far
        self._again: List[Event] = []  # to post first: an unnumbered preamble, then frames again
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
        return not self._items and not self._again

    def wait(self, now: float) -> Optional[float]:
        """Seconds until ``take`` has something to post: 0 for now, None when nothing is pending."""
        if self._again:
            return 0.0
        if not self._items:
            return None
        if self._has_event or self._force or self._last_post is None or self._pending_chars >= self._text_budget:
            return 0.0
        return max(0.0, self._last_post + self._interval - now)

    def take(self, now: float) -> List[Event]:
        """The events to post now, numbered; empty if it is not yet time."""
        if self.wait(now) != 0.0:
            return []
        events, self._again = self._again, []
        terminal_here = self.terminal_queued and not self.terminal_taken
        for item in self._items:
            if isinstance(item, list):
                for piece in split_text("".join(item), self._text_budget):
                    self.seq += 1
                    self.chunks += 1
                    self._chars += len(piece)
                    if self.first_chunk_at is None:
                        self.first_chunk_at = now
                    event = chunk_event(self._turn_id, self.seq, piece)
                    self._frames.append(Frame(self.seq, self._chars, event))
                    events.append(event)
            else:
                self.seq += 1
                event = self._fit(item(self.seq))
                self._frames.append(Frame(self.seq, None, event))
                events.append(event)
        if terminal_here:
            self._frames.pop()  # the terminal event is not part of what a resume replays
        self.terminal_taken = self.terminal_queued
        self._items = []
        self._pending_chars = 0
        self._has_event = self._force = False
        self._last_post = now
        return events

    def add_aside(self, event: Event) -> None:
        """An event outside the numbering (``progress``), posted as soon as the relay is free."""
        if not self.closed:
            self._again.append(event)

    def rewind(self, from_seq: int = 0, preamble: Optional[Event] = None) -> None:
        """For a resume: ``preamble`` (its ``accepted``), then every event after ``from_seq`` again,
        as it was first numbered; the turn goes on from there. What was taken but is only now
        being replaced was never posted to this client, or is posted again here."""
        self._again = ([preamble] if preamble else []) + [f.event for f in self._frames if f.seq > from_seq]
        self._last_post = None

    def restore(self, text: str, ends: Sequence[Optional[int]], extras: Mapping[str, Event]) -> None:
        """Continue a turn another run numbered: its frames as persisted, then this run's events.

        Text beyond the persisted ends (saved, never numbered) is numbered as new text."""
        frames = replay_frames(self._turn_id, text, ends, extras)
        self._frames = frames
        self.seq = len(frames)
        self._chars = max((f.end for f in frames if f.end is not None), default=0)
        self.add_text(text[self._chars:])

    @property
    def ends(self) -> SeqEnds:
        """What is persisted of the numbering: each numbered event's end in the answer."""
        return [frame.end for frame in self._frames]

    def extras(self) -> Dict[str, Event]:
        """The numbered events that are not text, as a replay re-sends them (bounded in size)."""
        kept: Dict[str, Event] = {}
        budget = MAX_KEPT_EXTRAS_BYTES
        for frame in self._frames:
            if frame.end is None:
                event = kept_for_replay(frame.event)
                budget -= len(encode(event))
                kept[str(frame.seq)] = event if budget >= 0 else _omitted(event)
        return kept

    def _fit(self, event: Event) -> Event:
        """Non-text events cannot be split; an oversized trace is replaced by a note."""
        size = len(encode(event))
        if size <= self._max_frame_bytes or "trace" not in event:
            return event
        return {**event, "trace": {"truncated": True, "bytes": size}}


def _omitted(event: Event) -> Event:
    if event.get("type") == "trace":
        return {**event, "trace": {"truncated": True, "bytes": len(encode(event))}}
    if event.get("type") == "files":
        return {**event, "files": [{"name": "", "type": "", "size": 0, "note": "Not kept for replays."}]}
    return event


def replay_frames(turn_id: str, text: str, ends: Sequence[Optional[int]], extras: Mapping[str, Event]) -> List[Frame]:
    """The frames a turn was streamed in, rebuilt from its persisted text, seq ends and extras."""
    frames: List[Frame] = []
    start = 0
    for seq, end in enumerate(ends, start=1):
        if end is None:
            kept = extras.get(str(seq)) or {"type": "trace", "turnId": turn_id, "trace": {"truncated": True, "bytes": 0}}
            frames.append(Frame(seq, None, {**kept, "seq": seq}))
        elif end > start:
            frames.append(Frame(seq, end, chunk_event(turn_id, seq, text[start:end])))
            start = end
    return frames


def replay(
    turn_id: str,
    text: str,
    build_last: EventBuilder,
    max_frame_bytes: int,
    ends: Sequence[Optional[int]] = (),
    extras: Optional[Mapping[str, Any]] = None,
    from_seq: int = 0,
) -> List[Event]:
    """A turn's events again, numbered as they were streamed: those after ``from_seq``, then its end.

    Text persisted beyond the numbered frames (a turn whose worker died) follows in as few frames
    as fit; a turn recorded before seq ends were kept is replayed that way whole.
    """
    box = Outbox(turn_id, 0.0, max_frame_bytes)
    box.restore(text, ends, extras or {})
    box.close(build_last)
    box.rewind(from_seq)
    return [event for event in box.take(0.0) if event["seq"] > from_seq]
