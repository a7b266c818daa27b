"""The REST API's answers (/v1): one error envelope and one HTTP status per error code.

Errors carry the WebSocket's codes, so a client branches on the same ``code`` whichever API it
uses: ``{"error": {"code", "message", "retryable", "retryAfterMs"?}}``.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Optional

from chalice import Response

from chalicelib.protocol import ErrorCode
from chalicelib.turns.outcomes import Failure

JSON = "application/json"
STATUS: Dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.QUOTA_EXCEEDED: 429,
}


class HttpError(Exception):
    """A request answered with an error: raised anywhere under a route, answered by ``error_response``."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def status_of(code: ErrorCode) -> int:
    """The HTTP status of an error code: what a REST client should do, as HTTP says it."""
    return STATUS.get(code, 500)


def json_response(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), {"Content-Type": JSON, **(headers or {})}, status)


def error_body(failure: Failure) -> Dict[str, Any]:
    error: Dict[str, Any] = {"code": str(failure.code), "message": failure.message, "retryable": failure.retryable}
    if failure.retry_after_ms is not None:
        error["retryAfterMs"] = failure.retry_after_ms
    return {"error": error}


def error_response(failure: Failure) -> Response:
    """The envelope, with ``Retry-After`` (whole seconds) when the client should wait, and the
    ``WWW-Authenticate`` challenge a 401 owes its client."""
    headers: Dict[str, str] = {}
    if failure.retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, math.ceil(failure.retry_after_ms / 1000)))
    if failure.code == ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="agentstream"'
    return json_response(status_of(failure.code), error_body(failure), headers)
