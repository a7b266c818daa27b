"""The local stack's fault switchboard: ``POST /faults`` with a JSON object, on loopback.

Tests (and curious people) use it to make AWS misbehave the way it does in production:

    {"fail_posts": 3}                management API posts fail with LimitExceededException (429)
    {"fail_posts": 1, "status": 410, "error": "GoneException"}
    {"fail_posts": 1000, "status": 403, "error": "ForbiddenException", "connection": "<connectionId>"}
                                     ... only posts to that connection
    {"throttle_dynamodb": 2}         the next DynamoDB requests are throttled
    {"throttle_dynamodb": 6, "matching": "claimId"}   ... only requests whose body holds that text
    {"kill_worker_after_s": 2.5}     the next worker invocation is killed (SIGKILL) after 2.5 s
    {"kill_worker_after_s": 120, "kill_turn": "<turnId>"}   ... the next one that serves that turn
    {"kill_worker": true}            ... or now, at a point of its turn the caller chose: arm it with a
                                     long kill_worker_after_s, strike once a chunk arrived ("killed": n)
    {"drop": "<connectionId>"}       the client's connection is cut, no close frame

``GET /stats`` answers what the SQS event source has done so far (invocations, the largest batch,
records delivered again after a failure), so a test can tell a retry from a first try.
"""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Dict

from devserver.serving import BackgroundServer


class ControlServer(BackgroundServer):
    def __init__(
        self, host: str, apply: Callable[[Dict[str, Any]], Dict[str, Any]], stats: Callable[[], Dict[str, Any]]
    ) -> None:
        apply_faults = apply

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != "/stats":
                    self._reply(404, {"message": "GET /stats"})
                    return
                self._reply(200, stats())

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != "/faults":
                    self._reply(404, {"message": "POST /faults"})
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                    self._reply(200, apply_faults(body))
                except (ValueError, KeyError, TypeError) as exc:
                    self._reply(400, {"message": str(exc)})

            def _reply(self, status: int, body: Dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(host, 0, Handler, "control")
