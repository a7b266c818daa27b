"""The event dicts API Gateway passes to a Lambda proxy integration: WebSocket routes, and
REST API resources (payload format 1.0).

Pure functions, no I/O, and the only builder of these events in the repo: the emulator,
``tests/support/events.py`` and ``bench/events.py`` all call them, so the shapes live in one place and
can be compared with AWS's by reading one file. Ids look like AWS's (15 base64 characters and
a ``=``); times use API Gateway's formats. Ids and times default to fresh ones, so a caller
without a live connection passes only what it cares about.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
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


def _rest_identity(source_ip: str, user_agent: str) -> dict[str, Any]:
    """``requestContext.identity`` of a REST request: every key AWS sends, null unless IAM or
    Cognito identity pools authorized the call (never here)."""
    identity: dict[str, Any] = dict.fromkeys(
        ("cognitoIdentityPoolId", "accountId", "cognitoIdentityId", "caller", "principalOrgId",
         "accessKey", "cognitoAuthenticationType", "cognitoAuthenticationProvider", "userArn",
         "user"))
    identity.update(sourceIp=source_ip, userAgent=user_agent)
    return identity


def _query(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """A REST event's two query forms: null (not absent, unlike ``$connect``) without a query."""
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi.items()}, multi


@dataclass(frozen=True)
class RestApiFacts:
    """What a REST API repeats in every event: which API and stage, under which domain."""

    api_id: str
    stage: str
    domain_name: str
    account_id: str = "123456789012"


def rest_event(api: RestApiFacts, method: str, resource: str, path: str,
               raw_headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]] = (),
               body: bytes | None = None, *, path_parameters: Mapping[str, str] | None = None,
               is_binary: bool = False, request_path: str | None = None,
               source_ip: str = "127.0.0.1", protocol: str = "HTTP/1.1",
               request_id: str | None = None, now_ms: int | None = None) -> dict[str, Any]:
    """A REST API request as its Lambda proxy integration gets it (payload format 1.0).

    ``resource`` is the matched template (``/v1/turns/{turn_id}``), ``path`` the path below the
    stage (``/v1/turns/abc``); ``request_path`` is the path as the client sent it, stage included
    (``/local/v1/turns/abc``), which ``requestContext.path`` repeats. Empty maps are null, as on
    AWS. The body arrives base64-encoded when its content type is one of the API's binary media
    types (``is_binary``), else as text; none is null. ``requestId`` is a UUID, as REST APIs'
    are (WebSocket APIs' look like ``new_id()``, as ``extendedRequestId`` does here).
    """
    now_ms = epoch_ms() if now_ms is None else now_ms
    headers, multi_headers = _headers(raw_headers)
    single_query, multi_query = _query(list(query))
    user_agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), "")
    text: str | None = None
    if body:
        # A text body that is not UTF-8 cannot be a JSON string: replaced, never an error here.
        text = base64.b64encode(body).decode("ascii") if is_binary else body.decode("utf-8", "replace")
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": hashlib.sha256(resource.encode()).hexdigest()[:6],  # stable per resource
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": new_id(),
            "requestTime": request_time(now_ms),
            "path": request_path or f"/{api.stage}{path}",
            "accountId": api.account_id,
            "protocol": protocol,
            "stage": api.stage,
            "domainPrefix": api.domain_name.split(".", 1)[0],
            "requestTimeEpoch": now_ms,
            "requestId": request_id or str(uuid.uuid4()),
            "identity": _rest_identity(source_ip, user_agent),
            "domainName": api.domain_name,
            "apiId": api.api_id,
        },
        "body": text,
        "isBase64Encoded": bool(text) and is_binary,
    }


def status_of(response: Any) -> int:
    """The HTTP status a Lambda proxy response asks for (200 when it names none)."""
    if isinstance(response, Mapping):
        try:
            return int(response.get("statusCode", 200))
        except (TypeError, ValueError):
            return 502
    return 200
