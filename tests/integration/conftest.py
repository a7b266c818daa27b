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
from typing import Any, Dict, Iterator, List, Optional

import pytest

from devserver.tokens import issue_token

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
RECV_TIMEOUT_S = 15


@dataclass
class Stack:
    info: Dict[str, Any]
    secret: str
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return self.info["url"]

    def token(self, user: str = "alice", **kwargs: Any) -> str:
        return issue_token(user, self.secret, **kwargs)

    def connect(self, user: str = "alice", token: Optional[str] = None) -> Any:
        from websockets.sync.client import connect

        token = token if token is not None else self.token(user)
        return connect(f"{self.url}/?token={token}", open_timeout=10, max_size=None)


def start_stack(**env_overrides: str) -> Stack:
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
    stack.process.terminate()
    try:
        stack.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    started = start_stack()
    yield started
    stop_stack(started)


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


def ask(ws: Any, prompt: str, timeout: float = RECV_TIMEOUT_S, **fields: Any) -> List[Dict[str, Any]]:
    ws.send(json.dumps({"prompt": prompt, **fields}))
    return receive_turn(ws, timeout)


def answer_of(events: List[Dict[str, Any]]) -> str:
    return "".join(event["text"] for event in events if event.get("type") == "chunk")


def assert_one_well_formed_turn(events: List[Dict[str, Any]]) -> None:
    assert events[0]["type"] == "accepted"
    turn_id = events[0]["turnId"]
    rest = events[1:]
    assert all(event.get("turnId") == turn_id for event in rest)
    assert [event["seq"] for event in rest] == list(range(1, len(rest) + 1))
    assert [event["type"] for event in rest].count("done") + [event["type"] for event in rest].count("error") == 1
    assert rest[-1]["type"] in ("done", "error")
