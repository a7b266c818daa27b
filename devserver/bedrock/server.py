"""The Bedrock emulator's HTTP side: one loopback server routing to the emulated APIs.

Each streaming request is validated by its API module (``agents``, ``converse``, ``agentcore``),
which returns a plan; the handler sends every frame of that plan as its own HTTP chunk as soon as
it is due, so the app's streaming is exercised against botocore's real parsers. The knowledge
base's JSON operations (``ingestion``: bedrock-agent's ingestion jobs; ``retrieve``: Retrieve)
answer one JSON body. ``GET /ping`` answers 200 for readiness checks; any other request without
an Authorization header gets 403 (any signature is accepted, unchecked).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import socketserver
import sys
import threading
import traceback
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from devserver.bedrock import agentcore, agents, converse, ingestion, retrieve
from devserver.bedrock.knowledge import (
    DEFAULT_INGESTION_DELAY, LOCAL_DOCUMENTS_BUCKET, KnowledgeBase, KnowledgeBaseConfig,
)
from devserver.redact import redact
from devserver.bedrock.agents import MAX_INPUT_CHARS
from devserver.bedrock.errors import ServiceError
from devserver.bedrock.scenarios import Pacing, Plan, check_throttle

__all__ = ["BedrockEmulator", "RecordedRequest", "main"]

_EVENTSTREAM = "application/vnd.amazon.eventstream"


class RecordedRequest(NamedTuple):
    """One request the emulator saw (a 3-tuple, so it unpacks as such)."""

    operation: str
    path: str  # percent-decoded
    body: dict[str, Any]

    def uri_params(self) -> dict[str, str]:
        """The URI labels, e.g. ``{"sessionId": ...}`` for InvokeAgent."""
        decoded = ((agents.PATH, agents.URI_LABELS), (converse.DECODED_PATH, converse.URI_LABELS))
        for pattern, names in decoded:
            if match := pattern.match(self.path):
                return dict(zip(names, match.groups(), strict=True))
        return {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: BedrockEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse-DNS lookup (socket.getfqdn), slow offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver's report of a handler bug, redacted: the traceback may quote the request."""
        if self.emulator.verbose:
            print(f"Exception while serving {client_address}:\n" + redact(traceback.format_exc()),
                  file=sys.stderr, flush=True)


