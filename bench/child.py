"""A benchmark's worker process, spoken to in JSON lines: one job in on stdin, one answer out on stdout.

The process prints ``{"ready": true, ...}`` once it has warmed up; its logs go to a file of their own.
"""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent


class JsonLinesChild:
    def __init__(self, args: List[str], env: Dict[str, str], log: Path, name: str, ready_timeout: float,
                 on_start: Optional[Callable[[int], None]] = None) -> None:
        self.name, self.log = name, log
        self._log = open(log, "w")
        self._process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        if on_start is not None:
            on_start(self._process.pid)  # e.g. put it in a CPU-capped cgroup before it does any work
        self._answers: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._answers.get(timeout=ready_timeout)
        if not ready or not ready.get("ready"):
            self.stop()
            raise RuntimeError(f"the {name} worker did not start; see {log}")
        self.ready: Dict[str, Any] = ready

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._answers.put(json.loads(line))
        self._answers.put(None)

    def run(self, job: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(job) + "\n")
        self._process.stdin.flush()
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            return {"error": f"no answer from the worker in {timeout:.0f} s"}
        return answer if answer is not None else {"error": "the worker died"}

    def stop(self) -> None:
        stop(self._process, self._log, 15)


def stop(process: "subprocess.Popen[str]", log: Any, wait_s: float) -> None:
    """End a child whose stdin is its work: closing it asks it to finish; after ``wait_s``, kill it."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
