"""A small HTTP server of the local stack on a thread of its own (the control server, the hosted UI stand-in)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Type, TypeVar

S = TypeVar("S", bound="BackgroundServer")


class BackgroundServer:
    """``handler`` served on ``host:port`` (0: any free port) by a daemon thread, until ``stop``."""

    def __init__(self, host: str, port: int, handler: Type[BaseHTTPRequestHandler], name: str) -> None:
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start(self: S) -> S:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
