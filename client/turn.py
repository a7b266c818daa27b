"""One turn seen through to its terminal event, across reconnects, without printing anything.

The server numbers a turn's events (``seq``) once and for all: a replay sends them again with the
seqs they were first sent with. After an ask's or tool results' ``accepted`` they come from seq 1
(the whole answer so far); after a resume's, only those after the resume's ``fromSeq``, the last
seq the turn already has, so the text so far stands and the rest is appended. The turn drops
duplicates and other turns' events, reconnects and resumes on a drop or a gap, sends cancel and
tool results, and keeps a long turn's connection open. ``progress`` events (unnumbered) say a
silent turn is still running; ``superseded`` ends the turn here because it went on elsewhere.
What happens is told to a ``TurnListener`` (client.render.TurnPrinter for a terminal; a test or
benchmark can record it).
"""
from __future__ import annotations

import re
import time
import uuid
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Protocol

from client.connection import Dropped
from client.exit_codes import OK, TURN_FAILED

RECV_POLL_S = 0.5  # recv waits this long at a time, so Ctrl-C and deadlines are noticed
KEEPALIVE_S = 240  # API Gateway closes a connection after 10 minutes without client frames
GATEWAY_INTERNAL_ERROR = "Internal server error"
# A character the server counts as visible (chalicelib/protocol.schema.json, AskMessage.prompt):
# a question of only whitespace and zero-width or control characters is refused.
VISIBLE = re.compile(
    r"[^\s\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8]"
)

Event = Dict[str, Any]
RunTools = Callable[[Event], Optional[List[Any]]]  # a return_control's results, or None: cancel


class Notice(Enum):
    """Something worth telling the person that is not one of the turn's events."""

    CANCELLING = "cancelling"  # the first Ctrl-C: a cancel is on its way
    GATEWAY = "gateway"  # API Gateway's own message (no ``type``), passed on with its event
    FRAMES_LOST = "frames_lost"  # a gap in seq: reconnecting to get the answer again
    CANNOT_RUN_TOOLS = "cannot_run_tools"  # return_control that nobody here can answer: cancelling
    SIGNED_OUT = "signed_out"  # the connection's sign-in expired: reconnecting, once
    OTHER_ERROR = "other_error"  # an error without a turnId that does not end this turn
    RESUME_DELAYED = "resume_delayed"  # the resume was refused as too many messages: sent again later


class TurnListener(Protocol):
    """What a turn reports, in order."""

    def restart(self) -> None:
        """The turn's events start again from seq 1 (after an ``accepted`` that keeps nothing)."""

    def handle(self, event: Event) -> None:
        """One of this turn's events; ``done`` or ``error`` is the last."""

    def notice(self, notice: Notice, event: Optional[Event] = None) -> None:
        """Anything else worth telling; ``event`` is the frame behind GATEWAY, OTHER_ERROR and
        RESUME_DELAYED."""


class Link(Protocol):
    """What a turn needs of its connection (client.connection.Connection, or a fake in tests)."""

    def send(self, message: Event) -> None: ...

    def recv(self, timeout: float) -> Optional[Event]: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class Follower:
    """What follows a server-side job over a connection that may drop: a frame sent either gets
    there or makes the follower reconnect (``_reconnect``, which catches up), or is let go because
    the next receive will notice the drop."""

    conn: Link

    def _reconnect(self) -> None:
        raise NotImplementedError

    def _send_or_reconnect(self, message: Event) -> None:
        try:
            self.conn.send(message)
        except Dropped:
            self._reconnect()

    def _send_quietly(self, message: Event) -> None:
        try:
            self.conn.send(message)
        except Dropped:
            pass  # the next receive notices; the reconnect catches up (a turn resumes, an upload lists)


def no_tools(event: Event) -> None:
    """The RunTools of a client that cannot run the agent's tools: the turn is cancelled."""
    return None


