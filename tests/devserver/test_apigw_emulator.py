"""The API Gateway WebSocket emulator runs a Chalice app's handlers as AWS would.

A tiny Chalice app (defined here) records the events it gets and answers through a
real boto3 ``apigatewaymanagementapi`` client; the ``websockets`` library plays the
browser. Everything runs on loopback with short timeouts.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import re
import socket
import struct
import termios
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from chalice import Chalice, Response
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from devserver.apigw import ApiGatewayEmulator

Start = Callable[..., ApiGatewayEmulator]

app = Chalice("t")
app.experimental_feature_flags.update(["WEBSOCKETS"])

EVENTS: dict[str, list[dict[str, Any]]] = defaultdict(list)
_events_changed = threading.Condition()
# A slow handler is one that waits for the test to let it go (never for a time): GATE holds
# ?hold=1 connects and {"hold": ...} messages; MEET gathers {"meet": ...} messages and the test.
GATE = threading.Event()
MEET = threading.Barrier(3, timeout=10)
_endpoint: dict[str, str] = {}
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def unsent_bytes(sock: socket.socket) -> int:
    """Bytes still in the socket's send queue, not yet acknowledged by the peer (Linux TIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def management_client(endpoint: str | None = None, **config: Any) -> Any:
    """A real boto3 management API client for the running emulator (cached per endpoint)."""
    endpoint = endpoint or _endpoint["url"]
    key = f"{endpoint}|{sorted(config.items())}"
    with _clients_lock:  # boto3 client creation is not thread-safe
        if key not in _clients:
            _clients[key] = boto3.session.Session().client(
                "apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id="test", aws_secret_access_key="test",
                config=Config(**config) if config else None)
        return _clients[key]


def _record(route: str, event: Any) -> None:
    with _events_changed:
        EVENTS[route].append(event.to_dict())
        _events_changed.notify_all()


@app.on_ws_connect()
def on_connect(event: Any) -> Any:
    _record("connect", event)
    query = event.to_dict().get("queryStringParameters") or {}
    if query.get("token") == "bad":
        return Response(body="", status_code=401)
    if query.get("hold"):
        GATE.wait(10)
    return None


@app.on_ws_message()
def on_message(event: Any) -> None:
    """Commands: {"echo": text}, {"hold": true, "then": text}, {"meet": true, "then": text}, {"fail": true}."""
    _record("message", event)
    if event.to_dict()["isBase64Encoded"]:
        return
    command = json.loads(event.body)
    if command.get("fail"):
        raise RuntimeError("handler failed")
    if command.get("hold"):
        GATE.wait(10)
    if command.get("meet"):
        MEET.wait()
    reply = command.get("echo", command.get("then"))
    if reply is not None:
        management_client().post_to_connection(
            ConnectionId=event.connection_id, Data=reply.encode("utf-8"))


