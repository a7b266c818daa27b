"""Local Bedrock emulator for the dev stack (never deployed).

Serves the two streaming operations the app uses, with botocore's real
request shapes and the binary event-stream framing, so the app runs against
boto3's real parser offline:

* InvokeAgent    ``POST /agents/{agentId}/agentAliases/{aliasId}/sessions/{sessionId}/text``
* ConverseStream ``POST /model/{modelId}/converse-stream``
* InvokeAgentRuntime (AgentCore) ``POST /runtimes/{agentRuntimeArn}/invocations``, answered as
  Server-Sent Events (one ``data: "<piece>"`` per chunk) with the same scenarios

Answers are deterministic, keyed on the prompt (InvokeAgent ``inputText`` or
the last user message of ConverseStream):

=====================  ======================================================
prompt                 behaviour
=====================  ======================================================
anything else          ``You said: <prompt>``, about a word per chunk
``!slow N``            same answer, chunks spread evenly over N seconds
``!throttle``          HTTP 429 ThrottlingException on every attempt
``!throttle-once``     429 on the first request for the session, then normal
``!stream-error``      one chunk, then in-stream ``internalServerException``
``!stream-throttle``   no chunk, in-stream ``throttlingException``
``!big N``             exactly N ASCII characters, chunks of <= 1000
``!trace``             two ``trace`` events first when ``enableTrace`` is true
``!return-control``    a ``returnControl`` event, no text (InvokeAgent only)
``!files``             a ``files`` event (a small CSV) before the answer (InvokeAgent only)
=====================  ======================================================

ConverseStream appends `` (turn N)`` (N = user messages in the history) and
keys ``!throttle-once`` on (modelId, prompt, N) as it has no session.
InvokeAgent without ``streamingConfigurations.streamFinalResponse=true`` sends
the whole answer as ONE chunk at the end (after the same total delay), like
the real service. ``GET /ping`` answers 200 for readiness checks; a request
without an Authorization header gets 403 (any signature is accepted).

Run standalone with ``python -m devserver.bedrock --port 8766``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import signal
import socket
import socketserver
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, NamedTuple
from urllib.parse import unquote, urlsplit

from .eventstream import event, exception

__all__ = ["BedrockEmulator", "RecordedRequest", "MAX_INPUT_CHARS", "main"]

MAX_INPUT_CHARS = 25_000
BIG_CHUNK_CHARS = 1000
MAX_BIG_CHARS = 1_000_000  # PartBody max in the service model
_ID_RE = re.compile(r"^[0-9a-zA-Z._:-]+$")
_INVOKE_PATH = re.compile(r"^/agents/([^/]+)/agentAliases/([^/]+)/sessions/([^/]+)/text$")
_CONVERSE_PATH = re.compile(r"^/model/([^/]+)/converse-stream$")
_CONVERSE_DECODED = re.compile(r"^/model/(.+)/converse-stream$")  # model ARNs hold '/'
_RUNTIME_PATH = re.compile(r"^/runtimes/([^/]+)/invocations$")
_RUNTIME_SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
_COMMAND = re.compile(r"^(![a-z-]+)(?:\s+(\d+(?:\.\d+)?))?")
_PAD = "lorem ipsum dolor sit amet consectetur adipiscing elit "
_THROTTLE_MESSAGE = "Rate exceeded (emulated). Reduce the frequency of requests."
_EVENTSTREAM = "application/vnd.amazon.eventstream"

Plan = Iterator["float | bytes"]  # a float waits that many seconds, bytes is one frame


class RecordedRequest(NamedTuple):
    """One request the emulator saw (a 3-tuple, so it unpacks as such)."""

    operation: str
    path: str  # percent-decoded
    body: dict

    def uri_params(self) -> dict[str, str]:
        """The URI labels, e.g. ``{"sessionId": ...}`` for InvokeAgent."""
        decoded = ((_INVOKE_PATH, ("agentId", "agentAliasId", "sessionId")), (_CONVERSE_DECODED, ("modelId",)))
        for pattern, names in decoded:
            if match := pattern.match(self.path):
                return dict(zip(names, match.groups()))
        return {}


class ServiceError(Exception):
    """An HTTP error answered before any stream starts (restJson style)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _validation(message: str) -> ServiceError:
    return ServiceError(400, "ValidationException", message)


