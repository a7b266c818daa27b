"""Waiting on a condition instead of the wall clock.

A test never sleeps to let another thread get ahead: it waits until what it needs is true (with a
deadline, so a bug fails the test instead of hanging it), or hands a component a clock it moves
itself.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

POLL_S = 0.01  # between two looks at the condition; only ever a look, never an ordering


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, message: str = "", poll_s: float = POLL_S) -> T:
    """Return the predicate's first truthy value; fail the test if it stays falsy for ``timeout`` s.
    ``poll_s``: a longer pause between looks for a predicate that costs a request (a REST poll)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"not true within {timeout} s: {getattr(predicate, '__name__', predicate)}")
        time.sleep(poll_s)  # a pause between two looks at the condition: whatever it waits for
        # happens in other threads or processes at their own pace, and the test goes on only once
        # it holds, so the pause can delay a test but never decide what happens first


class ManualClock:
    """A monotonic clock that moves only when told to (for ``Relay(clock=...)`` and the like).

    It starts at the real monotonic time of its first reading, so durations measured between
    ``time.monotonic()`` before it and this clock after it are never negative.
    """

    def __init__(self, start: Optional[float] = None) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            if self._now is None:
                self._now = time.monotonic()
            return self._now

    def advance(self, seconds: float) -> None:
        self()  # a clock advanced before its first reading starts from now
        with self._lock:
            assert self._now is not None
            self._now += seconds