class BedrockEmulator:
    """Bedrock InvokeAgent + ConverseStream + InvokeAgentRuntime over loopback HTTP/1.1, and with
    ``knowledge_base`` a knowledge base: ingestion jobs (bedrock-agent), Retrieve and ``!kb``.

    Thread-safe: each connection is served by its own daemon thread; shared
    state (recorded requests, sessions already throttled) sits behind a lock.
    The three operation methods are the extension points (``bench.agent.RecordingBedrock``
    wraps ``invoke_agent``): each validates, applies throttling and returns the plan to send.
    Without ``knowledge_base`` every knowledge base id is a ResourceNotFoundException.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        first_token_delay: float = 0.0,
        chunk_delay: float = 0.01,
        max_input_chars: int = MAX_INPUT_CHARS,
        knowledge_base: KnowledgeBaseConfig | None = None,
        verbose: bool = False,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the Bedrock emulator binds to 127.0.0.1 only")
        self.port = port
        self.first_token_delay = first_token_delay
        self.chunk_delay = chunk_delay
        self.max_input_chars = max_input_chars
        self.verbose = verbose
        self.knowledge = KnowledgeBase(knowledge_base) if knowledge_base is not None else None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._throttled_once: set[tuple[str, ...]] = set()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> BedrockEmulator:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"bedrock-emulator:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut in-flight streams and idle keep-alive sockets."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        if self.knowledge is not None:
            self.knowledge.close()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> BedrockEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``endpoint_url=``."""
        if self._server is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self.port}"

    # state shared by handler threads

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests seen so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and ``!throttle-once`` sessions."""
        with self._lock:
            self._requests.clear()
            self._throttled_once.clear()

    def _record(self, operation: str, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(operation, path, body))

    def _first_time(self, key: tuple[str, ...]) -> bool:
        with self._lock:
            if key in self._throttled_once:
                return False
            self._throttled_once.add(key)
            return True

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def _throttle(self, command: str, key: tuple[str, ...]) -> None:
        check_throttle(command, lambda: self._first_time(key))

    def _pacing(self) -> Pacing:
        return Pacing(self.first_token_delay, self.chunk_delay)

    # operations: validate, throttle, then return (response headers, plan)

    def invoke_agent(
        self, agent_id: str, alias_id: str, session_id: str, body: dict[str, Any]
    ) -> tuple[dict[str, str], Plan]:
        """Validate an InvokeAgent request and plan its ``completion`` stream."""
        request = agents.parse_request(agent_id, alias_id, session_id, body, self.max_input_chars, self.knowledge)
        self._throttle(request.command, request.throttle_key)
        return request.headers(), agents.completion(request, self._pacing())

    def converse_stream(self, model_id: str, body: dict[str, Any]) -> tuple[dict[str, str], Plan]:
        """Validate a ConverseStream request and plan its ``stream``."""
        request = converse.parse_request(model_id, body)
        self._throttle(request.command, request.throttle_key)
        return {}, converse.stream(request, self._pacing())

    def invoke_agent_runtime(self, runtime_arn: str, session_id: str | None, body: dict[str, Any]) -> Plan:
        """Validate an InvokeAgentRuntime request (payload ``{"prompt": ...}``) and plan its SSE body."""
        request = agentcore.parse_request(runtime_arn, session_id, body)
        self._throttle(request.command, request.throttle_key)
        return agentcore.events(request, self._pacing())

    def knowledge_operation(self, operation: str, labels: tuple[str, ...],
                            body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One JSON operation of the knowledge base (Retrieve, or an ingestion job's): (status, body)."""
        api = retrieve if operation == retrieve.OPERATION else ingestion
        return api.handle(self.knowledge, operation, labels, body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # needed for chunked transfer encoding and keep-alive
    server_version = "BedrockEmulator/1.0"
    timeout = 60  # idle keep-alive connections end by themselves
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        self.server.emulator._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Method and path only: http.server's default logs the whole request line, query included."""
        if isinstance(code, HTTPStatus):
            code = code.value
        # ``command`` is None when the request line did not parse (``path`` may be the last request's).
        line = f"{self.command} {urlsplit(self.path).path}" if self.command else "(unparsed request line)"
        self.log_message('"%s" %s %s', line, str(code), str(size))

    def log_message(self, format: str, *args: Any) -> None:
        """Verbose only, and redacted: errors quote the request line (``Bad request version ('...')``)."""
        if self.server.emulator.verbose:
            super().log_message("%s", redact(format % args))

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/ping":
            self._send_json(200, {"status": "ok"})
        else:
            self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path
        content_type = _EVENTSTREAM
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.headers.get("Authorization"):  # any SigV4 signature is accepted, unchecked
                raise ServiceError(403, "AccessDeniedException", "Missing Authentication Token")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ServiceError(400, "SerializationException", "Request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise ServiceError(400, "SerializationException", "Request body must be a JSON object")
            answer: tuple[int, dict[str, Any]] | None = None
            headers: dict[str, str] = {}
            plan: Plan = iter(())
            if found := ingestion.match(method, path) or retrieve.match(method, path):
                emulator._record(found[0], unquote(path), body)
                answer = emulator.knowledge_operation(*found, body)
            elif method != "POST":
                raise ServiceError(404, "UnknownOperationException", f"No operation at {method} {path}")
            elif match := agents.PATH.match(path):
                emulator._record(agents.OPERATION, unquote(path), body)
                agent_id, alias_id, session_id = map(unquote, match.groups())
                headers, plan = emulator.invoke_agent(agent_id, alias_id, session_id, body)
            elif match := converse.PATH.match(path):
                emulator._record(converse.OPERATION, unquote(path), body)
                headers, plan = emulator.converse_stream(unquote(match.group(1)), body)
            elif match := agentcore.PATH.match(path):
                emulator._record(agentcore.OPERATION, unquote(path), body)
                session = self.headers.get(agentcore.SESSION_HEADER)
                plan = emulator.invoke_agent_runtime(unquote(match.group(1)), session, body)
                # The service echoes the session id back.
                headers, content_type = {agentcore.SESSION_HEADER: session or ""}, agentcore.CONTENT_TYPE
            else:
                raise ServiceError(404, "UnknownOperationException", f"No operation at POST {path}")
        except ServiceError as err:
            self._send_error(err)
            return
        except Exception as err:  # noqa: BLE001 - an emulator bug: answer 500 rather than drop the connection
            self._send_error(ServiceError(500, "InternalServerException", f"emulator error: {err!r}"))
            return
        if answer is not None:
            self._send_json(*answer, {"x-amzn-RequestId": self._request_id()})
        else:
            self._stream(headers, plan, content_type)

    def _request_id(self) -> str:
        return str(uuid.uuid4())

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: ServiceError) -> None:
        # botocore's restJson parser takes the code from x-amzn-ErrorType.
        self._send_json(err.status, {"message": err.message},
                        {"x-amzn-ErrorType": err.code, "x-amzn-RequestId": self._request_id()})

    def _stream(self, headers: dict[str, str], plan: Plan, content_type: str = _EVENTSTREAM) -> None:
        """Send each frame as its own HTTP chunk, as soon as it exists."""
        stopping = self.server.emulator._stopping
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", self._request_id())
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            for item in plan:
                if isinstance(item, bytes):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(item), item))
                elif item > 0 and stopping.wait(item):
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # client went away or the emulator stopped
            self.close_connection = True


def main(argv: list[str] | None = None) -> None:
    """``python -m devserver.bedrock --port N``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m devserver.bedrock",
        description="Local Bedrock (InvokeAgent, ConverseStream, InvokeAgentRuntime, a knowledge base) emulator",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--chunk-delay", type=float, default=0.01)
    parser.add_argument("--quiet", action="store_true", help="no request log")
    parser.add_argument("--s3-endpoint", help="S3 (e.g. moto) endpoint of the knowledge base's data source; "
                        "without it there is no knowledge base")
    parser.add_argument("--kb-bucket", default=LOCAL_DOCUMENTS_BUCKET, help="the data source's bucket")
    parser.add_argument("--ingestion-delay", type=float, default=DEFAULT_INGESTION_DELAY,
                        help="seconds an ingestion job takes")
    args = parser.parse_args(argv)
    knowledge_base = None
    if args.s3_endpoint:
        knowledge_base = KnowledgeBaseConfig(args.s3_endpoint, bucket=args.kb_bucket, ingestion_delay=args.ingestion_delay)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with BedrockEmulator(port=args.port, first_token_delay=args.first_token_delay,
                         chunk_delay=args.chunk_delay, knowledge_base=knowledge_base, verbose=not args.quiet) as emulator:
        print(f"Bedrock emulator listening on {emulator.url}", flush=True)
        while not done.wait(0.5):
            pass
