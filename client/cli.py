"""The agentstream command-line client: prints answers as they stream.

    python -m client --token T                  # chat: type a question, watch the answer arrive
    python -m client --token T ask "question"   # one shot: print the answer, exit
    echo "question" | python -m client ask -    # the question from standard input

The answer goes to standard output, everything else (status, traces, errors) to standard error.
A dropped connection is reopened with backoff and the turn in flight resumed: the answer is
printed whole and once. In chat, Ctrl-C cancels the answer in progress (twice quits), the
up arrow recalls earlier questions (kept in ~/.agentstream_history), and /help lists commands.

Exit codes scripts can use: 0 answered; 1 the turn ended in an error event (the code is printed);
2 bad usage; 3 the server refused the connection (bad or missing token); 4 the connection was
lost and could not be resumed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Optional, TextIO
from urllib.parse import quote

OK, TURN_FAILED, USAGE, REFUSED, LOST = 0, 1, 2, 3, 4
INTERRUPTED_TWICE = 130  # the shell's convention for Ctrl-C

DEFAULT_URL = "ws://127.0.0.1:8000"
HISTORY_FILE = "~/.agentstream_history"
RECV_POLL_S = 0.5  # recv waits this long at a time, so Ctrl-C and deadlines are noticed
KEEPALIVE_S = 240  # API Gateway closes a connection after 10 minutes without client frames

ERROR_TITLES = {
    "invalid_request": "the server could not accept the request",
    "unauthorized": "not signed in",
    "rate_limited": "too many questions at once",
    "throttled": "the agent is busy (throttled)",
    "not_found": "no such turn",
    "agent_error": "the agent failed",
    "interrupted": "interrupted before it finished",
    "cancelled": "cancelled",
    "internal": "something went wrong inside agentstream",
}


class Refused(Exception):
    """The server refused the WebSocket handshake (HTTP 401/403: the token)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Lost(Exception):
    """The connection is gone and could not be reopened."""


