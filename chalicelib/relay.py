"""The relay: posts a turn's events from a background thread.

Reading the agent's stream never waits on a post. The reader adds text and events to an
``Outbox`` and the poster thread takes whatever is due whenever it is free, so when posts are
slower than tokens the text piles up into fewer, larger frames instead of falling behind.
A gone client (410) stops the posting but not the reading: the answer is still persisted.
"""
from __future__ import annotations

import contextvars
import threading
import time
from typing import Callable, Optional

from chalicelib.coalesce import EventBuilder, Outbox
from chalicelib.gateway import ConnectionGone
from chalicelib.logs import logger
from chalicelib.protocol import Event


class Relay:
    def __init__(self, post: Callable[[Event], None], outbox: Outbox, clock: Callable[[], float] = time.monotonic):
        self._post = post
        self._outbox = outbox
        self._clock = clock
        self._cv = threading.Condition()
        # The poster thread logs with the caller's ids (connection, turn, user).
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name="relay", daemon=True)
        self.gone = False
        self.failed: Optional[BaseException] = None
        self.posts = 0

    def __enter__(self) -> "Relay":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._cv:
            if not self._outbox.closed:  # an exception escaped the caller: stop quietly
                self._outbox.closed = True
                self._cv.notify()
        self._thread.join()

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def text(self, text: str) -> None:
        with self._cv:
            self._outbox.add_text(text)
            self._cv.notify()

    def event(self, build: EventBuilder) -> None:
        with self._cv:
            self._outbox.add_event(build)
            self._cv.notify()

    def finish(self, build_terminal: EventBuilder) -> None:
        """Queue the terminal event and wait until everything has been posted (or dropped)."""
        with self._cv:
            self._outbox.close(build_terminal)
            self._cv.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    events = self._outbox.take(self._clock())
                    if events:
                        break
                    if self._outbox.closed and self._outbox.empty:
                        return
                    self._cv.wait(self._outbox.wait(self._clock()))
            if self.gone or self.failed:
                continue  # numbered and persisted, but nobody to send them to
            for event in events:
                try:
                    self._post(event)
                    self.posts += 1
                except ConnectionGone:
                    self.gone = True
                    break
                except Exception as exc:  # noqa: BLE001 - a post failure must not kill the turn
                    logger.warning("post failed; relay stopped", extra={"error": type(exc).__name__})
                    self.failed = exc
                    break
