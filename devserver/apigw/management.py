"""The API Gateway Management API (``@connections``) as botocore's client calls it.

``apigatewaymanagementapi`` with ``endpoint_url=<emulator>/<stage>`` sends
``POST|GET|DELETE /<stage>/@connections/<id>`` signed with SigV4; any signature is
accepted. Errors are answered the way AWS answers them (status, ``x-amzn-ErrorType``
header, JSON ``{"message": ...}``) so boto3 raises its modelled exceptions
(``client.exceptions.GoneException``, ...) and its retry logic behaves as on AWS.
Faults can be injected to test how an app copes with throttling.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from devserver.apigw.connection import Connection, GoneError, State
from devserver.apigw.events import iso8601

log = logging.getLogger("devserver.apigw")

#: How long a DELETE waits for the close handshake before answering anyway.
_DELETE_CLOSE_WAIT = 5.0


def error_response(status: int, error_type: str, message: str) -> web.Response:
    """A modelled AWS error as a rest-json service sends it."""
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type},
    )


@dataclass(frozen=True)
class Fault:
    """One injected failure: the HTTP status and modelled error a call gets instead."""

    status: int
    error: str
    message: str
    connection_id: str | None  # None: whichever connection is posted to next


class Faults:
    """Failures to inject into the management API (thread-safe: tests call it directly)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[Fault] = []
        self.injected = 0

    def fail_next_posts(self, n: int, status: int = 429,
                        error: str = "LimitExceededException",
                        message: str = "Rate exceeded", *,
                        connection_id: str | None = None) -> None:
        """Make the next ``n`` PostToConnection calls (to ``connection_id``, or any) fail.

        Note that botocore retries throttling errors (LimitExceededException, 429)
        on its own: with its default retry config ``n=1`` is invisible to the app.
        """
        with self._lock:
            self._posts.extend(Fault(status, error, message, connection_id) for _ in range(n))

    def clear(self) -> None:
        """Forget the faults not yet used."""
        with self._lock:
            self._posts.clear()

    def take_post_fault(self, connection_id: str) -> Fault | None:
        """The fault this post should get, consuming it; None to proceed normally."""
        with self._lock:
            for i, fault in enumerate(self._posts):
                if fault.connection_id in (None, connection_id):
                    del self._posts[i]
                    self.injected += 1
                    return fault
        return None


class ManagementApi:
    """The ``@connections`` routes, served by the emulator's aiohttp app."""

    def __init__(self, *, stage: str, lookup: Callable[[str], Connection | None],
                 message_limit: int, post_latency: float, faults: Faults) -> None:
        self.stage = stage
        self.message_limit = message_limit
        self.post_latency = post_latency
        self.faults = faults
        self._lookup = lookup

    def routes(self) -> list[web.RouteDef]:
        """Routes for both spellings some SDKs use (``@`` and ``%40``; aiohttp decodes both)."""
        path = "/{stage}/@connections/{connection_id}"
        return [web.post(path, self.post), web.get(path, self.get, allow_head=False),
                web.delete(path, self.delete)]

    def _open_connection(self, request: web.Request) -> Connection | web.Response:
        """The open connection the URL names, or the error response AWS would give."""
        if request.match_info["stage"] != self.stage:
            return error_response(403, "ForbiddenException", "Forbidden")
        connection_id = request.match_info["connection_id"]
        conn = self._lookup(connection_id)
        if conn is None or conn.state is not State.OPEN:
            return error_response(410, "GoneException", f"Connection {connection_id} is gone")
        return conn

    async def post(self, request: web.Request) -> web.Response:
        """PostToConnection: deliver the body as one text message, in arrival order."""
        length = request.content_length
        if length is not None and length > self.message_limit:
            return self._too_large(length)
        data = await _read_body(request, self.message_limit + 1)
        if len(data) > self.message_limit:
            return self._too_large(len(data))
        found = self._open_connection(request)
        if isinstance(found, web.Response):
            return found
        fault = self.faults.take_post_fault(found.connection_id)
        if fault is not None:
            log.info("POST %s -> injected %d %s", found.connection_id, fault.status, fault.error)
            return error_response(fault.status, fault.error, fault.message)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("POST %s: data is not UTF-8; delivered with replacement characters",
                        found.connection_id)
            text = data.decode("utf-8", errors="replace")
        delivered = found.enqueue(text, delay=self.post_latency, is_post=True, size=len(data))
        try:
            await delivered
        except GoneError:
            return error_response(410, "GoneException", f"Connection {found.connection_id} is gone")
        return web.Response(status=200)

    def _too_large(self, size: int) -> web.Response:
        return error_response(413, "PayloadTooLargeException",
                              f"Message of {size} bytes exceeds the limit of "
                              f"{self.message_limit} bytes")

    async def get(self, request: web.Request) -> web.Response:
        """GetConnection: when it connected, who it is, when it was last active."""
        found = self._open_connection(request)
        if isinstance(found, web.Response):
            return found
        facts = found.facts
        return web.json_response({
            "connectedAt": iso8601(facts.connected_at),
            "identity": {"sourceIp": facts.source_ip, "userAgent": facts.user_agent},
            "lastActiveAt": iso8601(found.last_active_at),
        })

    async def delete(self, request: web.Request) -> web.Response:
        """DeleteConnection: close it (its $disconnect follows) and answer 204."""
        found = self._open_connection(request)
        if isinstance(found, web.Response):
            return found
        log.info("DELETE %s", found.connection_id)
        try:
            await asyncio.wait_for(found.close(1000, ""), _DELETE_CLOSE_WAIT)
        except TimeoutError:
            found.abort(1000, "")
        return web.Response(status=204)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, up to ``limit`` bytes: one ``read`` returns only what has arrived so far."""
    parts = []
    size = 0
    while size < limit:
        part = await request.content.read(limit - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)
