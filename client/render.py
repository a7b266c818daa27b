"""Turns, errors and tool calls as text for a terminal: the answer to ``out``, the rest to ``err``.

Nothing here touches a socket: TurnPrinter is the TurnListener (client.turn) of the CLI, and
ConnectionPrinter the ReconnectListener (client.connection). Both share a StatusLine: on a
terminal a ``progress`` event is a dim note after the cursor, erased before anything else is
written; elsewhere (a pipe, a file) it is a line of its own on ``err``.
"""
from __future__ import annotations

import json
import shutil
from typing import Any, Dict, Optional, TextIO

from client.turn import Notice, outcome

ERROR_TITLES = {
    "invalid_request": "the server could not accept the request",
    "unauthorized": "not signed in",
    "rate_limited": "too many questions at once",
    "quota_exceeded": "your token budget is used up for now",
    "throttled": "the agent is busy (throttled)",
    "not_found": "no such turn",
    "agent_error": "the agent failed",
    "guardrail": "a guardrail stopped the answer",
    "interrupted": "interrupted before it finished",
    "superseded": "continued in another window or client, which resumed this answer; it goes on there",
    "cancelled": "cancelled",
    "internal": "something went wrong inside agentstream",
}

NOTICES = {
    Notice.CANCELLING: "\n[cancelling; Ctrl-C again to stop waiting]",
    Notice.FRAMES_LOST: "[frames were lost; getting the answer again]",
    Notice.CANNOT_RUN_TOOLS: "[this client cannot run the agent's tools here; cancelling the turn]",
    Notice.SIGNED_OUT: "[signed out by the server; reconnecting]",
}
DIM, PLAIN, ERASE_TO_END = "\x1b[2m", "\x1b[0m", "\x1b[K"
GATEWAY_TIMEOUT = "Endpoint request timed out"  # API Gateway gave up waiting; the turn goes on


def describe_error(event: Dict[str, Any]) -> str:
    """One line a person can act on: the code, whether to retry, and when."""
    code = str(event.get("code"))
    retry = "retryable" if event.get("retryable") else "not retryable"
    text = f"error [{code}, {retry}]: {ERROR_TITLES.get(code, 'error')}: {event.get('message', '')}"
    if isinstance(event.get("retryAfterMs"), int):
        text += f" (try again in {describe_wait(event['retryAfterMs'])})"
    return text


def describe_wait(ms: int) -> str:
    """A server's ``retryAfterMs`` in words: ``1.5 s`` for a rate limit (tenths matter there), else
    as the server words a budget's reset (``5 h 30 min``)."""
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    from chalicelib.usage import wait_in_words  # pure, standard library only

    return wait_in_words(ms)


def describe_inputs(event: Dict[str, Any]) -> str:
    """The tool calls of a return_control event, as ``group.function(name='value')``."""
    calls = []
    for item in event.get("inputs") or []:
        call = item.get("functionInvocationInput") or item.get("apiInvocationInput") or item
        name = call.get("function") or f"{call.get('httpMethod', '')} {call.get('apiPath', '')}".strip() or "a tool"
        params = ", ".join(f"{p.get('name')}={p.get('value')!r}" for p in call.get("parameters") or [])
        calls.append(f"{call.get('actionGroup', '?')}.{name}({params})")
    return "; ".join(calls) or "nothing"