def outcome(event: Event) -> Optional[int]:
    """The exit code a terminal event ends its turn with; None for any other event."""
    kind = event.get("type")
    if kind == "done":
        return OK
    if kind == "error":
        return TURN_FAILED
    return None


def visible(prompt: str) -> bool:
    """Whether a question has a character the server counts as visible (else it is refused)."""
    return VISIBLE.search(prompt) is not None


def superseded(event: Event) -> bool:
    """The turn went on in another client of the same user (it resumed there): terminal here."""
    return event.get("type") == "error" and event.get("code") == "superseded"


def ask_message(prompt: str, conversation: Optional[str], trace: bool) -> Event:
    """An ask with a fresh requestId, which lets a resent ask be recognised, never run twice."""
    message: Event = {"action": "ask", "prompt": prompt, "requestId": uuid.uuid4().hex}
    if conversation:
        message["conversationId"] = conversation
    if trace:
        message["trace"] = True
    return message


class Turn(Follower):
    """Ask once and see the turn through to its terminal event, across reconnects."""

    def __init__(self, conn: Link, listener: TurnListener, message: Event, run_tools: RunTools = no_tools) -> None:
        self.conn = conn
        self.listener = listener
        self.message = message
        self.run_tools = run_tools  # answers a return_control event, or None: the turn is cancelled
        self.tools_answered = False
        self.request_id = message["requestId"]
        self.turn_id: Optional[str] = None
        self.last_seq = 0  # the last seq applied: a resume asks for the events after it
        self.resuming = False
        self.resume_from = 0  # the fromSeq of the resume in flight
        self.resume_again_at: Optional[float] = None  # a refused resume is sent again then
        self.cancel_requested = False
        self.reauthenticated = False
        self.result: Optional[int] = None  # set by the terminal event

    def run(self, interrupts: Callable[[], int] = lambda: 0) -> int:
        """Ask, then read until the turn ends; returns OK or TURN_FAILED (Lost, Refused raise).

        ``interrupts`` counts Ctrl-C so far: the first cancels the turn, the second gives up
        (KeyboardInterrupt) without waiting for the server.
        """
        self._send_or_reconnect(self.message)
        last_ping = time.monotonic()
        while self.result is None:
            pressed = interrupts()
            if pressed > 1:
                raise KeyboardInterrupt
            if pressed and not self.cancel_requested:
                self.listener.notice(Notice.CANCELLING)
                self.cancel()
            if time.monotonic() - last_ping > KEEPALIVE_S:  # a long turn: keep the connection open
                self._send_quietly({"action": "ping"})
                last_ping = time.monotonic()
            try:
                event = self.conn.recv(self._resume_if_due())
            except Dropped:
                self._reconnect()
                continue
            if event is not None:
                self._handle(event)
        return self.result

    def cancel(self) -> None:
        """Ask the server to stop the turn; its ``cancelled`` error ends it."""
        self.cancel_requested = True
        if self.turn_id is not None and not self.resuming:
            self._send_quietly({"action": "cancel", "turnId": self.turn_id})

    def _deliver(self, event: Event) -> None:
        self.listener.handle(event)
        if self.result is None:
            self.result = outcome(event)

    def _reconnect(self) -> None:
        self.conn.reopen()  # raises Lost or Refused when it cannot
        if self.turn_id is not None:
            self._resume()
        else:
            self._send_or_reconnect(self.message)  # the same requestId: never a second turn

    def _resume_if_due(self) -> float:
        """Send a resume the server refused for now again once it is due; returns how long the
        next recv may wait."""
        if self.resume_again_at is None:
            return RECV_POLL_S
        left = self.resume_again_at - time.monotonic()
        if left > 0:
            return min(RECV_POLL_S, left)
        self.resume_again_at = None
        if self.resuming:
            self._resume()
        return RECV_POLL_S

    def _resume(self) -> None:
        """Ask for the turn's events after the last one applied; what they added so far stands."""
        self.resuming = True
        self.resume_again_at = None
        self.resume_from = self.last_seq
        self._send_or_reconnect({"action": "resume", "turnId": self.turn_id, "fromSeq": self.resume_from})


    def _handle(self, event: Event) -> None:
        kind = event.get("type")
        if kind is None:
            if event.get("message") == GATEWAY_INTERNAL_ERROR and self.turn_id is None:
                self._deliver(
                    {"type": "error", "code": "internal", "retryable": True,
                     "message": f"API Gateway answered \"{GATEWAY_INTERNAL_ERROR}\"."}
                )
            else:
                self.listener.notice(Notice.GATEWAY, event)
            return
        if kind == "pong":
            return
        if kind == "accepted":
            self._accepted(event)
            return
        if kind == "error" and "turnId" not in event:
            self._bare_error(event)
            return
        if event.get("turnId") != self.turn_id or self.turn_id is None:
            return  # another turn's
        if self.resuming and not superseded(event):
            return  # from before the resume's `accepted` (a resume elsewhere ends the turn even so)
        seq = event.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq and kind != "error":  # an error ends the turn even out of order
                return
            if seq > self.last_seq + 1:
                self.listener.notice(Notice.FRAMES_LOST)
                self.conn.close()
                self._reconnect()
                return
            self.last_seq = max(seq, self.last_seq)
        self._deliver(event)
        if kind == "return_control":
            self._return_control(event)

    def _return_control(self, event: Event) -> None:
        results = self.run_tools(event)
        if results is None:
            self.listener.notice(Notice.CANNOT_RUN_TOOLS)
            self.cancel()
            return
        self.tools_answered = True
        # The request for tools is not part of what a replay keeps: the events after the results
        # are numbered from its seq on. Should the results be lost, a resume gets it again.
        if isinstance(event.get("seq"), int):
            self.last_seq = min(self.last_seq, event["seq"] - 1)
        self._send_quietly({"action": "return_control", "turnId": self.turn_id,
                            "invocationId": event["invocationId"], "results": results})

    def _accepted(self, event: Event) -> None:
        if self.turn_id is None and event.get("requestId") not in (None, self.request_id):
            return
        if self.turn_id is not None and event.get("turnId") != self.turn_id:
            return
        self.turn_id = event["turnId"]
        if event.get("duplicate") and not self.resuming:
            self._resume()  # it reached the server before the drop; its events went there
            return
        # After a resume's `accepted` come the events after its fromSeq, as they were numbered:
        # what the turn has stands. After any other (an ask, tool results, a resume from 0) the
        # events start again at seq 1 with the whole answer so far; the listener skips what it
        # has already shown.
        resumed_from = self.resume_from if self.resuming else 0
        self.resuming = False
        self.resume_again_at = None
        self.tools_answered = False
        self.last_seq = resumed_from
        if not resumed_from:
            self.listener.restart()
        if self.cancel_requested:
            self._send_quietly({"action": "cancel", "turnId": self.turn_id})

    def _bare_error(self, event: Event) -> None:
        if event.get("code") == "unauthorized" and not self.reauthenticated:
            self.reauthenticated = True  # the connection's sign-in expired: once more, signed in
            self.listener.notice(Notice.SIGNED_OUT)
            self.conn.close()
            self._reconnect()
            return
        if self.turn_id is None and event.get("requestId") in (None, self.request_id):
            self._deliver(event)  # the ask was refused
            return
        if event.get("code") == "rate_limited" and self.resuming:
            # Too many messages on this connection: resume once more when the server says, not in a loop.
            retry_after_ms = event.get("retryAfterMs")
            delay_s = retry_after_ms / 1000 if isinstance(retry_after_ms, int) else 1.0
            self.resume_again_at = time.monotonic() + delay_s
            self.listener.notice(Notice.RESUME_DELAYED, event)
            return
        self.listener.notice(Notice.OTHER_ERROR, event)
        if self.tools_answered and not self.cancel_requested:
            self.tools_answered = False  # the tool results were refused: the turn cannot go on
            self.cancel()
