"""The relay: posts a turn's events from a background thread, and never goes silent.

Reading the agent's stream never waits on a post. The reader adds text and events to an
``Outbox`` and the poster thread takes whatever is due whenever it is free, so when posts are
slower than tokens the text piles up into fewer, larger frames instead of falling behind.

A post that fails is tried again, with backoff, a bounded number of times (botocore has already
retried throttling inside each try); the events wait, in order, meanwhile. If the connection still
refuses them, the relay closes it (DeleteConnection): the client sees its socket close, reconnects
and resumes, and gets the answer from the persisted turn. A client is never left with an open,
silent socket. A gone client (410) stops the posting but not the reading: the answer is still
persisted, and a client that resumes on a new connection is attached and gets it all again.
"""
from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from chalicelib.gateway import ConnectionGone
from chalicelib.logs import logger
from chalicelib.protocol import Event
from chalicelib.retry import backoff_s
from chalicelib.turns.outbox import EventBuilder, Outbox

Post = Callable[[str, Event], None]  # (connection id, event)
Close = Callable[[str], None]  # close a connection (the management API's DELETE)


@dataclass(frozen=True)
class PostRetries:
    """How hard the relay tries one event before it gives up on the connection."""

    attempts: int = 6
    base_s: float = 0.25  # the first pause; pauses double up to cap_s, with jitter
    cap_s: float = 4.0


def _never_close(connection_id: str) -> None:
    return None


class Relay:
    def __init__(
        self,
        post: Post,
        outbox: Outbox,
        connection_id: str,
        clock: Callable[[], float] = time.monotonic,
        close: Close = _never_close,
        retries: PostRetries = PostRetries(),
    ) -> None:
        self._post = post
        self._close = close
        self._retries = retries
        self._outbox = outbox
        self._clock = clock
        self._cv = threading.Condition()
        # The poster thread logs with the caller's ids (connection, turn, user).
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name="relay", daemon=True)
        self.connection_id = connection_id
        self.gone = False  # the client left (410): nothing more to post until a resume attaches one
        self.failed: Optional[BaseException] = None  # posts kept failing: the connection was closed
        self._generation = 0  # rises with every attach: events taken before it are not posted after it
        self._notices: List[Tuple[str, Event]] = []  # to other connections, before the next events
        self._abandoned = False
        self._posting = False
        self._last_activity = clock()  # the last post that went through (or the start)
        self.posts = 0  # events that went through: API Gateway bills each (per 32 KB)

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
        """Send the turn again from seq 1 to this connection, and everything from now on."""
        self.follow(connection_id)

    def follow(
        self,
        connection_id: str,
        from_seq: int = 0,
        preamble: Optional[Event] = None,
        notices: Sequence[Tuple[str, Event]] = (),
    ) -> None:
        """A resume: post ``notices`` (to connections no longer served), then ``preamble``, then
        the turn's events after ``from_seq`` again, numbered as before, then the rest, to
        ``connection_id``. It may be the same connection: it wants the replay too. Whatever was
        taken for the previous connection and not yet posted is not posted anymore."""
        with self._cv:
            if self._outbox.terminal_taken:
                return
            self._notices.extend(notices)
            self.connection_id = connection_id
            self.gone = False
            self.failed = None
            self._generation += 1
            self._outbox.rewind(from_seq, preamble)
            self._cv.notify_all()

    def quiet_for(self) -> float:
        """Seconds since the client was last sent anything."""
        with self._cv:
            return self._clock() - self._last_activity

    def aside(self, event: Event) -> None:
        """Post an event outside the turn's numbering (``progress``) as soon as the poster is free."""
        with self._cv:
            self._outbox.add_aside(event)
            self._last_activity = self._clock()
            self._cv.notify_all()

    def restore(self, text: str, ends: Sequence[Optional[int]], extras: Dict[str, Event]) -> None:
        """Continue the numbering of a turn an earlier run streamed (see ``Outbox.restore``)."""
        with self._cv:
            self._outbox.restore(text, ends, extras)
            self._cv.notify_all()

    def numbering(self) -> Tuple[List[Optional[int]], Dict[str, Event]]:
        """How the answer has been numbered so far, to persist: seq ends and the other events."""
        with self._cv:
            return self._outbox.ends, self._outbox.extras()

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
            self._abandoned = True
            self._cv.notify_all()

    def close(self, build_terminal: EventBuilder) -> None:
        """Queue the terminal event; the relay thread posts it and everything before it, then ends."""
        with self._cv:
            self._outbox.close(build_terminal)
            self._cv.notify_all()

    # ---- the poster thread

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
                connection_id, generation = self.connection_id, self._generation
                dropped = self.gone or self.failed is not None
                notices, self._notices = self._notices, []
            try:
                self._post_notices(notices)
                if not dropped:  # else numbered and persisted, but nobody to send them to (until a resume)
                    self._post_all(connection_id, generation, events)
            finally:
                with self._cv:
                    self._posting = False
                    self._cv.notify_all()

    def _post_notices(self, notices: List[Tuple[str, Event]]) -> None:
        for connection_id, event in notices:
            try:
                self._post(connection_id, event)
            except ConnectionGone:
                pass
            except Exception as exc:  # noqa: BLE001 - a courtesy to a connection no longer served
                logger.warning("could not post a notice", extra={"error": type(exc).__name__})

    def _stale(self, generation: int) -> bool:
        """Taken for a connection the turn no longer streams to (or for a turn no longer ours)."""
        return generation != self._generation or self._abandoned

    def _post_all(self, connection_id: str, generation: int, events: List[Event]) -> None:
        for event in events:
            if not self._deliver(connection_id, generation, event):
                return

    def _deliver(self, connection_id: str, generation: int, event: Event) -> bool:
        """Post one event, retrying failures; False when nothing more should go to this connection."""
        retries = self._retries
        for attempt in range(retries.attempts):
            with self._cv:
                if self._stale(generation):
                    return False
            try:
                self._post(connection_id, event)
                with self._cv:
                    self._last_activity = self._clock()
                    self.posts += 1
                return True
            except ConnectionGone:
                with self._cv:
                    self.gone = self.gone or not self._stale(generation)
                return False
            except Exception as exc:  # noqa: BLE001 - a post failure must not kill the turn
                logger.warning("post failed", extra={"error": type(exc).__name__, "attempt": attempt + 1})
                if attempt + 1 == retries.attempts:
                    self._give_up(connection_id, generation, exc)
                    return False
                with self._cv:  # an attach or abandon ends the pause early
                    self._cv.wait(backoff_s(attempt, retries.base_s, retries.cap_s))
        return False

    def _give_up(self, connection_id: str, generation: int, exc: BaseException) -> None:
        """The connection keeps refusing events: close it, so its client reconnects and resumes."""
        with self._cv:
            if self._stale(generation):
                return
            self.failed = exc
        logger.warning("posts keep failing; closing the connection so the client resumes", extra={"error": type(exc).__name__})
        try:
            self._close(connection_id)
        except ConnectionGone:
            with self._cv:
                self.gone = True
        except Exception:  # noqa: BLE001 - nothing else can be done; the client's idle timeout remains
            logger.exception("could not close the connection")
