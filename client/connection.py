"""The client's WebSocket: opened with the token, reopened with backoff after a drop.

It knows nothing of turns or terminals. Callers see ``Refused`` (the token: final), ``Lost`` (gone
and could not be reopened: final) or ``Dropped`` (gone for now: ``reopen()`` may bring it back);
reconnect attempts are told to a ``ReconnectListener`` so the caller decides what to show.
"""
from __future__ import annotations

import contextlib
import json
import random
import time
from typing import Any, Callable, Dict, Optional, Protocol
from urllib.parse import quote


class Refused(Exception):
    """The server refused the WebSocket handshake (HTTP 401/403: the token)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Lost(Exception):
    """The connection is gone and could not be reopened."""


class Dropped(Exception):
    """The open connection closed under us; ``reopen()`` may bring it back."""


class ReconnectListener(Protocol):
    """Told about each reconnect attempt (a person waiting wants to know why nothing arrives)."""

    def reconnecting(self, delay_s: float, attempt: int, attempts: int) -> None: ...

    def reconnected(self) -> None: ...


class Silent:
    """A ReconnectListener for callers with nobody to tell (tests, benchmarks)."""

    def reconnecting(self, delay_s: float, attempt: int, attempts: int) -> None:
        pass

    def reconnected(self) -> None:
        pass


def url_with_token(base: str, token: str) -> str:
    """Browsers cannot set headers on a WebSocket, so the token travels in the query string."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}token={quote(token, safe='')}"


class Connection:
    """One WebSocket that reopens itself: backoff with jitter, at most ``attempts`` tries in a row.

    ``sleep`` is injectable so tests can run the backoff without waiting for it.
    """

    def __init__(
        self,
        url: str,
        token: str,
        attempts: int = 8,
        base_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        listener: Optional[ReconnectListener] = None,
    ) -> None:
        self.url = url
        self.token = token
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep
        self.listener: ReconnectListener = listener if listener is not None else Silent()
        self.ws: Any = None
        self.reconnects = 0
        self._open = contextlib.ExitStack()

    def open(self) -> None:
        """The first connection: a refusal is final (Refused), anything else is Lost."""
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        try:
            url = url_with_token(self.url, self.token)
            self.ws = self._open.enter_context(connect(url, open_timeout=10, max_size=None))
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise Refused(status) from None
            raise Lost(f"the server answered HTTP {status}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise Lost(str(exc) or type(exc).__name__) from None

    def delay_s(self, attempt: int) -> float:
        """Exponential with jitter, so clients cut off together do not all come back together."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0**attempt)
        return ceiling / 2 + random.random() * ceiling / 2

    def reopen(self) -> None:
        """After a drop: try again with backoff; raise Lost when the attempts run out."""
        self.close()
        for attempt in range(self.attempts):
            delay = self.delay_s(attempt)
            self.listener.reconnecting(delay, attempt + 1, self.attempts)
            self.sleep(delay)
            try:
                self.open()
            except Lost:
                continue
            self.reconnects += 1
            self.listener.reconnected()
            return
        raise Lost(f"could not reconnect after {self.attempts} attempts")

    def send(self, message: Dict[str, Any]) -> None:
        """Send one JSON message; Dropped if the connection has closed."""
        from websockets.exceptions import ConnectionClosed

        try:
            self.ws.send(json.dumps(message))
        except ConnectionClosed:
            raise Dropped() from None

    def recv(self, timeout: float) -> Optional[Dict[str, Any]]:
        """The next frame as a dict ({} if it is not a JSON object), None if none came within
        ``timeout`` (short waits let the caller notice Ctrl-C and deadlines); Dropped if closed."""
        from websockets.exceptions import ConnectionClosed

        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed:
            raise Dropped() from None
        try:
            event = json.loads(raw)
        except ValueError:
            return {}
        return event if isinstance(event, dict) else {}

    def close(self) -> None:
        if self.ws is not None:
            self.ws = None
            try:
                self._open.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
