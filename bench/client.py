"""A WebSocket client that timestamps every frame it receives (websockets' sync client)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional


@dataclass
class Frame:
    at: float  # time.monotonic() when the client had it
    size: int  # bytes on the wire (the message's UTF-8 length)
    event: Dict[str, Any]

    @property
    def type(self) -> Optional[str]:
        return self.event.get("type")

    @property
    def text(self) -> str:
        return self.event.get("text", "") if self.type == "chunk" else ""


class Receiver:
    """One connection; a thread records every frame until the connection closes."""

    def __init__(self, url: str, tag: str) -> None:
        from websockets.sync.client import connect

        self.tag = tag
        self.frames: List[Frame] = []
        self._cv = threading.Condition()
        self._closed = False
        self._ws = connect(f"{url}/?bench={tag}", open_timeout=10, max_size=None, compression=None)
        self._thread = threading.Thread(target=self._run, name=f"receiver-{tag}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                raw = self._ws.recv()
                at = time.monotonic()
                data = raw.encode("utf-8") if isinstance(raw, str) else raw
                try:
                    event = json.loads(data)
                except ValueError:
                    event = {"type": "unparsable"}
                with self._cv:
                    self.frames.append(Frame(at, len(data), event if isinstance(event, dict) else {}))
                    self._cv.notify_all()
        except Exception:  # noqa: BLE001 - closed (by us or the server): stop recording
            pass
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()

    def wait(self, done: Callable[[List[Frame]], bool], timeout: float) -> bool:
        """Wait until ``done(frames)`` holds; False on timeout or if the connection closed first."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not done(self.frames):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cv.wait(left)
            return True

    def text(self) -> str:
        with self._cv:
            return "".join(frame.text for frame in self.frames)

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self._thread.join(5)


def text_length_reached(length: int) -> Callable[[List[Frame]], bool]:
    return lambda frames: sum(len(f.text) for f in frames) >= length


def terminal_received(frames: List[Frame]) -> bool:
    return any(f.type in ("done", "error") for f in frames)