class TurnPrinter:
    """Renders one turn's events as text; knows nothing about sockets.

    A resumed turn's events come again from seq 1, so the printer counts what it has shown and
    prints only text beyond it: the answer appears whole and once.
    """

    def __init__(self, out: TextIO, err: TextIO, show_trace: bool = False) -> None:
        self.out = out
        self.err = err
        self.show_trace = show_trace
        self.turn_id: Optional[str] = None
        self.result: Optional[int] = None  # set by the terminal event
        self.error_code: Optional[str] = None
        self.shown = 0  # characters of the answer written to ``out``
        self.received = 0  # characters of the answer received since the last (re)start
        self.traces = 0

    def restart(self) -> None:
        """The turn's events start again from seq 1 (after a resume)."""
        self.received = 0

    def handle(self, event: Dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "chunk":
            self._text(event["text"])
        elif kind == "trace":
            self.traces += 1
            if self.show_trace:
                self.err.write(f"[trace] {json.dumps(event['trace'], ensure_ascii=False)[:2000]}\n")
        elif kind == "return_control":
            self.err.write(f"[return_control] the agent asks the client to run: {describe_inputs(event)}\n")
        elif kind == "files":
            for file in event.get("files") or []:
                note = "" if "content" in file else f": {file.get('note', 'not included')}"
                self.err.write(f"[file] {file.get('name')} ({file.get('type')}, {file.get('size')} bytes){note}\n")
        elif kind == "done":
            self._end_line()
            stats = event.get("stats") or {}
            if stats:
                first = stats.get("firstTokenMs")
                first_text = f", first text after {first} ms" if first is not None else ""
                self.err.write(
                    f"[done] {stats.get('characters', 0)} characters in {stats.get('chunks', 0)} chunks"
                    f"{first_text}, {stats.get('durationMs', 0) / 1000:.1f} s\n"
                )
            self.result = OK
        elif kind == "error":
            self._end_line()
            self.error_code = str(event.get("code"))
            self.err.write(f"{describe_error(event)}\n")
            self.result = TURN_FAILED
        self.err.flush()

    def _text(self, text: str) -> None:
        start, self.received = self.received, self.received + len(text)
        if self.received > self.shown:
            self.out.write(text[max(0, self.shown - start):])
            self.out.flush()
            self.shown = self.received

    def _end_line(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()

    @property
    def finished(self) -> bool:
        return self.result is not None


def describe_inputs(event: Dict[str, Any]) -> str:
    calls = []
    for item in event.get("inputs") or []:
        call = item.get("functionInvocationInput") or item.get("apiInvocationInput") or item
        name = call.get("function") or f"{call.get('httpMethod', '')} {call.get('apiPath', '')}".strip() or "a tool"
        params = ", ".join(f"{p.get('name')}={p.get('value')!r}" for p in call.get("parameters") or [])
        calls.append(f"{call.get('actionGroup', '?')}.{name}({params})")
    return "; ".join(calls) or "nothing"


def tool_results(event: Dict[str, Any], answers: Any) -> Any:
    """The ``results`` of a return_control message: one answer per input, in Bedrock's shape."""
    results = []
    for item, answer in zip(event.get("inputs") or [], answers, strict=False):
        api = item.get("apiInvocationInput")
        if api is not None:
            results.append({"apiResult": {
                "actionGroup": api.get("actionGroup"), "apiPath": api.get("apiPath"), "httpMethod": api.get("httpMethod"),
                "httpStatusCode": 200, "responseBody": {"application/json": {"body": answer}},
            }})
        else:
            call = item.get("functionInvocationInput") or {}
            result = {"actionGroup": call.get("actionGroup"), "responseBody": {"TEXT": {"body": answer}}}
            if call.get("function"):
                result["function"] = call["function"]
            results.append({"functionResult": result})
    return results


def ask_tools_on_terminal(event: Dict[str, Any], err: TextIO) -> Optional[list]:
    """Ask the person at the terminal what each tool returned; None when nobody is there."""
    if not sys.stdin.isatty():
        return None
    answers = []
    for item in event.get("inputs") or []:
        err.write(f"  result of {describe_inputs({'inputs': [item]})}? ")
        err.flush()
        try:
            answers.append(input())
        except EOFError:
            return None
    return tool_results(event, answers)


def describe_error(event: Dict[str, Any]) -> str:
    code = str(event.get("code"))
    retry = "retryable" if event.get("retryable") else "not retryable"
    text = f"error [{code}, {retry}]: {ERROR_TITLES.get(code, 'error')}: {event.get('message', '')}"
    if isinstance(event.get("retryAfterMs"), int):
        text += f" (try again in {event['retryAfterMs'] / 1000:.1f} s)"
    return text


def _url(base: str, token: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}token={quote(token, safe='')}"


class Connection:
    """One WebSocket that reopens itself: backoff with jitter, at most ``attempts`` tries in a row."""

    def __init__(
        self,
        url: str,
        token: str,
        err: TextIO,
        attempts: int = 8,
        base_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.token = token
        self.err = err
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep
        self.ws: Any = None
        self.reconnects = 0
        self._open = contextlib.ExitStack()

    def open(self) -> None:
        """The first connection: a refusal is final (Refused), anything else is Lost."""
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        try:
            self.ws = self._open.enter_context(connect(_url(self.url, self.token), open_timeout=10, max_size=None))
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise Refused(status) from None
            raise Lost(f"the server answered HTTP {status}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise Lost(str(exc) or type(exc).__name__) from None

    def reopen(self) -> None:
        """After a drop: try again with backoff; raise Lost when the attempts run out."""
        self.close()
        for attempt in range(self.attempts):
            ceiling = min(self.max_delay_s, self.base_delay_s * 2**attempt)
            delay = ceiling / 2 + random.random() * ceiling / 2
            self.err.write(f"[reconnecting in {delay:.1f} s, attempt {attempt + 1} of {self.attempts}]\n")
            self.err.flush()
            self.sleep(delay)
            try:
                self.open()
            except Lost:
                continue
            self.reconnects += 1
            self.err.write("[reconnected]\n")
            self.err.flush()
            return
        raise Lost(f"could not reconnect after {self.attempts} attempts")

    def send(self, message: Dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def recv(self, timeout: float) -> Optional[Dict[str, Any]]:
        """The next frame as a dict, or None if none came within ``timeout``."""
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        try:
            event = json.loads(raw)
        except ValueError:
            return {}
        return event if isinstance(event, dict) else {}

    def close(self) -> None:
        if self.ws is not None:
            self.ws = None
            try:
                self._open.close()
            except Exception:  # noqa: BLE001 - already broken
                pass


class Turn:
    """Ask once and see the turn through to its terminal event, across reconnects."""

    def __init__(
        self,
        conn: Connection,
        printer: TurnPrinter,
        message: Dict[str, Any],
        run_tools: Callable[[Dict[str, Any]], Optional[list]] = lambda event: None,
    ) -> None:
        self.conn = conn
        self.printer = printer
        self.message = message
        self.run_tools = run_tools  # answers a return_control event, or None: the turn is cancelled
        self.tools_answered = False
        self.request_id = message["requestId"]
        self.turn_id: Optional[str] = None
        self.last_seq = 0
        self.resuming = False
        self.cancel_requested = False
        self.reauthenticated = False

    def run(self, interrupts: Optional["Interrupts"] = None) -> int:
        """Ask, then read until the turn ends. The first Ctrl-C cancels it, the second gives up."""
        from websockets.exceptions import ConnectionClosed

        self._send_or_reconnect(self.message)
        last_ping = time.monotonic()
        while not self.printer.finished:
            if interrupts is not None and interrupts.count:
                if interrupts.count > 1:
                    raise KeyboardInterrupt
                if not self.cancel_requested:
                    self.printer.err.write("\n[cancelling; Ctrl-C again to stop waiting]\n")
                    self.printer.err.flush()
                    self.cancel()
            if time.monotonic() - last_ping > KEEPALIVE_S:  # a long turn: keep the connection open
                self._send_quietly({"action": "ping"})
                last_ping = time.monotonic()
            try:
                event = self.conn.recv(RECV_POLL_S)
            except ConnectionClosed:
                self._reconnect()
                continue
            if event is not None:
                self._handle(event)
        return self.printer.result if self.printer.result is not None else LOST

    def cancel(self) -> None:
        """Ask the server to stop the turn; its ``cancelled`` error ends it."""
        self.cancel_requested = True
        if self.turn_id is not None and not self.resuming:
            self._send_quietly({"action": "cancel", "turnId": self.turn_id})

    def _reconnect(self) -> None:
        self.conn.reopen()  # raises Lost or Refused when it cannot
        if self.turn_id is not None:
            self._resume()
        else:
            self._send_or_reconnect(self.message)  # the same requestId: never a second turn

    def _resume(self) -> None:
        self.resuming = True
        self._send_or_reconnect({"action": "resume", "turnId": self.turn_id})

    def _send_or_reconnect(self, message: Dict[str, Any]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self.conn.send(message)
        except ConnectionClosed:
            self._reconnect()

    def _send_quietly(self, message: Dict[str, Any]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self.conn.send(message)
        except ConnectionClosed:
            pass  # the reconnect that follows resumes; the cancel is sent again on `accepted`

    def _handle(self, event: Dict[str, Any]) -> None:
        kind = event.get("type")
        err = self.printer.err
        if kind is None:
            message = event.get("message")
            if message == "Endpoint request timed out":
                err.write("[gateway] API Gateway timed out the request; the answer may still arrive\n")
            elif message == "Internal server error" and self.turn_id is None:
                self.printer.handle(
                    {"type": "error", "code": "internal", "retryable": True,
                     "message": "API Gateway answered \"Internal server error\"."}
                )
            else:
                err.write(f"[gateway] {message}\n")
            return
        if kind == "pong":
            return
        if kind == "accepted":
            self._accepted(event)
            return
        if kind == "error" and "turnId" not in event:
            self._bare_error(event)
            return
        if event.get("turnId") != self.turn_id or self.turn_id is None or self.resuming:
            return  # another turn's, or from before the resume's `accepted`
        seq = event.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq and kind != "error":  # an error ends the turn even out of order
                return
            if seq > self.last_seq + 1:
                err.write("[frames were lost; getting the answer again]\n")
                self.conn.close()
                self._reconnect()
                return
            self.last_seq = max(seq, self.last_seq)
        self.printer.handle(event)
        if kind == "return_control":
            self._return_control(event)

    def _return_control(self, event: Dict[str, Any]) -> None:
        results = self.run_tools(event)
        if results is None:
            self.printer.err.write("[this client cannot run the agent's tools here; cancelling the turn]\n")
            self.cancel()
            return
        self.tools_answered = True
        self._send_quietly({"action": "return_control", "turnId": self.turn_id,
                            "invocationId": event["invocationId"], "results": results})

    def _accepted(self, event: Dict[str, Any]) -> None:
        if self.turn_id is None and event.get("requestId") not in (None, self.request_id):
            return
        if self.turn_id is not None and event.get("turnId") != self.turn_id:
            return
        self.turn_id = event["turnId"]
        self.printer.turn_id = self.turn_id
        if event.get("duplicate") and not self.resuming:
            self._resume()  # it reached the server before the drop; its events went there
            return
        # After every `accepted` (an ask, a resume, tool results) the turn's events start again at
        # seq 1 with the whole answer so far; the printer skips what it has already shown.
        self.resuming = False
        self.tools_answered = False
        self.last_seq = 0
        self.printer.restart()
        if self.cancel_requested:
            self._send_quietly({"action": "cancel", "turnId": self.turn_id})

    def _bare_error(self, event: Dict[str, Any]) -> None:
        if event.get("code") == "unauthorized" and not self.reauthenticated:
            self.reauthenticated = True  # the connection's sign-in expired: once more, signed in
            self.printer.err.write("[signed out by the server; reconnecting]\n")
            self.conn.close()
            self._reconnect()
            return
        if self.turn_id is None and event.get("requestId") in (None, self.request_id):
            self.printer.handle(event)  # the ask was refused
            return
        self.printer.err.write(f"{describe_error(event)}\n")
        if self.tools_answered and not self.cancel_requested:
            self.tools_answered = False  # the tool results were refused: the turn cannot go on
            self.cancel()


def ask_message(prompt: str, conversation: Optional[str], trace: bool) -> Dict[str, Any]:
    message: Dict[str, Any] = {"action": "ask", "prompt": prompt, "requestId": uuid.uuid4().hex}
    if conversation:
        message["conversationId"] = conversation
    if trace:
        message["trace"] = True
    return message


def run_turn(
    conn: Connection,
    printer: TurnPrinter,
    prompt: str,
    conversation: Optional[str],
    trace: bool,
    run_tools: Callable[[Dict[str, Any]], Optional[list]] = lambda event: None,
) -> int:
    """Ask and print the answer; Ctrl-C cancels the turn, a second Ctrl-C gives up on it."""
    turn = Turn(conn, printer, ask_message(prompt, conversation, trace), run_tools)
    with Interrupts() as interrupts:
        return turn.run(interrupts)


class Interrupts:
    """Counts Ctrl-C while a turn runs instead of raising KeyboardInterrupt wherever the program
    happens to be (inside the WebSocket library, a frame could be lost); the turn's loop acts on
    the count between frames."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._interrupted)
        return self

    def _interrupted(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---- chat ----------------------------------------------------------------------------------

CHAT_HELP = """commands: /new  start a new conversation   /trace  show or hide traces
          /help  this text                 /quit   leave (or Ctrl-D)"""


def _setup_history(path: Optional[str]) -> Callable[[], None]:
    """Up-arrow recall with readline, kept across runs in ``path``; a no-op where unavailable."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline
        return lambda: None
    if not path:
        return lambda: None
    file = Path(path).expanduser()
    try:
        readline.read_history_file(file)
    except (FileNotFoundError, OSError):
        pass
    readline.set_history_length(1000)

    def save() -> None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(file)
        except OSError:
            pass

    return save


def chat(conn: Connection, args: argparse.Namespace) -> int:
    err = sys.stderr
    save_history = _setup_history(args.history)
    conversation = args.conversation or uuid.uuid4().hex
    trace = args.trace
    err.write(f"connected to {args.url}; conversation {conversation[:8]}; type a question, /help, Ctrl-D to quit\n")
    code = OK
    try:
        while True:
            try:
                prompt = input("you> ")
            except EOFError:
                err.write("\n")
                return code
            except KeyboardInterrupt:
                err.write("\n")
                continue
            command = prompt.strip()
            if not command:
                continue
            if command in ("/quit", "/exit"):
                return code
            if command == "/help":
                err.write(CHAT_HELP + "\n")
                continue
            if command == "/new":
                conversation = uuid.uuid4().hex
                err.write(f"[new conversation {conversation[:8]}]\n")
                continue
            if command == "/trace":
                trace = not trace
                err.write(f"[traces {'on' if trace else 'off'}]\n")
                continue
            try:
                code = run_turn(
                    conn, TurnPrinter(sys.stdout, err, trace), prompt, conversation, trace,
                    lambda event: ask_tools_on_terminal(event, err),
                )
            except KeyboardInterrupt:
                err.write("\n[stopped waiting; the turn may still finish on the server]\n")
                code = TURN_FAILED
    finally:
        save_history()


# ---- main ----------------------------------------------------------------------------------

def main(argv: Optional[list] = None) -> int:
    # The options work before and after `ask` (python -m client ask "..." --trace): both parsers get
    # them, each from its own copy, and only the main one has defaults.
    def options() -> argparse.ArgumentParser:
        common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
        common.add_argument("--url", help="ws:// or wss:// URL ($AGENTSTREAM_URL)")
        common.add_argument("--token", help="JWT ($AGENTSTREAM_TOKEN)")
        common.add_argument("--conversation", help="continue a named conversation across runs (same agent session)")
        common.add_argument("--trace", action="store_true", help="ask for the agent's trace events and print them")
        common.add_argument("--retries", type=int, help="reconnect attempts after a drop (default 8; 0: none)")
        common.add_argument("--history", help=f"chat input history file ({HISTORY_FILE}; empty: none)")
        return common

    parser = argparse.ArgumentParser(
        prog="python -m client",
        description=__doc__.splitlines()[0],
        epilog="exit codes: 0 answered, 1 error event, 2 usage, 3 refused, 4 connection lost",
        parents=[options()],
    )
    parser.set_defaults(
        url=os.environ.get("AGENTSTREAM_URL", DEFAULT_URL),
        token=os.environ.get("AGENTSTREAM_TOKEN"),
        conversation=None,
        trace=False,
        retries=8,
        history=os.environ.get("AGENTSTREAM_HISTORY", HISTORY_FILE),
    )
    sub = parser.add_subparsers(dest="command")
    ask = sub.add_parser("ask", help="ask one question, print the answer, exit", parents=[options()])
    ask.add_argument("prompt", help='the question; "-" reads it from standard input')
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or AGENTSTREAM_TOKEN (locally: make token)")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    reads_stdin = args.command == "ask" and args.prompt == "-"
    if reads_stdin:
        args.prompt = sys.stdin.read()
    if args.command == "ask" and not args.prompt.strip():
        parser.error("the question is empty")

    conn = Connection(args.url, args.token, sys.stderr, attempts=args.retries)
    try:
        conn.open()
        if args.command == "ask":
            printer = TurnPrinter(sys.stdout, sys.stderr, args.trace)
            tools = (lambda event: ask_tools_on_terminal(event, sys.stderr)) if not reads_stdin else (lambda event: None)
            return run_turn(conn, printer, args.prompt, args.conversation, args.trace, tools)
        return chat(conn, args)
    except Refused as exc:
        sys.stderr.write(f"refused: the server answered HTTP {exc.status}; check the token (locally: make token)\n")
        return REFUSED
    except Lost as exc:
        sys.stderr.write(f"connection lost: {exc}\n")
        return LOST
    except KeyboardInterrupt:
        return INTERRUPTED_TWICE
    finally:
        conn.close()