@app.on_ws_disconnect()
def on_disconnect(event: Any) -> None:
    _record("disconnect", event)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until the predicate holds (handlers run on other threads)."""
    deadline = time.monotonic() + timeout
    with _events_changed:
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting")
            _events_changed.wait(min(left, 0.05))


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    EVENTS.clear()
    GATE.clear()
    MEET.reset()
    yield
    GATE.set()  # nothing stays held after its test
    EVENTS.clear()


@pytest.fixture
def start() -> Iterator[Start]:
    """Start an emulator for the test app; every one started is stopped afterwards."""
    started: list[ApiGatewayEmulator] = []

    def _start(**options: Any) -> ApiGatewayEmulator:
        options.setdefault("integration_timeout", 2.0)
        emulator = ApiGatewayEmulator(app, **options).start()
        started.append(emulator)
        _endpoint["url"] = emulator.management_url
        management_client()  # create it now: creating one takes a while on a slow machine
        return emulator

    yield _start
    for emulator in started:
        emulator.stop()
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def ws(emulator: ApiGatewayEmulator, path: str = "/", **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("ping_interval", None)
    return connect(emulator.ws_url + path, **kwargs)


def connection_id(emulator: ApiGatewayEmulator) -> str:
    """The id of the one open connection."""
    ids = wait_for(lambda: emulator.open_ids)
    assert len(ids) == 1
    return ids[0]


ID = re.compile(r"^[A-Za-z0-9+]{15}=$")


def test_connect_event_is_shaped_like_api_gateways(start: Start) -> None:
    emulator = start()
    with ws(emulator, "/?token=abc&x=1&x=2", additional_headers={"Authorization": "Bearer t"},
            user_agent_header="agent/1.0"):
        event = wait_for(lambda: EVENTS["connect"])[0]
        assert emulator.open_count == 1
    ctx = event["requestContext"]
    assert set(ctx) >= {"routeKey", "eventType", "extendedRequestId", "requestTime",
                        "messageDirection", "stage", "connectedAt", "requestTimeEpoch",
                        "identity", "requestId", "domainName", "connectionId", "apiId"}
    assert ctx["routeKey"] == "$connect" and ctx["eventType"] == "CONNECT"
    assert ctx["messageDirection"] == "IN"
    assert (ctx["stage"], ctx["apiId"]) == ("local", "local")
    assert ctx["domainName"] == f"127.0.0.1:{emulator.port}"
    assert ID.match(ctx["connectionId"]) and ID.match(ctx["requestId"])
    assert ctx["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "agent/1.0"}
    assert isinstance(ctx["connectedAt"], int) and ctx["requestTimeEpoch"] >= ctx["connectedAt"]
    assert re.match(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$", ctx["requestTime"])
    assert event["queryStringParameters"] == {"token": "abc", "x": "2"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"], "x": ["1", "2"]}
    assert event["headers"]["Authorization"] == "Bearer t"
    assert event["headers"]["Sec-WebSocket-Version"] == "13"
    assert event["multiValueHeaders"]["Authorization"] == ["Bearer t"]
    assert event["isBase64Encoded"] is False
    # Without a query string the query keys are absent, as on AWS.
    with ws(emulator, "/local"):
        second = wait_for(lambda: EVENTS["connect"][1:])[0]
    assert "queryStringParameters" not in second
    assert "multiValueQueryStringParameters" not in second


def test_a_401_from_connect_refuses_the_handshake(start: Start) -> None:
    emulator = start()
    with pytest.raises(InvalidStatus) as refused:
        ws(emulator, "/?token=bad")
    assert refused.value.response.status_code == 401
    assert len(EVENTS["connect"]) == 1
    with ws(emulator):  # a connection that does disconnect: its $disconnect is recorded after
        pass           # anything the refused one could have caused
    wait_for(lambda: EVENTS["disconnect"])
    assert len(EVENTS["disconnect"]) == 1 and EVENTS["disconnect"][0]["requestContext"]["connectionId"] != (
        EVENTS["connect"][0]["requestContext"]["connectionId"])
    assert emulator.connections == {}


def test_connect_timeout_refuses_with_504(start: Start) -> None:
    emulator = start(integration_timeout=0.3)
    with pytest.raises(InvalidStatus) as refused:
        ws(emulator, "/?hold=1")  # $connect answers only after the test let it go
    GATE.set()
    assert refused.value.response.status_code == 504


def test_posting_before_connect_returns_is_gone(start: Start) -> None:
    emulator = start()
    def open_slowly() -> None:
        with ws(emulator, "/?hold=1"):
            pass

    opener = threading.Thread(target=open_slowly)
    opener.start()
    event = wait_for(lambda: EVENTS["connect"])[0]
    client = management_client()
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=event["requestContext"]["connectionId"],
                                  Data=b"too early")
    GATE.set()
    opener.join()


def test_message_is_echoed_through_the_management_api(start: Start) -> None:
    emulator = start()
    with ws(emulator) as client:
        client.send(json.dumps({"echo": "héllo"}))
        assert client.recv(timeout=5) == "héllo"
        cid = connection_id(emulator)
    event = EVENTS["message"][0]
    ctx = event["requestContext"]
    assert ctx["routeKey"] == "$default" and ctx["eventType"] == "MESSAGE"
    assert ctx["connectionId"] == cid and ID.match(ctx["messageId"])
    assert event["body"] == json.dumps({"echo": "héllo"})
    assert event["isBase64Encoded"] is False
    assert emulator.post_count == 1
    assert emulator.sent_sizes[cid] == [len("héllo".encode())]
    assert emulator.delivered(cid) == ["héllo"]
    assert emulator.posts_over_frame_limit == 0


def test_binary_messages_arrive_base64_encoded(start: Start) -> None:
    emulator = start()
    with ws(emulator) as client:
        client.send(b"\x00\x01binary")
        event = wait_for(lambda: EVENTS["message"])[0]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\x01binary"


def test_get_and_delete_connection(start: Start) -> None:
    emulator = start()
    mgmt = management_client()
    with ws(emulator, user_agent_header="agent/2.0") as client:
        cid = connection_id(emulator)
        info = mgmt.get_connection(ConnectionId=cid)
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "agent/2.0"}
        assert info["ConnectedAt"].tzinfo is not None
        assert info["LastActiveAt"] >= info["ConnectedAt"]
        response = mgmt.delete_connection(ConnectionId=cid)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)
    event = wait_for(lambda: EVENTS["disconnect"])[0]
    assert event["requestContext"]["eventType"] == "DISCONNECT"
    assert event["requestContext"]["connectionId"] == cid
    with pytest.raises(mgmt.exceptions.GoneException):
        mgmt.get_connection(ConnectionId=cid)


def test_unknown_connection_is_gone(start: Start) -> None:
    start()
    mgmt = management_client()
    with pytest.raises(mgmt.exceptions.GoneException) as gone:
        mgmt.post_to_connection(ConnectionId="ZJ3vYcL9IAMCK0w=", Data=b"x")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    with pytest.raises(mgmt.exceptions.GoneException):
        mgmt.delete_connection(ConnectionId="ZJ3vYcL9IAMCK0w=")


def test_oversized_post_is_refused_with_413(start: Start) -> None:
    emulator = start()
    mgmt = management_client()
    with ws(emulator) as client:
        cid = connection_id(emulator)
        with pytest.raises(mgmt.exceptions.PayloadTooLargeException):
            mgmt.post_to_connection(ConnectionId=cid, Data=b"x" * (128 * 1024 + 1))
        mgmt.post_to_connection(ConnectionId=cid, Data=b"y" * (128 * 1024))
        assert client.recv(timeout=5) == "y" * (128 * 1024)
    assert emulator.max_post_bytes == 128 * 1024
    assert emulator.posts_over_frame_limit == 1


def test_a_post_whose_body_arrives_in_pieces_is_delivered_whole(start: Start) -> None:
    import socket

    emulator = start()
    body = ("x" * 100_000).encode()
    with ws(emulator, max_size=None) as client:
        cid = connection_id(emulator)
        head = (
            f"POST /local/@connections/{cid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: test\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as sock:
            for part in (head, body[:40_000], body[40_000:70_000], body[70_000:]):
                sock.sendall(part)
                # The next piece goes only once the emulator's side acknowledged this one: it has
                # arrived, so the emulator can read a piece before the next exists.
                wait_for(lambda: unsent_bytes(sock) == 0)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        assert client.recv(timeout=5) == body.decode()


def test_integration_timeout_frame_then_the_handler_still_posts(start: Start) -> None:
    emulator = start(integration_timeout=0.3)
    with ws(emulator) as client:
        client.send(json.dumps({"hold": True, "then": "late answer"}))
        frame = json.loads(client.recv(timeout=5))  # the handler is still held: the timeout came first
        GATE.set()
        cid = connection_id(emulator)
        assert frame["message"] == "Endpoint request timed out"
        assert frame["connectionId"] == cid
        assert frame["requestId"] == EVENTS["message"][0]["requestContext"]["requestId"]
        assert client.recv(timeout=5) == "late answer"
    assert emulator.post_count == 1


def test_a_failing_handler_gets_internal_server_error(start: Start) -> None:
    emulator = start()
    with ws(emulator) as client:
        client.send(json.dumps({"fail": True}))
        assert json.loads(client.recv(timeout=5))["message"] == "Internal server error"


def test_message_over_the_limit_closes_with_1009(start: Start) -> None:
    emulator = start(message_limit=1024)
    with ws(emulator) as client:
        client.send(json.dumps({"echo": "x" * (1024 - 14)}))  # exactly 1024 bytes: fine
        assert client.recv(timeout=5) == "x" * 1010
        client.send("z" * 1025)
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    event = wait_for(lambda: EVENTS["disconnect"])[0]
    assert event["requestContext"]["disconnectStatusCode"] == 1009
    assert len(EVENTS["message"]) == 1


def test_idle_connection_is_closed_with_1001(start: Start) -> None:
    emulator = start(idle_timeout=0.5)
    with ws(emulator) as client:
        client.send(json.dumps({"echo": "keep"}))
        client.recv(timeout=5)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
        assert 0.3 < time.monotonic() - started < 2.0
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "Going away")
    ctx = wait_for(lambda: EVENTS["disconnect"])[0]["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1001, "Going away")


def test_maximum_connection_duration_closes_with_1001(start: Start) -> None:
    emulator = start(max_connection_duration=0.6, idle_timeout=0.25)
    with ws(emulator) as client:
        deadline = time.monotonic() + 3
        with pytest.raises(ConnectionClosed) as closed:
            while time.monotonic() < deadline:  # keep it busy: not idle
                client.send(json.dumps({"noop": 1}))
                with contextlib.suppress(TimeoutError):  # the wait is for the close; a frame a
                    client.recv(timeout=0.1)             # tenth of a second keeps it from idling
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert wait_for(lambda: EVENTS["disconnect"])


def test_client_close_calls_disconnect(start: Start) -> None:
    emulator = start()
    with ws(emulator) as client:
        cid = connection_id(emulator)
        client.close(code=1000, reason="bye")
    ctx = wait_for(lambda: EVENTS["disconnect"])[0]["requestContext"]
    assert ctx["connectionId"] == cid and ctx["routeKey"] == "$disconnect"
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1000, "bye")
    wait_for(lambda: emulator.open_count == 0)


def test_dropped_connection_reports_1006(start: Start) -> None:
    emulator = start()
    with ws(emulator) as client:
        assert emulator.drop(connection_id(emulator))
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)
    ctx = wait_for(lambda: EVENTS["disconnect"])[0]["requestContext"]
    assert ctx["disconnectStatusCode"] == 1006


def test_handlers_run_concurrently_on_one_connection(start: Start) -> None:
    emulator = start()
    with ws(emulator) as client:
        # Both slow handlers wait at MEET with the test: run one after the other, the first would
        # wait alone until its barrier broke, and "fast" would never come first.
        client.send(json.dumps({"meet": True, "then": "slow-1"}))
        client.send(json.dumps({"meet": True, "then": "slow-2"}))
        client.send(json.dumps({"echo": "fast"}))
        assert client.recv(timeout=5) == "fast"
        MEET.wait()
        assert {client.recv(timeout=5), client.recv(timeout=5)} == {"slow-1", "slow-2"}


def test_posts_are_delivered_in_order_after_the_latency(start: Start) -> None:
    emulator = start(post_latency=0.05)
    mgmt = management_client()
    with ws(emulator) as client:
        cid = connection_id(emulator)
        results: list[Any] = []
        started = time.monotonic()
        for i in range(5):
            results.append(mgmt.post_to_connection(ConnectionId=cid, Data=str(i).encode()))
        assert time.monotonic() - started >= 5 * 0.05
        assert [client.recv(timeout=5) for _ in range(5)] == ["0", "1", "2", "3", "4"]
    assert emulator.sent_sizes[cid] == [1] * 5


def test_injected_fault_surfaces_as_limit_exceeded(start: Start) -> None:
    emulator = start()
    # botocore retries 429s itself, and retries={"max_attempts": 1} still means one retry.
    no_retries = management_client(retries={"total_max_attempts": 1, "mode": "standard"})
    with ws(emulator) as client:
        cid = connection_id(emulator)
        emulator.faults.fail_next_posts(1)
        with pytest.raises(no_retries.exceptions.LimitExceededException) as failed:
            no_retries.post_to_connection(ConnectionId=cid, Data=b"first")
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        no_retries.post_to_connection(ConnectionId=cid, Data=b"second")
        assert client.recv(timeout=5) == "second"
    assert emulator.faults.injected == 1 and emulator.post_count == 1


def test_stop_disconnects_every_connection(start: Start) -> None:
    emulator = start()
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(ws(emulator)) for _ in range(3)]
        wait_for(lambda: emulator.open_count == 3)
        emulator.stop()
        assert len(EVENTS["disconnect"]) == 3
        assert {e["requestContext"]["disconnectStatusCode"]
                for e in EVENTS["disconnect"]} == {1001}
        for client in clients:
            with pytest.raises(ConnectionClosed):
                client.recv(timeout=5)


def _http_get(url: str) -> tuple[int, bytes]:
    """GET without proxies; the status and body, error statuses included."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def test_static_files_are_served_on_plain_get(start: Start, tmp_path: Any) -> None:
    (tmp_path / "index.html").write_text("<h1>chat</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    base = f"http://127.0.0.1:{start(static_dir=str(tmp_path)).port}"
    assert _http_get(base + "/") == (200, b"<h1>chat</h1>")
    assert _http_get(base + "/app.js") == (200, b"console.log(1)")
    assert _http_get(base + "/%2E%2E/%2E%2E/etc/passwd")[0] == 404
    assert _http_get(f"http://127.0.0.1:{start().port}/")[0] == 404