# --- deterministic answers ---------------------------------------------------


def parse_command(prompt: str) -> tuple[str, float | None]:
    """Split ``!command N`` off a prompt; ("", None) for a plain prompt."""
    match = _COMMAND.match(prompt)
    if not match:
        return "", None
    arg = match.group(2)
    return match.group(1), (float(arg) if arg is not None else None)


def split_words(text: str) -> list[str]:
    """About a word per piece, keeping whitespace, so pieces join back exactly."""
    return re.findall(r"\s*\S+\s*", text) or [text]


def big_answer(size: int) -> str:
    """Exactly ``size`` ASCII characters starting ``You said: ``."""
    head = "You said: "
    body = _PAD * (max(size - len(head), 0) // len(_PAD) + 1)
    return (head + body)[:size]


def answer_pieces(text: str, command: str) -> list[str]:
    """How an answer is cut into chunks when streamed."""
    if command == "!big":
        return [text[i : i + BIG_CHUNK_CHARS] for i in range(0, len(text), BIG_CHUNK_CHARS)] or [""]
    return split_words(text)


def piece_delays(count: int, command: str, arg: float | None, first: float, step: float) -> list[float]:
    """Wait before each chunk: ``!slow N`` spreads them over N seconds."""
    if command == "!slow" and arg is not None:
        step = arg / count
        first += step
    return [first] + [step] * (count - 1)


def _base_answer(prompt: str, command: str, arg: float | None) -> str:
    if command == "!big":
        size = int(arg or 0)
        if size > MAX_BIG_CHARS:
            raise _validation(f"emulator: !big is limited to {MAX_BIG_CHARS} characters")
        return big_answer(size)
    return "You said: " + prompt


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not 2 <= len(value) <= 100:
        raise _validation(
            f"1 validation error detected: Value at '{name}' failed to satisfy constraint: "
            "Member must have length between 2 and 100"
        )
    if not _ID_RE.match(value):
        raise _validation(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z._:-]+"
        )


def _results_text(results: list) -> str:
    """The text bodies of ``returnControlInvocationResults``, space-joined."""
    texts = []
    for item in results:
        for result in item.values() if isinstance(item, dict) else ():
            bodies = (result.get("responseBody") if isinstance(result, dict) else None) or {}
            texts.extend(str(b.get("body", "")) for b in bodies.values() if isinstance(b, dict))
    return " ".join(texts)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the emulator ------------------------------------------------------------


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
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.emulator.verbose:
            super().handle_error(request, client_address)


