"""The local stack as a subprocess (exactly what `make run` starts), driven over real sockets."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from devserver.tokens import issue_token

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
RECV_TIMEOUT_S = 15

# A short visibility timeout, watcher interval and checkpoint interval (the heartbeat): a killed
# worker's turn is interrupted in seconds, and a resumed turn is re-attached within 0.1 s.
FAST = {"VISIBILITY_TIMEOUT_S": "3", "CONTROL_INTERVAL_MS": "100", "CHECKPOINT_INTERVAL_MS": "300"}


@dataclass
class Stack:
    """A running local stack: what it printed on READY (urls, ports), its token secret, its process."""

    info: Dict[str, Any]
    secret: str
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def rest_url(self) -> str:
        """The REST API's base URL, stage included (``http://127.0.0.1:PORT/local``): ``+ "/v1/turns"``."""
        return self.info["rest_url"]

    def token(self, user: str = "alice", **kwargs: Any) -> str:
        return issue_token(user, self.secret, **kwargs)

    def connect(self, user: str = "alice", token: Optional[str] = None) -> Any:
        from websockets.sync.client import connect

        token = token if token is not None else self.token(user)
        return connect(f"{self.url}/?token={token}", open_timeout=10, max_size=None)


def start_stack(**env_overrides: str) -> Stack:
    """Start ``python -m devserver`` on free ports with these settings; returns once it is READY."""
    secret = "integration-" + secrets.token_urlsafe(24)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_")
        and key not in ("AGENT_ID", "AGENT_ALIAS_ID", "MODEL_ID", "AGENT_RUNTIME_ARN", "BACKEND", "JWT_SECRET")
    }
    env.update({"JWT_SECRET": secret, "PORT": "0", "PYTHONUNBUFFERED": "1", "DEVSERVER_LOG_LEVEL": "WARNING"})
    env.update(env_overrides)
    process = subprocess.Popen(
        [sys.executable, "-m", "devserver"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("READY "):
            # Drain the app's log lines so the pipe never fills and blocks the stack.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return Stack(json.loads(line[len("READY "):]), secret, process)
    process.kill()
    raise RuntimeError("the local stack did not start")


def stop_stack(stack: Stack) -> None:
    """Stop the stack as Ctrl-C would (SIGTERM), killing it if it does not end in 15 s."""
    stack.process.terminate()
    try:
        stack.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait()


def receive_turn(ws: Any, timeout: float = RECV_TIMEOUT_S) -> List[Dict[str, Any]]:
    """Every frame up to and including the turn's terminal event (or a bare error)."""
    events: List[Dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no terminal event in {timeout} s; got {events}"
        raw = ws.recv(timeout=remaining)
        event = json.loads(raw)
        event["_bytes"] = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
        events.append(event)
        if event.get("type") in ("done", "error"):
            return events


def until_chunk(ws: Any, count: int = 1, timeout: float = RECV_TIMEOUT_S) -> List[Dict[str, Any]]:
    """Frames up to the turn's ``count``-th chunk: a point in the turn a fault can strike at."""
    events = [json.loads(ws.recv(timeout=timeout))]
    while sum(1 for event in events if event["type"] == "chunk") < count:
        events.append(json.loads(ws.recv(timeout=timeout)))
    return events


def ask(ws: Any, prompt: str, timeout: float = RECV_TIMEOUT_S, **fields: Any) -> List[Dict[str, Any]]:
    """Ask, and return every frame of the turn (see ``receive_turn``)."""
    ws.send(json.dumps({"prompt": prompt, **fields}))
    return receive_turn(ws, timeout)


def answer_of(events: List[Dict[str, Any]]) -> str:
    """The answer text, from the turn's chunks in order."""
    return "".join(event["text"] for event in events if event.get("type") == "chunk")


def assert_one_well_formed_turn(events: List[Dict[str, Any]]) -> None:
    """``accepted``, then one turn's events numbered from 1, ending in exactly one terminal event.

    ``progress`` events (a turn silent for PROGRESS_INTERVAL_S, which a busy machine can make of
    any turn) are outside the numbering and may come anywhere before the end."""
    assert events[0]["type"] == "accepted"
    turn_id = events[0]["turnId"]
    assert all(event.get("turnId") == turn_id for event in events[1:])
    rest = [event for event in events[1:] if event["type"] != "progress"]
    assert [event["seq"] for event in rest] == list(range(1, len(rest) + 1))
    assert [event["type"] for event in rest].count("done") + [event["type"] for event in rest].count("error") == 1
    assert rest[-1]["type"] in ("done", "error")
