"""One client WebSocket connection as API Gateway tracks it.

A connection is CONNECTING while its ``$connect`` integration runs (the management
API answers 410 then, as on AWS), OPEN once the handshake completed, CLOSED after.
Everything sent to the client goes through one FIFO queue, so posts arrive in the
order API Gateway received them, each after the emulator's post latency, and every
delivered frame is recorded for tests.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devserver.apigw.events import ConnectionFacts, epoch_ms

log = logging.getLogger("devserver.apigw")


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class GoneError(Exception):
    """The connection is not (or no longer) open: the management API answers 410."""


@dataclass
class DeliveryLog:
    """What reached one client: every text frame (if kept), and the size of every post."""

    messages: list[str] = field(default_factory=list)
    post_sizes: list[int] = field(default_factory=list)


@dataclass
class _Outbound:
    text: str
    size: int
    deliver_at: float  # loop time
    is_post: bool
    future: asyncio.Future[None]


class Connection:
    """A connection's state, its outbound queue, and who closed it and why."""

    def __init__(self, facts: ConnectionFacts, request: web.Request, *,
                 keep_messages: bool = True) -> None:
        self.facts = facts
        self.keep_messages = keep_messages
        self.request = request
        self.state = State.CONNECTING
        self.ws: web.WebSocketResponse | None = None
        self.last_active_at = facts.connected_at
        #: (code, reason) when the server side closed it; None when the client did.
        self.server_close: tuple[int, str] | None = None
        #: (code, reason) from the client's close frame, when it sent one.
        self.client_close: tuple[int, str] | None = None
        self.log = DeliveryLog()
        #: The $default invocations still waiting for their integration response.
        self.tasks: set[asyncio.Task[Any]] = set()
        self.done = asyncio.Event()
        self._queue: asyncio.Queue[_Outbound] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._upgraded = asyncio.Event()

    @property
    def connection_id(self) -> str:
        return self.facts.connection_id

    def touch(self) -> None:
        """Note activity, for GetConnection's ``lastActiveAt``."""
        self.last_active_at = epoch_ms()

    def opened(self, ws: web.WebSocketResponse) -> None:
        """$connect accepted it: posts are taken from now on (the 101 is about to go out)."""
        self.ws = ws
        self.state = State.OPEN
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def upgraded(self) -> None:
        """The 101 response went out: frames may flow."""
        self._upgraded.set()

    def enqueue(self, text: str, *, delay: float = 0.0, is_post: bool = False,
                size: int | None = None) -> asyncio.Future[None]:
        """Queue one text frame; the future resolves once it was written (or Gone)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self.state is not State.OPEN:
            future.set_exception(GoneError(self.connection_id))
            return future
        size = len(text.encode("utf-8")) if size is None else size
        self._queue.put_nowait(_Outbound(text, size, loop.time() + delay, is_post, future))
        return future

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        await self._upgraded.wait()
        while True:
            item = await self._queue.get()
            try:
                wait = item.deliver_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                assert self.ws is not None
                if self.state is not State.OPEN or self.ws.closed:
                    raise GoneError(self.connection_id)
                await self.ws.send_str(item.text)
            except asyncio.CancelledError:
                _settle(item.future, GoneError(self.connection_id))
                raise
            except Exception as exc:  # noqa: BLE001 - a write to a closing socket fails many ways: the client is gone
                log.debug("delivery to %s failed: %r", self.connection_id, exc)
                _settle(item.future, GoneError(self.connection_id))
            else:
                if self.keep_messages:
                    self.log.messages.append(item.text)
                if item.is_post:
                    self.log.post_sizes.append(item.size)
                    self.touch()
                _settle(item.future, None)

    async def close(self, code: int, reason: str) -> None:
        """Close from the server side with a close frame (DeleteConnection, timeouts, stop)."""
        if self.server_close is None:
            self.server_close = (code, reason)
        ws = self.ws
        if ws is not None and not ws.closed:
            await ws.close(code=code, message=reason.encode("utf-8"))

    def abort(self, code: int = 1006, reason: str = "Connection dropped") -> None:
        """Cut the TCP connection without a close frame, as a network failure would."""
        if self.server_close is None:
            self.server_close = (code, reason)
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def closed(self) -> None:
        """Mark it CLOSED: stop delivering and fail what is still queued with Gone."""
        self.state = State.CLOSED
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        while not self._queue.empty():
            _settle(self._queue.get_nowait().future, GoneError(self.connection_id))


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
