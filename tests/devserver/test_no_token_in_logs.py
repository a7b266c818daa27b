"""No local server logs a token, even for requests it cannot parse.

Clients put their JWT in the URL (``/?token=...``). aiohttp logs the start of an oversized
request line, and a malformed one whole, in the exception of its ``Error handling request``
record; http.server and werkzeug log request lines and quote them in ``Bad request syntax``.
Each test sends such requests over loopback with a marker as the token, then checks that
the marker is in no log output while a log line about the request was still written (so
logging nothing at all could not pass).
"""
from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator

import pytest

from devserver.apigw import ApiGatewayEmulator
from devserver.bedrock import BedrockEmulator
from devserver.moto_server import MotoServer
from devserver.redact import REDACTED, RedactingFilter, redact
from devserver.stack import free_port
from tests.devserver.test_apigw_emulator import Start, wait_for, ws
from tests.devserver.test_apigw_emulator import _environment, start  # noqa: F401 - fixtures, used by name

MARKER = "SECRETMARKER"
TOKEN = MARKER + "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"


@pytest.fixture
def emulator(start: Start) -> ApiGatewayEmulator:  # noqa: F811 - the fixture imported above
    """The emulator the API Gateway tests use (their Chalice app, short timeouts)."""
    return start()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at DEBUG, except the WebSocket client's: it logs its own request line."""
    caplog.set_level(logging.WARNING, logger="websockets")
    caplog.set_level(logging.DEBUG)  # last: set_level also sets the capturing handler's level
    yield caplog


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes as they are (no client library would send these) and read until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def formatted(record: logging.LogRecord) -> str:
    """A record as a handler writes it: message, then traceback."""
    return logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)