class BedrockEmulator:
    """Bedrock InvokeAgent + ConverseStream over loopback HTTP/1.1.

    Thread-safe: each connection is served by its own daemon thread; shared
    state (recorded requests, sessions already throttled) sits behind a lock.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        first_token_delay: float = 0.0,
        chunk_delay: float = 0.01,
        max_input_chars: int = MAX_INPUT_CHARS,
        verbose: bool = False,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the Bedrock emulator binds to 127.0.0.1 only")
        self.port = port
        self.first_token_delay = first_token_delay
        self.chunk_delay = chunk_delay
        self.max_input_chars = max_input_chars
        self.verbose = verbose
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

    def _record(self, operation: str, path: str, body: dict) -> None:
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
        if command == "!throttle" or (command == "!throttle-once" and self._first_time(key)):
            raise ServiceError(429, "ThrottlingException", _THROTTLE_MESSAGE)

    # operations: validate, then return (response headers, plan)

    def invoke_agent(self, agent_id: str, alias_id: str, session_id: str, body: dict) -> tuple[dict, Plan]:
        """Validate an InvokeAgent request and plan its ``completion`` stream."""
        _check_id("sessionId", session_id)
        if "memoryId" in body:
            _check_id("memoryId", body["memoryId"])
        state = body.get("sessionState") or {}
        results = state.get("returnControlInvocationResults")
        prompt = body.get("inputText")
        if prompt is None and not results:
            raise _validation("inputText is required when sessionState.returnControlInvocationResults is absent")
        if prompt is not None and not isinstance(prompt, str):
            raise _validation("inputText must be a string")
        if prompt is not None and len(prompt) > self.max_input_chars:
            raise _validation(
                "1 validation error detected: Value at 'inputText' failed to satisfy constraint: "
                f"Member must have length less than or equal to {self.max_input_chars}"
            )
        if results:
            command, arg, text = "", None, "You said: " + _results_text(results)
        else:
            command, arg = parse_command(prompt)
            text = _base_answer(prompt, command, arg)
        self._throttle(command, ("InvokeAgent", session_id))
        streaming = (body.get("streamingConfigurations") or {}).get("streamFinalResponse") is True
        headers = {
            "x-amzn-bedrock-agent-content-type": "application/json",
            "x-amz-bedrock-agent-session-id": session_id,
        }
        if "memoryId" in body:
            headers["x-amz-bedrock-agent-memory-id"] = body["memoryId"]
        ids = {"agentId": agent_id, "agentAliasId": alias_id, "sessionId": session_id}
        plan = self._agent_plan(ids, prompt or "", command, arg, text, streaming, body.get("enableTrace") is True)
        return headers, plan

    def _agent_plan(
        self, ids: dict, prompt: str, command: str, arg: float | None, text: str, streaming: bool, trace: bool
    ) -> Plan:
        if command == "!trace" and trace:
            for part in _trace_parts(prompt, text):
                yield event("trace", {**ids, "agentVersion": "DRAFT", "eventTime": _now(), "trace": part})
        if command == "!return-control":
            yield self.first_token_delay
            yield event("returnControl", _return_control(ids["agentId"], prompt))
            return
        if command == "!files":
            csv = base64.b64encode(b"city,temperature\nOslo,3\n").decode("ascii")
            yield event("files", {"files": [{"name": "weather.csv", "type": "text/csv", "bytes": csv}]})
        if command == "!stream-throttle":
            yield self.first_token_delay
            yield exception("throttlingException", _THROTTLE_MESSAGE)
            return
        pieces = answer_pieces(text, command)
        delays = piece_delays(len(pieces), command, arg, self.first_token_delay, self.chunk_delay)
        if command == "!stream-error":
            pieces, delays = pieces[:1], delays[:1]
        elif not streaming:
            pieces, delays = [text], [sum(delays)]
        for wait, piece in zip(delays, pieces):
            yield wait
            yield event("chunk", {"bytes": base64.b64encode(piece.encode("utf-8")).decode("ascii")})
        if command == "!stream-error":
            yield self.chunk_delay
            yield exception("internalServerException", "Injected stream error (emulated).")

    def converse_stream(self, model_id: str, body: dict) -> tuple[dict, Plan]:
        """Validate a ConverseStream request and plan its ``stream``."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _validation("messages must be a non-empty list")
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise _validation("A conversation must start with a user message.")
        prompt = "".join(
            block.get("text", "") for block in users[-1].get("content") or [] if isinstance(block, dict)
        )
        command, arg = parse_command(prompt)
        text = _base_answer(prompt, command, arg) + f" (turn {len(users)})"
        self._throttle(command, ("ConverseStream", model_id, prompt, str(len(users))))
        words_in = sum(len(json.dumps(m).split()) for m in messages) + len(json.dumps(body.get("system") or []).split())
        return {}, self._converse_plan(command, arg, text, words_in)

    def invoke_agent_runtime(self, runtime_arn: str, session_id: str | None, body: dict) -> Plan:
        """Validate an InvokeAgentRuntime request (payload ``{"prompt": ...}``) and plan its SSE body."""
        if session_id is not None and not 33 <= len(session_id) <= 256:
            raise _validation("runtimeSessionId must be between 33 and 256 characters long")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _validation("emulator: the payload must be a JSON object with a non-empty 'prompt'")
        command, arg = parse_command(prompt)
        self._throttle(command, ("InvokeAgentRuntime", runtime_arn, session_id or ""))
        return _runtime_plan(self, command, arg, _base_answer(prompt, command, arg))

    def _converse_plan(self, command: str, arg: float | None, text: str, tokens_in: int) -> Plan:
        started = time.monotonic()
        if command == "!stream-throttle":
            yield self.first_token_delay
            yield exception("throttlingException", _THROTTLE_MESSAGE)
            return
        yield event("messageStart", {"role": "assistant"})
        pieces = answer_pieces(text, command)
        delays = piece_delays(len(pieces), command, arg, self.first_token_delay, self.chunk_delay)
        if command == "!stream-error":
            pieces = pieces[:1]
        for wait, piece in zip(delays, pieces):
            yield wait
            yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        if command == "!stream-error":
            yield self.chunk_delay
            yield exception("internalServerException", "Injected stream error (emulated).")
            return
        tokens_out = len(text.split())
        yield event("contentBlockStop", {"contentBlockIndex": 0})
        yield event("messageStop", {"stopReason": "end_turn"})
        yield event("metadata", {
            "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalTokens": tokens_in + tokens_out},
            "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
        })