def describe_progress(event: Dict[str, Any]) -> str:
    """A ``progress`` event in words: ``… still working (12 s, calling an action group)``."""
    elapsed_ms = event.get("elapsedMs")
    seconds = elapsed_ms / 1000 if isinstance(elapsed_ms, (int, float)) else None
    parts = []
    if seconds is not None:
        parts.append(f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s")
    if isinstance(event.get("phase"), str) and event["phase"]:
        parts.append(event["phase"])
    return "… still working" + (f" ({', '.join(parts)})" if parts else "")


def describe_notice(notice: Notice, event: Optional[Dict[str, Any]] = None) -> str:
    """The status line for something a turn reports besides its events."""
    if notice is Notice.RESUME_DELAYED:
        retry_after_ms = (event or {}).get("retryAfterMs")
        wait = f"{retry_after_ms / 1000:.1f} s" if isinstance(retry_after_ms, int) else "a moment"
        return f"[the server is busy with this connection's messages; resuming again in {wait}]"
    if notice is Notice.GATEWAY:
        message = (event or {}).get("message")
        if message == GATEWAY_TIMEOUT:
            return "[gateway] API Gateway timed out the request; the answer may still arrive"
        return f"[gateway] {message}"
    if notice is Notice.OTHER_ERROR:
        return describe_error(event or {})
    return NOTICES[notice]


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class StatusLine:
    """``err`` for status text, with at most one transient note (``progress``) on it.

    On a terminal the note is written dim at the cursor, where the answer's next text goes, and
    the cursor is put back before it: whatever is written next, on ``out`` or ``err``, first
    erases it. So the note never lands in the answer, and the answer's line is left as it was.
    Elsewhere (a pipe, a file, a test's StringIO) a note is a line of its own on ``err``.
    """

    def __init__(self, err: TextIO, live: Optional[bool] = None) -> None:
        self.err = err
        self.live = _is_terminal(err) if live is None else live
        self.shown = False  # a transient note is on the screen

    def write(self, text: str) -> None:
        """Status text for ``err`` (after erasing the note)."""
        self.clear()
        self.err.write(text)
        self.err.flush()

    def note(self, text: str, column: int = 0) -> None:
        """A transient note; ``column`` is where the cursor is on its line (for the width left)."""
        if not self.live:
            self.write(text + "\n")
            return
        self.clear()
        width = shutil.get_terminal_size().columns
        column %= width  # the answer's line may have wrapped
        text = (" " if column else "") + text
        room = width - column - 1  # a column spare: no wrapping
        if room < 8:
            return  # too near the edge to say anything useful
        text = text[:room]
        self.err.write(f"{DIM}{text}{PLAIN}\x1b[{len(text)}D")
        self.err.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the transient note, if one is showing (before anything else is written)."""
        if self.shown:
            self.shown = False
            self.err.write(ERASE_TO_END)
            self.err.flush()


class TurnPrinter:
    """Renders one turn's events as text; knows nothing about sockets.

    A turn's events may come again from seq 1 (after tool results, or a resume that kept
    nothing), so the printer counts what it has shown and prints only text beyond it; a resume
    from the last seq it has only appends. The answer appears whole and once.
    """

    def __init__(self, out: TextIO, err: TextIO, show_trace: bool = False, status: Optional[StatusLine] = None) -> None:
        self.out = out
        self.err = err
        self.status = status if status is not None else StatusLine(err)
        self.show_trace = show_trace
        self.out_live = _is_terminal(out)
        self.column = 0  # where the answer's last line ends (for a note on a terminal)
        self.progress = 0  # progress events seen
        self.result: Optional[int] = None  # the exit code of the terminal event, once shown
        self.error_code: Optional[str] = None
        self.shown = 0  # characters of the answer written to ``out``
        self.received = 0  # characters of the answer received since the last (re)start
        self.traces = 0

    def restart(self) -> None:
        """The turn's events start again from seq 1 (the text so far comes again)."""
        self.received = 0

    def handle(self, event: Dict[str, Any]) -> None:
        """Print one of the turn's events: text on ``out``, everything else on ``err``."""
        kind = event.get("type")
        if kind == "chunk":
            self._text(event["text"])
        elif kind == "progress":
            self.progress += 1
            self.status.note(describe_progress(event), self.column if self.out_live else 0)
        elif kind == "trace":
            self.traces += 1
            if self.show_trace:
                self.status.write(f"[trace] {json.dumps(event['trace'], ensure_ascii=False)[:2000]}\n")
        elif kind == "return_control":
            self.status.write(f"[return_control] the agent asks the client to run: {describe_inputs(event)}\n")
        elif kind == "files":
            for file in event.get("files") or []:
                note = "" if "content" in file else f": {file.get('note', 'not included')}"
                self.status.write(f"[file] {file.get('name')} ({file.get('type')}, {file.get('size')} bytes){note}\n")
        elif kind == "done":
            self._end_line()
            stats = event.get("stats") or {}
            if stats:
                first = stats.get("firstTokenMs")
                first_text = f", first text after {first} ms" if first is not None else ""
                self.status.write(
                    f"[done] {stats.get('characters', 0)} characters in {stats.get('chunks', 0)} chunks"
                    f"{first_text}, {stats.get('durationMs', 0) / 1000:.1f} s\n"
                )
        elif kind == "error":
            self._end_line()
            self.error_code = str(event.get("code"))
            self.status.write(f"{describe_error(event)}\n")
        ended = outcome(event)
        if ended is not None:
            self.result = ended
        self.err.flush()

    def notice(self, notice: Notice, event: Optional[Dict[str, Any]] = None) -> None:
        """A status line for something besides the turn's events."""
        self.status.write(f"{describe_notice(notice, event)}\n")

    def _text(self, text: str) -> None:
        start, self.received = self.received, self.received + len(text)
        if self.received > self.shown:
            self.status.clear()
            new = text[max(0, self.shown - start):]
            self.out.write(new)
            self.out.flush()
            self.shown = self.received
            self._advance(new)

    def _advance(self, text: str) -> None:
        """Keep ``column`` where the answer's last line ends (tabs to the next multiple of 8)."""
        line_start = text.rfind("\n")
        if line_start >= 0:
            self.column, text = 0, text[line_start + 1:]
        for char in text:
            self.column = (self.column // 8 + 1) * 8 if char == "\t" else self.column + 1

    def _end_line(self) -> None:
        self.status.clear()
        if self.shown:
            self.out.write("\n")
            self.out.flush()
            self.column = 0


class ConnectionPrinter:
    """Shows reconnect attempts on ``err``, so a person knows why the answer paused."""

    def __init__(self, err: TextIO, status: Optional[StatusLine] = None) -> None:
        self.err = err
        self.status = status if status is not None else StatusLine(err)

    def reconnecting(self, delay_s: float, attempt: int, attempts: int) -> None:
        """One attempt is about to be made, after ``delay_s``."""
        self.status.write(f"[reconnecting in {delay_s:.1f} s, attempt {attempt} of {attempts}]\n")

    def reconnected(self) -> None:
        """The connection is open again; the turn in flight resumes."""
        self.status.write("[reconnected]\n")