def assert_no_marker(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """The marker is in no record (message and traceback, as formatted) and not on stdout/stderr."""
    for record in caplog.records:
        assert MARKER not in formatted(record), record.name
    assert MARKER not in caplog.text
    out, err = capfd.readouterr()
    assert MARKER not in out + err


def server_error(caplog: pytest.LogCaptureFixture, words: str) -> logging.LogRecord:
    """Wait for aiohttp's ``Error handling request`` record whose traceback says ``words``."""
    def find() -> logging.LogRecord | None:
        return next((r for r in list(caplog.records) if r.name == "aiohttp.server"
                     and words in formatted(r)), None)
    return wait_for(find)


def test_a_websocket_connection_logs_its_path_not_its_token(
        emulator: ApiGatewayEmulator, logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    with ws(emulator, f"/?token={TOKEN}&lang=en") as client:
        wait_for(lambda: emulator.open_ids)
        client.close()
    access = wait_for(lambda: [r.getMessage() for r in list(logs.records)
                               if r.name == "aiohttp.access" and "-> 101" in r.getMessage()])
    assert "GET / -> 101" in access[0]
    assert "lang=en" not in access[0]  # no query string at all in the access log
    assert_no_marker(logs, capfd)


def test_an_oversized_url_is_logged_without_its_token(
        emulator: ApiGatewayEmulator, logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    url = f"/?token={TOKEN}" + "x" * 20_000  # aiohttp's limit is 8190 bytes
    reply = raw_request(emulator.port, f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.0 400")
    record = server_error(logs, "Got more than 8190 bytes when reading")
    assert_no_marker(logs, capfd)
    assert f"token={REDACTED}" in formatted(record)  # the start of the URL is still there


@pytest.mark.parametrize("request_line, error", [
    (f"GET /?token={TOKEN} HTTP/1.1 junk", "Bad status line"),  # logged at ERROR
    (f"G(T /?token={TOKEN} HTTP/1.1", "Invalid method encountered"),  # logged at DEBUG
], ids=["bad-status-line", "bad-method"])
def test_a_malformed_request_line_is_logged_without_its_token(
        emulator: ApiGatewayEmulator, logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
        request_line: str, error: str) -> None:
    reply = raw_request(emulator.port, f"{request_line}\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.0 400")
    record = server_error(logs, error)
    assert_no_marker(logs, capfd)
    assert f"/?token={REDACTED} HTTP/1.1" in formatted(record)  # the request line is still there


def test_an_oversized_authorization_header_is_logged_without_its_token(
        emulator: ApiGatewayEmulator, logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    header = f"Authorization: Bearer {TOKEN}{'x' * 10_000}"
    reply = raw_request(emulator.port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.0 400")
    record = server_error(logs, "Got more than 8190 bytes when reading")
    assert_no_marker(logs, capfd)
    assert f"Bearer {REDACTED}" in formatted(record)


def test_the_bedrock_emulator_logs_request_lines_without_tokens(
        logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """Its verbose request log (``python -m devserver.bedrock``) goes to stderr."""
    with BedrockEmulator(verbose=True) as emulator:
        ok = raw_request(emulator.port, f"GET /ping?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
                                        "Connection: close\r\n\r\n".encode())
        bad = raw_request(emulator.port, f"GET /ping?token={TOKEN} junk HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert ok.startswith(b"HTTP/1.1 200") and bad.startswith(b"HTTP/1.1 400")
    err = capfd.readouterr().err
    assert MARKER not in err
    assert '"GET /ping" 200' in err  # method and path, no query string
    assert f"Bad request syntax ('GET /ping?token={REDACTED} junk HTTP/1.1')" in err
    assert_no_marker(logs, capfd)


def test_the_moto_server_logs_bad_request_lines_without_tokens(capfd: pytest.CaptureFixture[str]) -> None:
    """moto runs in its own process; werkzeug logs a request line it cannot parse at ERROR."""
    moto = MotoServer("127.0.0.1", free_port()).start()
    try:
        reply = raw_request(moto.port, f"GET /?token={TOKEN} junk HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    finally:
        moto.stop()  # waits for the process: everything it wrote is on the captured stderr
    assert b" 400 " in reply.split(b"\r\n", 1)[0]
    err = capfd.readouterr().err
    assert MARKER not in err
    assert f"Bad request syntax ('GET /?token={REDACTED} junk HTTP/1.1')" in err


@pytest.mark.parametrize("text, expected", [
    ("GET /?a=1&token=abc.def&b=2 HTTP/1.1", f"GET /?a=1&token={REDACTED}&b=2 HTTP/1.1"),
    ("b'/?TOKEN=abc\\r\\n'", f"b'/?TOKEN={REDACTED}\\r\\n'"),
    ("Authorization: Bearer abc", f"Authorization: {REDACTED}"),
    ("{'Authorization': 'AWS4-HMAC-SHA256 Credential=x, Signature=y'}", f"{{'Authorization': '{REDACTED}'}}"),
    ("bearer abc, next", f"bearer {REDACTED}, next"),
    ("/eyJhbGciOiJIUzI1NiJ9.e30.sig/x", f"/{REDACTED}/x"),
    ("GET / -> 101 (0 bytes, 2.0 ms)", "GET / -> 101 (0 bytes, 2.0 ms)"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_rewrites_message_and_traceback_and_keeps_the_record() -> None:
    try:
        raise ValueError(f"bad line b'GET /?token={TOKEN} HTTP/1.1'")
    except ValueError:
        record = logging.getLogger("devserver.apigw").makeRecord(
            "devserver.apigw", logging.ERROR, __file__, 1, "request %s from %s",
            (f"/?token={TOKEN}", "127.0.0.1"), sys.exc_info())
    unformattable = logging.LogRecord("devserver", logging.INFO, __file__, 1, "%d items", (TOKEN,), None)
    assert RedactingFilter().filter(record) and RedactingFilter().filter(unformattable)
    assert record.getMessage() == f"request /?token={REDACTED} from 127.0.0.1"
    assert record.exc_info is None and f"token={REDACTED}" in (record.exc_text or "")
    assert MARKER not in formatted(record) and MARKER not in formatted(unformattable)
    assert unformattable.args is None
