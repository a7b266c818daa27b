"""A local API Gateway WebSocket API (and REST API) in front of a Chalice app's handlers.

Dev only, never deployed. It calls the handlers Chalice registered exactly as API
Gateway's Lambda proxy integration would (same event shapes, a Lambda-like
context, blocking calls in a thread pool, the 29 s integration timeout and its
``Endpoint request timed out`` frame, the 128 KB message limit, idle and maximum
connection lifetimes) and serves the management API (``@connections``) that the
app posts answers to. One aiohttp server on one loopback port carries the
WebSocket endpoint, the management API, the app's REST API (``rest.py``: its ``@app.route``s
under ``/<stage>/``, as API Gateway's REST API with a Lambda proxy integration serves them)
and, optionally, the static web client.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_websocket import WebSocketError

from devserver import redact
from devserver.apigw import events
from devserver.apigw.connection import Connection, DeliveryLog, State
from devserver.apigw.integration import LambdaIntegration
from devserver.apigw.management import Faults, ManagementApi
from devserver.apigw.rest import RestApi

log = logging.getLogger("devserver.apigw")

#: How long a server-side close waits for the client's close frame.
_CLOSE_HANDSHAKE_WAIT = 2.0


class ApiGatewayEmulator:
    """API Gateway WebSocket API + Lambda proxy integrations for one Chalice app.

    Use ``with ApiGatewayEmulator(app) as gw:`` (or ``start()``/``stop()``); clients
    connect to ``gw.ws_url``; the app's management client uses
    ``endpoint_url=gw.management_url``; REST clients call ``gw.rest_url`` + ``/v1/...``.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 api_id: str = "local", rest_api_id: str = "localrest", stage: str = "local",
                 integration_timeout: float = 29.0, idle_timeout: float = 600.0,
                 max_connection_duration: float = 7200.0, post_latency: float = 0.0,
                 frame_limit: int = 32 * 1024, message_limit: int = 128 * 1024,
                 static_dir: str | None = None, max_workers: int = 64,
                 keep_messages: bool = True) -> None:
        self.app = app
        self.host = host
        self.api_id = api_id
        self.rest_api_id = rest_api_id  # another API than the WebSocket one, as once deployed
        self.stage = stage
        self.integration_timeout = integration_timeout
        self.idle_timeout = idle_timeout
        self.max_connection_duration = max_connection_duration
        self.post_latency = post_latency
        self.frame_limit = frame_limit
        self.message_limit = message_limit
        self.static_dir = Path(static_dir).resolve() if static_dir else None
        # JSON files made at run time, served before static_dir's (the page's config.json with AUTH=cognito).
        self.generated_files: dict[str, bytes] = {}
        self.keep_messages = keep_messages  # False for long benchmarks: sizes only
        self.faults = Faults()
        self._requested_port = port
        self._port: int | None = None
        self._integration = LambdaIntegration(app, stage=stage,
                                              integration_timeout=integration_timeout,
                                              max_workers=max_workers)
        self._conns: dict[str, Connection] = {}
        self._logs: dict[str, DeliveryLog] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._management = ManagementApi(
            stage=stage, lookup=self._conns.get, message_limit=message_limit,
            post_latency=post_latency, faults=self.faults)
        self._rest = RestApi(app, self._integration, api_id=rest_api_id, stage=stage)

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> ApiGatewayEmulator:
        """Serve on a daemon thread's own event loop; return once listening."""
        if self._thread is not None:
            raise RuntimeError("already started")
        redact.install_log_filters()  # aiohttp logs bad request lines, ?token= included
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve(sock))
            except BaseException as exc:  # noqa: BLE001 - report it to start(), do not die silently
                failure.append(exc)
                sock.close()
                started.set()
                return
            started.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"apigw-{self._port}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        log.info("API Gateway emulator listening on %s (management %s)",
                 self.ws_url, self.management_url)
        return self

    async def _serve(self, sock: socket.socket) -> None:
        server = web.Application(client_max_size=max(self.message_limit * 2, 1024 ** 2))
        server.add_routes(self._management.routes())
        server.add_routes(self._rest.routes())  # before the catch-all GET: /<stage>/v1/... is the API's
        server.router.add_get("/{tail:.*}", self._handle_get)
        self._runner = web.AppRunner(server, handle_signals=False,
                                     access_log=logging.getLogger("aiohttp.access"),
                                     access_log_class=_AccessLogger, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        """Close every connection (each gets its $disconnect), then stop serving."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        timeout = self.integration_timeout + 10.0
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._integration.shutdown()
            log.info("API Gateway emulator on port %s stopped", self._port)

    async def _shutdown(self) -> None:
        self._stopping = True
        conns = list(self._conns.values())
        await asyncio.gather(*(c.close(WSCloseCode.GOING_AWAY, "Going away")
                               for c in conns), return_exceptions=True)
        # Each connection's own task runs its $disconnect; wait for them to finish.
        if conns:
            waits = [asyncio.ensure_future(c.done.wait()) for c in conns]
            _, pending = await asyncio.wait(waits, timeout=self.integration_timeout + 1.0)
            for waiter in pending:
                waiter.cancel()
        for conn in conns:
            for task in list(conn.tasks):
                task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> ApiGatewayEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- public facts for the stack and for tests ------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("not started")
        return self._port

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.stage}"

    @property
    def rest_url(self) -> str:
        """The REST API's base URL, as a deployed stage's invoke URL (``.../<stage>``)."""
        return f"http://{self.host}:{self.port}/{self.stage}"

    @property
    def connections(self) -> dict[str, Connection]:
        """The connections API Gateway knows now (CONNECTING or OPEN), by id."""
        return dict(self._conns)

    @property
    def open_ids(self) -> list[str]:
        """Ids of the connections that are open (handshake done, not closed yet)."""
        return [cid for cid, c in list(self._conns.items()) if c.state is State.OPEN]

    @property
    def open_count(self) -> int:
        return len(self.open_ids)

    def delivered(self, connection_id: str) -> list[str]:
        """Every text frame delivered to that connection (posts and API Gateway's own)."""
        log_ = self._logs.get(connection_id)
        return list(log_.messages) if log_ else []

    @property
    def sent_sizes(self) -> dict[str, list[int]]:
        """Byte size of every post delivered, per connection id (closed ones included)."""
        return {cid: list(dl.post_sizes) for cid, dl in list(self._logs.items())}

    @property
    def post_count(self) -> int:
        return sum(len(sizes) for sizes in self.sent_sizes.values())

    @property
    def max_post_bytes(self) -> int:
        return max((max(s) for s in self.sent_sizes.values() if s), default=0)

    @property
    def posts_over_frame_limit(self) -> int:
        """Posts larger than one API Gateway frame (32 KB): the app should split those."""
        return sum(1 for s in self.sent_sizes.values() for n in s if n > self.frame_limit)

    def drop(self, connection_id: str) -> bool:
        """Cut a connection abruptly (no close frame); False if it is not open."""
        async def drop() -> bool:
            conn = self._open_connection(connection_id)
            if conn is not None:
                conn.abort()
            return conn is not None
        return self._run(drop())

    def close_connection(self, connection_id: str, code: int = 1001,
                         reason: str = "Going away") -> bool:
        """Close a connection from the server side with a close frame; False if not open."""
        async def close() -> bool:
            conn = self._open_connection(connection_id)
            if conn is not None:
                await conn.close(code, reason)
            return conn is not None
        return self._run(close())

    def _open_connection(self, connection_id: str) -> Connection | None:
        conn = self._conns.get(connection_id)
        return conn if conn is not None and conn.state is State.OPEN else None

    def _run(self, coroutine: Coroutine[Any, Any, bool]) -> bool:
        """Run a coroutine on the server's loop from another thread; wait for it."""
        if self._loop is None:
            raise RuntimeError("not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10.0)

    # ---- the WebSocket endpoint ------------------------------------------------

    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"].strip("/")
        probe = web.WebSocketResponse()
        if probe.can_prepare(request).ok:
            if tail not in ("", self.stage):
                return web.Response(status=403, text='{"message":"Forbidden"}')
            return await self._handle_websocket(request)
        return self._static(tail)

    def _static(self, tail: str) -> web.StreamResponse:
        if tail in self.generated_files:
            return web.Response(body=self.generated_files[tail], content_type="application/json",
                                headers={"Cache-Control": "no-store"})
        if self.static_dir is None:
            raise web.HTTPNotFound()
        path = (self.static_dir / (tail or "index.html")).resolve()
        if path.is_dir():
            path = path / "index.html"
        if not path.is_relative_to(self.static_dir) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        """The life of one connection: $connect, the upgrade, messages, $disconnect."""
        now = time.time()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        facts = events.ConnectionFacts(
            connection_id=events.new_id(), api_id=self.api_id, stage=self.stage,
            domain_name=request.host, source_ip=peer[0] if peer else "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""), connected_at=events.epoch_ms(now))
        conn = Connection(facts, request, keep_messages=self.keep_messages)
        self._conns[facts.connection_id] = conn
        try:
            upgraded = await self._connect(conn, request, now)
            if isinstance(upgraded, web.Response):
                return upgraded
            ws = upgraded
            self._logs[facts.connection_id] = conn.log
            conn.opened(ws)  # before the 101 goes out: a client that has it may be posted to
            await ws.prepare(request)
            conn.upgraded()
            await self._receive_loop(conn, ws)
            return ws
        finally:
            self._conns.pop(facts.connection_id, None)
            if conn.state is not State.CONNECTING:
                await conn.closed()
                await self._disconnect(conn)
            conn.state = State.CLOSED
            conn.done.set()

    async def _connect(self, conn: Connection, request: web.Request,
                       now: float) -> web.WebSocketResponse | web.Response:
        """Run $connect: a response refusing the handshake, or the WebSocket to upgrade to."""
        facts = conn.facts
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                       for k, v in request.raw_headers]
        proxy_headers = [("X-Amzn-Trace-Id", events.trace_id(now)),
                         ("X-Forwarded-For", facts.source_ip),
                         ("X-Forwarded-Port", str(self.port)), ("X-Forwarded-Proto", "http")]
        request_id = events.new_id()
        event = events.connect_event(facts, raw_headers + proxy_headers,
                                     request.rel_url.query.items(), request_id=request_id)
        outcome = await self._integration.invoke("$connect", event, request_id)
        status = outcome.status if outcome is not None else 200
        log.info("CONNECT %s -> %d (%.1f ms)", facts.connection_id, status,
                 outcome.elapsed_ms if outcome else 0.0)
        if not 200 <= status < 300 or self._stopping:
            status = 503 if self._stopping and 200 <= status < 300 else status
            body = '{"message":"Forbidden"}' if status in (401, 403) else \
                '{"message":"Internal server error"}' if status >= 500 else ""
            return web.Response(status=status, text=body, content_type="application/json")
        ws = web.WebSocketResponse(
            # aiohttp refuses a message of exactly max_msg_size; AWS accepts 128 KB itself.
            max_msg_size=self.message_limit + 1, compress=False, autoping=True,
            timeout=_CLOSE_HANDSHAKE_WAIT,
            protocols=_subprotocols(outcome.response if outcome else None))
        return ws

    async def _receive_loop(self, conn: Connection, ws: web.WebSocketResponse) -> None:
        """Route each client message; close on idle, on lifetime's end, or on errors."""
        loop = asyncio.get_running_loop()
        expires_at = loop.time() + self.max_connection_duration
        while True:
            left = expires_at - loop.time()
            if left <= 0:
                log.info("MAX DURATION %s: open for %.1f s", conn.connection_id,
                         self.max_connection_duration)
                await conn.close(WSCloseCode.GOING_AWAY, "Going away")
                return
            try:
                # Any client frame, pings included, restarts this wait.
                msg = await ws.receive(timeout=max(min(self.idle_timeout, left), 0.001))
            except TimeoutError:
                if loop.time() < expires_at:  # else the next turn closes it for its age
                    log.info("IDLE %s: no frames for %.1f s", conn.connection_id,
                             self.idle_timeout)
                    await conn.close(WSCloseCode.GOING_AWAY, "Going away")
                    return
                continue
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                conn.touch()
                if msg.type is WSMsgType.TEXT:
                    body, is_b64 = msg.data, False
                else:
                    body, is_b64 = base64.b64encode(msg.data).decode("ascii"), True
                task = loop.create_task(self._route_message(conn, body, is_b64))
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
            elif msg.type is WSMsgType.CLOSE:
                conn.client_close = (int(msg.data or WSCloseCode.OK), msg.extra or "")
                return
            elif msg.type is WSMsgType.ERROR:
                exc = msg.data
                if isinstance(exc, WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG:
                    log.info("TOO BIG %s: message over %d bytes, closed with 1009",
                             conn.connection_id, self.message_limit)
                    conn.server_close = conn.server_close or (1009, "Message too big")
                return
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                return

    async def _route_message(self, conn: Connection, body: str, is_b64: bool) -> None:
        """$default: call the handler; tell the client if the integration fails or times out."""
        request_id = events.new_id()
        event = events.message_event(conn.facts, body, is_base64=is_b64,
                                     request_id=request_id)
        outcome = await self._integration.invoke("$default", event, request_id)
        if outcome is None:
            log.info("MESSAGE %s: no $default route", conn.connection_id)
            self._gateway_frame(conn, "Forbidden", request_id)
            return
        if outcome.timed_out:
            log.info("MESSAGE %s %s: integration timed out after %.1f s (handler runs on)",
                     conn.connection_id, request_id, self.integration_timeout)
            self._gateway_frame(conn, "Endpoint request timed out", request_id)
        elif outcome.error is not None:
            self._gateway_frame(conn, "Internal server error", request_id)
        else:
            log.info("MESSAGE %s %s -> %d (%.1f ms)", conn.connection_id, request_id,
                     outcome.status, outcome.elapsed_ms)

    def _gateway_frame(self, conn: Connection, message: str, request_id: str) -> None:
        frame = events.gateway_error_frame(message, conn.connection_id, request_id)
        conn.enqueue(frame).add_done_callback(_consume)

    async def _disconnect(self, conn: Connection) -> None:
        """$disconnect, best effort: errors are logged, never raised."""
        code, reason = conn.server_close or conn.client_close or \
            (WSCloseCode.ABNORMAL_CLOSURE, "Connection closed abnormally")
        request_id = events.new_id()
        event = events.disconnect_event(conn.facts, int(code), reason,
                                        request_id=request_id)
        outcome = await self._integration.invoke("$disconnect", event, request_id)
        lifetime = time.time() - conn.facts.connected_at / 1000
        log.info("DISCONNECT %s code=%d reason=%r after %.1f s -> %s (%.1f ms)",
                 conn.connection_id, code, reason, lifetime,
                 outcome.status if outcome else "no handler",
                 outcome.elapsed_ms if outcome else 0.0)


class _AccessLogger(AbstractAccessLogger):
    """One line per request: method, path, status, size, time, and never the query string.

    aiohttp's default format (``%r``, the request line) would log ``?token=JWT``. Written to
    ``aiohttp.access`` at INFO, which ``python -m devserver`` silences; off when not enabled.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s -> %d (%d bytes, %.1f ms)", request.remote, request.method,
                         request.path, response.status, response.body_length, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def _subprotocols(response: Any) -> tuple[str, ...]:
    """The subprotocol a $connect response selected (API Gateway echoes its header)."""
    headers = response.get("headers") if isinstance(response, dict) else None
    for name, value in (headers or {}).items():
        if name.lower() == "sec-websocket-protocol" and value:
            return (str(value),)
    return ()


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve a fire-and-forget delivery's outcome so asyncio does not warn about it."""
    if not future.cancelled():
        future.exception()
