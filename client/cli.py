"""The agentstream command-line client: prints answers as they stream.

    python -m client --token T                  # chat: type a question, watch the answer arrive
    python -m client --token T ask "question"   # one shot: print the answer, exit
    echo "question" | python -m client ask -    # the question from standard input
    python -m client --token T upload FILE      # a document for the knowledge base, followed to its end
    python -m client --token T documents        # your documents and where each stands

The answer goes to standard output, everything else (status, traces, errors) to standard error.
A dropped connection is reopened with backoff and the turn in flight resumed after the last part
it has: the answer is printed whole and once. While the agent is silent for a while, a
"… still working" note says so on standard error (on a terminal: dim, erased by the next text).
In chat, Ctrl-C cancels the answer in progress (twice quits), the up arrow recalls earlier
questions (kept in ~/.agentstream_history), and /help lists commands.

Exit codes scripts can use: 0 answered; 1 the turn ended in an error event (the code is printed;
``superseded`` too: the answer was resumed in another window or client and goes on there);
2 bad usage; 3 the server refused the connection (bad or missing token); 4 the connection was
lost and could not be resumed. ``upload`` prints the document's statuses on standard output as
they come and exits 0 once it is analysed; 5 the server refused the upload, 6 storage refused the
file, 7 the document failed (or was deleted), 8 it was not analysed within ``--timeout``.
``documents`` exits 0, or 1 for an error event.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, List, Optional

from client.connection import Connection, Lost, Refused
from client.documents import Upload, UploadPrinter, content_type_for, list_documents
from client.exit_codes import INTERRUPTED_TWICE, LOST, OK, REFUSED, TURN_FAILED
from client.render import ConnectionPrinter, StatusLine, TurnPrinter
from client.tools import ask_tools_on_terminal
from client.turn import RunTools, Turn, ask_message, no_tools, visible

DEFAULT_URL = "ws://127.0.0.1:8000"
UPLOAD_TIMEOUT_S = 600.0  # an upload waits this long for its document to be analysed
DOCUMENTS_TIMEOUT_S = 30.0
HISTORY_FILE = "~/.agentstream_history"


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


def run_turn(
    conn: Connection,
    printer: TurnPrinter,
    prompt: str,
    conversation: Optional[str],
    trace: bool,
    run_tools: RunTools = no_tools,
) -> int:
    """Ask and print the answer; Ctrl-C cancels the turn, a second Ctrl-C gives up on it."""
    turn = Turn(conn, printer, ask_message(prompt, conversation, trace), run_tools)
    try:
        with Interrupts() as interrupts:
            return turn.run(lambda: interrupts.count)
    finally:
        printer.status.clear()  # no "still working" note left behind, however the turn ended


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


def chat(conn: Connection, args: argparse.Namespace, status: StatusLine) -> int:
    """The REPL: one turn per line on one connection, with commands and input history."""
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
            if not visible(command):
                if command:
                    err.write("[the question has only invisible characters; not sent]\n")
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
                printer = TurnPrinter(sys.stdout, err, trace, status)
                code = run_turn(conn, printer, prompt, conversation, trace, ask_tools_on_terminal)
            except KeyboardInterrupt:
                err.write("\n[stopped waiting; the turn may still finish on the server]\n")
                code = TURN_FAILED
    finally:
        save_history()


# ---- main ----------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line, checked; exits 2 (USAGE) with a message when it is unusable.

    For ``ask -`` the question is read from standard input here, and ``args.from_stdin`` is set.
    """
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
        epilog="exit codes: 0 answered, 1 error event, 2 usage, 3 refused, 4 connection lost; upload: 5 refused "
               "by the server, 6 refused by storage, 7 the document failed, 8 timed out",
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
    ask_parser = sub.add_parser("ask", help="ask one question, print the answer, exit", parents=[options()])
    ask_parser.add_argument("prompt", help='the question; "-" reads it from standard input')
    upload_parser = sub.add_parser(
        "upload", parents=[options()],
        help="upload a document (.txt .md .html .htm .pdf .docx), print its statuses until it is analysed",
    )
    upload_parser.add_argument("file", help="the file to upload")
    upload_parser.add_argument("--content-type", help="declare this content type (default: from the extension)")
    upload_parser.add_argument("--timeout", type=float, default=UPLOAD_TIMEOUT_S,
                               help=f"give up waiting after this many seconds (default {UPLOAD_TIMEOUT_S:g})")
    documents_parser = sub.add_parser("documents", help="list your documents and where each stands", parents=[options()])
    documents_parser.add_argument("--timeout", type=float, default=DOCUMENTS_TIMEOUT_S,
                                  help=f"give up waiting after this many seconds (default {DOCUMENTS_TIMEOUT_S:g})")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or AGENTSTREAM_TOKEN (locally: make token)")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    args.from_stdin = args.command == "ask" and args.prompt == "-"
    if args.from_stdin:
        args.prompt = sys.stdin.read()
    if args.command == "ask" and not visible(args.prompt):
        parser.error("the question is empty (or only spaces and invisible characters)")
    if args.command in ("upload", "documents") and not args.timeout > 0:
        parser.error("--timeout must be more than 0 seconds")
    if args.command == "upload":
        path = Path(args.file)
        try:
            args.data = path.read_bytes()
        except OSError as exc:
            parser.error(f"cannot read {args.file}: {exc.strerror or exc}")
        if not args.data:
            parser.error(f"{args.file} is empty: there is nothing to upload")
        args.file_name = path.name
        args.content_type = args.content_type or content_type_for(path.name)
        if any(char in args.content_type for char in "\r\n"):
            parser.error("--content-type must be one line")
    return args


def ask(conn: Connection, args: argparse.Namespace, status: StatusLine) -> int:
    """One question, its answer, an exit code. A question piped in means nobody is at the
    terminal to answer the agent's tools, so they cancel the turn."""
    printer = TurnPrinter(sys.stdout, sys.stderr, args.trace, status)
    tools = no_tools if args.from_stdin else ask_tools_on_terminal
    return run_turn(conn, printer, args.prompt, args.conversation, args.trace, tools)


def upload(conn: Connection, args: argparse.Namespace, status: StatusLine) -> int:
    """One document: described, stored, followed until it is analysed (or fails, or time runs out)."""
    printer = UploadPrinter(sys.stdout, sys.stderr, status)
    try:
        return Upload(conn, printer, args.file_name, args.content_type, args.data, args.timeout).run()
    except KeyboardInterrupt:
        status.write("\n[stopped waiting; the upload goes on if it was stored: python -m client documents]\n")
        return INTERRUPTED_TWICE


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    args = parse_args(argv)
    status = StatusLine(sys.stderr)  # shared: a reconnect line erases a "still working" note first
    conn = Connection(args.url, args.token, attempts=args.retries, listener=ConnectionPrinter(sys.stderr, status))
    try:
        conn.open()
        if args.command == "ask":
            return ask(conn, args, status)
        if args.command == "upload":
            return upload(conn, args, status)
        if args.command == "documents":
            return list_documents(conn, sys.stdout, sys.stderr, args.timeout)
        return chat(conn, args, status)
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
