"""The agentstream command-line client: prints answers as they stream.

    python -m client --token T                 # chat: type a question, watch the answer arrive
    python -m client --token T ask "question"  # one shot: print the answer, exit

Exit codes scripts can use: 0 answered; 1 the turn ended in an error event; 2 bad usage;
3 the server refused the connection (bad or missing token); 4 the connection was lost.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any, Dict, Optional, TextIO
from urllib.parse import quote

OK, TURN_FAILED, USAGE, REFUSED, LOST = 0, 1, 2, 3, 4


class TurnPrinter:
    """Renders one turn's events as text; knows nothing about sockets."""

    def __init__(self, out: TextIO, err: TextIO, show_trace: bool = False) -> None:
        self.out = out
        self.err = err
        self.show_trace = show_trace
        self.turn_id: Optional[str] = None
        self.result: Optional[int] = None  # set by the terminal event

    def handle(self, event: Dict[str, Any]) -> None:
        kind = event.get("type")
        if kind is None and event.get("message") == "Endpoint request timed out":
            self.err.write("[gateway] the request timed out at API Gateway; the answer may still arrive\n")
        elif kind == "accepted":
            self.turn_id = event["turnId"]
        elif kind == "chunk":
            self.out.write(event["text"])
            self.out.flush()
        elif kind == "trace" and self.show_trace:
            self.err.write(f"[trace] {json.dumps(event['trace'])[:500]}\n")
        elif kind == "done":
            stats = event.get("stats") or {}
            self.out.write("\n")
            if stats:
                self.err.write(
                    f"[done] {stats.get('characters', 0)} characters in {stats.get('chunks', 0)} chunks, "
                    f"first token {stats.get('firstTokenMs')} ms, total {stats.get('durationMs')} ms\n"
                )
            self.result = OK
        elif kind == "error":
            retry = "retryable" if event.get("retryable") else "not retryable"
            self.out.write("\n" if self.turn_id else "")
            self.err.write(f"error [{event.get('code')}, {retry}]: {event.get('message')}\n")
            self.result = TURN_FAILED
        self.err.flush()

    @property
    def finished(self) -> bool:
        return self.result is not None


def _url(base: str, token: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}token={quote(token, safe='')}"


def run_turn(ws: Any, printer: TurnPrinter, prompt: str, conversation: Optional[str], trace: bool) -> int:
    message: Dict[str, Any] = {"action": "ask", "prompt": prompt, "requestId": uuid.uuid4().hex}
    if conversation:
        message["conversationId"] = conversation
    if trace:
        message["trace"] = True
    ws.send(json.dumps(message))
    while not printer.finished:
        printer.handle(json.loads(ws.recv()))
    return printer.result if printer.result is not None else LOST


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("AGENTSTREAM_URL", "ws://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("AGENTSTREAM_TOKEN"), help="JWT (or $AGENTSTREAM_TOKEN)")
    parser.add_argument("--conversation", help="continue a named conversation across runs")
    parser.add_argument("--trace", action="store_true", help="show the agent's trace events")
    sub = parser.add_subparsers(dest="command")
    ask = sub.add_parser("ask", help="ask one question, print the answer, exit")
    ask.add_argument("prompt")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or AGENTSTREAM_TOKEN (locally: make token)")

    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    conversation = args.conversation or (None if args.command == "ask" else uuid.uuid4().hex)
    try:
        with connect(_url(args.url, args.token), open_timeout=10, max_size=None) as ws:
            if args.command == "ask":
                return run_turn(ws, TurnPrinter(sys.stdout, sys.stderr, args.trace), args.prompt, conversation, args.trace)
            sys.stderr.write(f"connected to {args.url}; type a question (Ctrl-D to quit)\n")
            code = OK
            while True:
                try:
                    prompt = input("you> ")
                except EOFError:
                    return code
                if prompt.strip():
                    code = run_turn(ws, TurnPrinter(sys.stdout, sys.stderr, args.trace), prompt, conversation, args.trace)
    except InvalidStatus as exc:
        sys.stderr.write(f"refused: the server answered HTTP {exc.response.status_code} (check the token)\n")
        return REFUSED
    except (ConnectionClosed, OSError) as exc:
        sys.stderr.write(f"connection lost: {exc}\n")
        return LOST
    except KeyboardInterrupt:
        return OK