def _runtime_plan(emulator: "BedrockEmulator", command: str, arg: float | None, text: str) -> Plan:
    """An AgentCore agent streaming Server-Sent Events: one JSON string per piece."""
    if command == "!stream-error":
        yield emulator.first_token_delay
        yield b'data: "You "\n\n'
        return  # the agent's process died mid-answer: the body just ends
    pieces = answer_pieces(text, command)
    delays = piece_delays(len(pieces), command, arg, emulator.first_token_delay, emulator.chunk_delay)
    for wait, piece in zip(delays, pieces):
        yield wait
        yield b"data: " + json.dumps(piece).encode("utf-8") + b"\n\n"


def _trace_parts(prompt: str, text: str) -> list[dict]:
    """Two orchestration steps (Trace is a union: one member per part)."""
    trace_id = str(uuid.uuid4()) + "-0"
    rationale = {"traceId": trace_id, "text": f"The user wrote {prompt!r}; I will echo it."}
    observation = {"traceId": trace_id, "type": "FINISH", "finalResponse": {"text": text}}
    return [{"orchestrationTrace": {"rationale": rationale}}, {"orchestrationTrace": {"observation": observation}}]


def _return_control(agent_id: str, prompt: str) -> dict:
    return {
        "invocationId": str(uuid.uuid4()),
        "invocationInputs": [{
            "functionInvocationInput": {
                "actionGroup": "EmulatorActions",
                "actionInvocationType": "RESULT",
                "agentId": agent_id,
                "function": "lookup",
                "parameters": [{"name": "query", "type": "string", "value": prompt}],
            }
        }],
    }


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

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/ping":
            self._send_json(200, {"status": "ok"})
        else:
            self._send_error(ServiceError(404, "UnknownOperationException", "Unknown operation"))

    def do_POST(self) -> None:
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
            if match := _INVOKE_PATH.match(path):
                emulator._record("InvokeAgent", unquote(path), body)
                headers, plan = emulator.invoke_agent(*map(unquote, match.groups()), body)
            elif match := _CONVERSE_PATH.match(path):
                emulator._record("ConverseStream", unquote(path), body)
                headers, plan = emulator.converse_stream(unquote(match.group(1)), body)
            elif match := _RUNTIME_PATH.match(path):
                emulator._record("InvokeAgentRuntime", unquote(path), body)
                session = self.headers.get(_RUNTIME_SESSION_HEADER)
                plan = emulator.invoke_agent_runtime(unquote(match.group(1)), session, body)
                headers, content_type = {_RUNTIME_SESSION_HEADER: session or ""}, "text/event-stream"
            else:
                raise ServiceError(404, "UnknownOperationException", f"No operation at POST {path}")
        except ServiceError as err:
            self._send_error(err)
            return
        except Exception as err:  # an emulator bug: answer rather than drop the connection
            self._send_error(ServiceError(500, "InternalServerException", f"emulator error: {err!r}"))
            return
        self._stream(headers, plan, content_type)

    def _request_id(self) -> str:
        return str(uuid.uuid4())

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
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

    def _stream(self, headers: dict, plan: Plan, content_type: str = _EVENTSTREAM) -> None:
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
    parser = argparse.ArgumentParser(description="Local Bedrock (InvokeAgent, ConverseStream) emulator")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--chunk-delay", type=float, default=0.01)
    parser.add_argument("--quiet", action="store_true", help="no request log")
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with BedrockEmulator(port=args.port, first_token_delay=args.first_token_delay,
                         chunk_delay=args.chunk_delay, verbose=not args.quiet) as emulator:
        print(f"Bedrock emulator listening on {emulator.url}", flush=True)
        while not done.wait(0.5):
            pass


if __name__ == "__main__":
    main()
