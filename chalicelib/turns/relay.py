"""The relay: posts a turn's events from a background thread.

Reading the agent's stream never waits on a post. The reader adds text and events to an
``Outbox`` and the poster thread takes whatever is due whenever it is free, so when posts are
slower than tokens the text piles up into fewer, larger frames instead of falling behind.
A gone client (410) stops the posting but not the reading: the answer is still persisted, and a
client that resumes on a new connection is attached and gets the whole answer from seq 1.
"""
from __future__ import annotations

import contextvars
import threading
import time
from typing import Callable, Optional

from chalicelib.turns.outbox import EventBuilder, Outbox
from chalicelib.gateway import ConnectionGone
from chalicelib.logs import logger
from chalicelib.protocol import Event

Post = Callable[[str, Event], None]  # (connection id, event)


class Relay:
    def __init__(
        self,
        post: Post,
        outbox: Outbox,
        connection_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._outbox = outbox
        self._clock = clock
        self._cv = threading.Condition()
        # The poster thread logs with the caller's ids (connection, turn, user).
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name="relay", daemon=True)
        self.connection_id = connection_id
        self.gone = False
        self.failed: Optional[BaseException] = None
        self._posting = False

    def __enter__(self) -> "Relay":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._cv:
            self._outbox.seal()  # no-op after close(); stops quietly after an exception
            self._cv.notify_all()
        self._thread.join()

    def text(self, text: str) -> None:
        with self._cv:
            self._outbox.add_text(text)
            self._cv.notify_all()

    def event(self, build: EventBuilder) -> None:
        with self._cv:
            self._outbox.add_event(build)
            self._cv.notify_all()

    def attach(self, connection_id: str) -> None:
        """Send everything from now on, starting with the whole answer so far, to this connection.

        It may be the same connection: a client that resumed after a silence wants the replay too.
        """
        with self._cv:
            if self._outbox.terminal_taken:
                return
            self.connection_id = connection_id
            self.gone = False
            self.failed = None
            self._outbox.rewind()
            self._cv.notify_all()

    def flush(self) -> None:
        """Post all pending text now and wait until it has been posted (or dropped)."""
        with self._cv:
            self._outbox.flush()
            self._cv.notify_all()
            while (self._posting or not self._outbox.empty) and self._thread.is_alive():
                self._cv.wait(0.1)

    def abandon(self) -> None:
        """Post nothing more (the turn is no longer ours); the thread drains and ends."""
        with self._cv:
            self._outbox.seal()
            self.gone = True
            self._cv.notify_all()

    def close(self, build_terminal: EventBuilder) -> None:
        """Queue the terminal event; the relay thread posts it and everything before it, then ends."""
        with self._cv:
            self._outbox.close(build_terminal)
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    events = self._outbox.take(self._clock())
                    if events:
                        self._posting = True
                        break
                    if self._outbox.closed and self._outbox.empty:
                        return
                    self._cv.wait(self._outbox.wait(self._clock()))
                connection_id, dropped = self.connection_id, self.gone or self.failed is not None
            try:
                if not dropped:  # else numbered and persisted, but nobody to send them to (until a resume)
                    self._post_all(connection_id, events)
            finally:
                with self._cv:
                    self._posting = False
                    self._cv.notify_all()

    def _post_all(self, connection_id: str, events: list) -> None:
        for event in events:
            try:
                self._post(connection_id, event)
            except ConnectionGone:
                with self._cv:
                    self.gone = self.gone or connection_id == self.connection_id
                return
            except Exception as exc:  # noqa: BLE001 - a post failure must not kill the turn
                logger.warning("post failed; relay paused", extra={"error": type(exc).__name__})
                with self._cv:
                    if connection_id == self.connection_id:
                        self.failed = exc
                return
