"""moto's server (DynamoDB, SQS) on loopback, with an injectable DynamoDB throttle.

moto never throttles; AWS does. ``throttle_dynamodb(n)`` makes the next n DynamoDB requests fail
with ``ProvisionedThroughputExceededException`` exactly as DynamoDB sends it, so the app's real
botocore retry path (and what happens when it gives up) is exercised.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Iterable, Optional

_THROTTLED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded (injected).",
    }
).encode()


class MotoServer:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._throttles = 0
        self.throttled = 0
        self._lock = threading.Lock()
        self._server: Optional[Any] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def throttle_dynamodb(self, requests: int) -> None:
        with self._lock:
            self._throttles = requests

    def _take_throttle(self) -> bool:
        with self._lock:
            if self._throttles <= 0:
                return False
            self._throttles -= 1
            self.throttled += 1
            return True

    def _wsgi(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def middleware(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_") and self._take_throttle():
                start_response(
                    "400 Bad Request",
                    [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(_THROTTLED)))],
                )
                return [_THROTTLED]
            return app(environ, start_response)

        return middleware

    def start(self) -> "MotoServer":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(self.host, self.port, self._wsgi(app), threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
