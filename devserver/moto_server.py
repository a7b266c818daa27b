"""moto's server (DynamoDB, SQS, EventBridge; Cognito with AUTH=cognito) in its own process on loopback,
with an injectable DynamoDB throttle.

Its own process, so the fake AWS and the app under test do not share one interpreter lock (the
local stack holds hundreds of streaming turns on two cores). moto never throttles; AWS does:
``throttle_dynamodb(n)`` makes the next n DynamoDB requests fail with
``ProvisionedThroughputExceededException`` exactly as DynamoDB sends it, so the app's real
botocore retry path (and what happens when it gives up) is exercised.

    python -m devserver.moto_server --port 5000
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, Iterable, Optional

CONTROL_PATH = "/_agentstream/throttle-dynamodb"
_THROTTLED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded (injected).",
    }
).encode()


def throttling_middleware(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap moto's WSGI app: ``POST CONTROL_PATH`` arms the throttle.

    The body is a count, or ``{"requests": n, "matching": "text"}`` to throttle only requests whose
    body holds that text (e.g. ``"claimId"``: the worker's claim of a turn).
    """
    state: dict = {"remaining": 0, "matching": ""}
    lock = threading.Lock()
    dynamodb_lock = threading.Lock()

    def middleware(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CONTROL_PATH:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            armed = json.loads(environ["wsgi.input"].read(length) or b"0")
            if not isinstance(armed, dict):
                armed = {"requests": armed}
            with lock:
                state["remaining"] = int(armed.get("requests", 0))
                state["matching"] = str(armed.get("matching") or "")
            start_response("204 No Content", [])
            return [b""]
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with lock:
                matching = state["remaining"] > 0 and state["matching"]
            if matching:  # look at the body, then hand moto an unread copy
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)
                matching = matching.encode() not in body
            with lock:
                throttle = state["remaining"] > 0 and not matching
                state["remaining"] -= int(throttle)
            if throttle:
                headers = [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(_THROTTLED)))]
                start_response("400 Bad Request", headers)
                return [_THROTTLED]
            # DynamoDB applies each conditional write atomically; moto's backend takes no lock,
            # so two racing writes could both pass one condition. One request at a time.
            with dynamodb_lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return middleware


class MotoServer:
    """Starts and stops the moto process; ``url`` is what boto3's endpoint variables point at."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "MotoServer":
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devserver.moto_server", "--host", self.host, "--port", str(self.port)]
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("moto server exited at start")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto server did not start")

    def throttle_dynamodb(self, requests: int, matching: str = "") -> None:
        """Throttle the next ``requests`` DynamoDB requests (only those whose body holds ``matching``)."""
        body = json.dumps({"requests": requests, "matching": matching}).encode()
        request = urllib.request.Request(self.url + CONTROL_PATH, data=body, method="POST")
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()


def main() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from devserver.redact import install_log_filters

    parser = argparse.ArgumentParser(description="moto (DynamoDB, SQS, EventBridge) with a DynamoDB throttle switch")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise here
    install_log_filters()  # werkzeug logs "Bad request syntax ('GET /?token=...')" at ERROR
    app = throttling_middleware(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
