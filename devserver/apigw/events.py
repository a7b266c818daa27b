"""The event dicts API Gateway passes to a WebSocket route's Lambda proxy integration.

Pure functions, no I/O, and the only builder of these events in the repo: the emulator,
``tests/support/events.py`` and ``bench/events.py`` all call them, so the shapes live in one place and
can be compared with AWS's by reading one file. Ids look like AWS's (15 base64 characters and
a ``=``); times use API Gateway's formats. Ids and times default to fresh ones, so a caller
without a live connection passes only what it cares about.
"""
from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Handshake headers API Gateway does not pass on to the integration.
_HOP_BY_HOP = frozenset({"connection", "upgrade", "content-length", "transfer-encoding"})


def new_id() -> str:
    """An id shaped like API Gateway's connection, request and message ids.

    Standard base64 of 11 random bytes (e.g. ``ZJ3vYcL9IAMCK0w=``); ids with a
    ``/`` are drawn again so an id is always one URL path segment.
    """
    while True:
        value = base64.b64encode(os.urandom(11)).decode("ascii")
        if "/" not in value:
            return value


def trace_id(now: float | None = None) -> str:
    """An X-Ray trace header value, as API Gateway adds to the handshake headers."""
    seconds = int(time.time() if now is None else now)
    return f"Root=1-{seconds:08x}-{os.urandom(12).hex()}"


def epoch_ms(now: float | None = None) -> int:
    """Milliseconds since the epoch, the unit of ``connectedAt`` and ``requestTimeEpoch``."""
    return int((time.time() if now is None else now) * 1000)


def request_time(now_ms: int) -> str:
    """API Gateway's ``requestTime`` format, e.g. ``09/Apr/2020:18:03:37 +0000``."""
    t = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


def iso8601(epoch_milliseconds: int) -> str:
    """The ISO 8601 timestamp form GetConnection returns (botocore parses it to datetime)."""
    t = datetime.fromtimestamp(epoch_milliseconds / 1000, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class ConnectionFacts:
    """What API Gateway knows about a connection and repeats in every event."""

    connection_id: str
    api_id: str
    stage: str
    domain_name: str
    source_ip: str = "127.0.0.1"
    user_agent: str = ""
    connected_at: int = field(default_factory=epoch_ms)  # epoch ms


def _request_context(facts: ConnectionFacts, route_key: str, event_type: str,
                     request_id: str, now_ms: int) -> dict[str, Any]:
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": request_time(now_ms),
        "messageDirection": "IN",
        "stage": facts.stage,
        "connectedAt": facts.connected_at,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": facts.source_ip, "userAgent": facts.user_agent},
        "requestId": request_id,
        "domainName": facts.domain_name,
        "connectionId": facts.connection_id,
        "apiId": facts.api_id,
    }


def _headers(raw: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``headers`` (last value wins) and ``multiValueHeaders``, keeping the client's casing."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in raw:
        if name.lower() in _HOP_BY_HOP:
            continue
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def connect_event(facts: ConnectionFacts, raw_headers: Iterable[tuple[str, str]],
                  query: Iterable[tuple[str, str]] = (), *,
                  request_id: str | None = None) -> dict[str, Any]:
    """The ``$connect`` event: the handshake's headers and query string (name, value pairs).

    As on AWS, ``queryStringParameters`` and ``multiValueQueryStringParameters`` are
    absent when the URL has no query string, and the last value of a repeated
    name wins in the single-value forms. Its time is ``facts.connected_at``.
    """
    headers, multi_headers = _headers(raw_headers)
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": multi_headers,
    }
    pairs = list(query)
    if pairs:
        event["queryStringParameters"] = {k: v for k, v in pairs}
        multi_query: dict[str, list[str]] = {}
        for k, v in pairs:
            multi_query.setdefault(k, []).append(v)
        event["multiValueQueryStringParameters"] = multi_query
    event["requestContext"] = _request_context(
        facts, "$connect", "CONNECT", request_id or new_id(), facts.connected_at)
    event["isBase64Encoded"] = False
    return event


def message_event(facts: ConnectionFacts, body: str | None, *, is_base64: bool = False,
                  route_key: str = "$default", request_id: str | None = None,
                  message_id: str | None = None, now_ms: int | None = None) -> dict[str, Any]:
    """A message event (``$default`` or a custom route): one client message, its body as
    sent, already base64-encoded when ``is_base64`` (a binary frame)."""
    context = _request_context(facts, route_key, "MESSAGE", request_id or new_id(),
                               epoch_ms() if now_ms is None else now_ms)
    context["messageId"] = message_id or new_id()
    # API Gateway's message events carry only the source IP as identity.
    context["identity"] = {"sourceIp": facts.source_ip}
    return {"requestContext": context, "body": body, "isBase64Encoded": is_base64}


def disconnect_event(facts: ConnectionFacts, status_code: int, reason: str, *,
                     request_id: str | None = None, now_ms: int | None = None) -> dict[str, Any]:
    """The ``$disconnect`` event, with the close code and reason API Gateway saw."""
    context = _request_context(facts, "$disconnect", "DISCONNECT", request_id or new_id(),
                               epoch_ms() if now_ms is None else now_ms)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    headers = {"Host": facts.domain_name, "x-api-key": "",
               "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def gateway_error_frame(message: str, connection_id: str, request_id: str) -> str:
    """The JSON frame API Gateway itself sends a client when a route's integration fails."""
    return json.dumps({"message": message, "connectionId": connection_id,
                       "requestId": request_id})


def status_of(response: Any) -> int:
    """The HTTP status a Lambda proxy response asks for (200 when it names none)."""
    if isinstance(response, Mapping):
        try:
            return int(response.get("statusCode", 200))
        except (TypeError, ValueError):
            return 502
    return 200
