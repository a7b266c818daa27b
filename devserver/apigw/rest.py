"""The REST API: API Gateway's REST API with a Lambda proxy integration on each of the app's routes.

Chalice deploys every ``@app.route`` as a resource of one REST API whose methods all call one
function, ``<app_name>-<stage>`` (the app object itself), and adds an ``OPTIONS`` method answered by
API Gateway itself (a MOCK integration) on each resource with a CORS-enabled route. Here, on the
emulator's port:

* ``/<stage>/...``, the deployed URL shape (``https://<api-id>.execute-api.<region>.amazonaws.com/<stage>/v1/turns``),
  and, for convenience, the app's top-level paths without the stage (``/v1/...``), as a custom
  domain name mapped at its root would serve them (``requestContext.path`` is then stageless);
* routing with Chalice's own ``RouteMatcher`` over ``app.routes``; a path no resource matches, and a
  method the resource lacks, get what API Gateway answers both: 403 ``Missing Authentication Token``
  (never 404 or 405; it does not tell which paths exist). With an ``Authorization`` header that is
  not a SigV4 signature, such as ``Bearer <JWT>``, the 403 is ``IncompleteSignatureException``;
* the route's authorizer (``authorizers``), then the packaged API's request validation
  (``validation``, from ``infra/openapi.py``), each answering API Gateway's own refusal before the
  function runs;
* the preflight from Chalice's ``LocalGateway`` (the headers its swagger gives the MOCK ``OPTIONS``);
* the 29 s integration timeout (504 ``Endpoint request timed out``), and 502 ``Internal server
  error`` when the function raises or answers something that is not a proxy response.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from chalice.config import Config
from chalice.local import LocalGateway, RouteMatcher
from multidict import CIMultiDict

from devserver.apigw import events
from devserver.apigw.authorizers import TokenAuthorizers
from devserver.apigw.integration import Invocation, LambdaIntegration
from devserver.apigw.refusals import refusal_response
from devserver.apigw.validation import RequestValidator
from infra.openapi import validation

log = logging.getLogger("devserver.apigw")

#: The keys of a Lambda proxy response; any other makes it malformed (502).
_PROXY_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})
#: Integration response headers API Gateway sets itself rather than passing on.
_NOT_PASSED_ON = frozenset({"content-length", "transfer-encoding", "connection"})


def gateway_error(status: int, message: str, request_id: str, error_type: str | None = None) -> web.Response:
    """An answer of API Gateway's own (no integration involved, or it failed): ``{"message": ...}``."""
    headers = {"x-amzn-RequestId": request_id}
    if error_type:
        headers["x-amzn-ErrorType"] = error_type
    return web.Response(status=status, text=json.dumps({"message": message}),
                        content_type="application/json", headers=headers)


def no_such_method(headers: Mapping[str, str], request_id: str) -> web.Response:
    """API Gateway's 403 for a path or method the API lacks: it reads an ``Authorization``
    header as a SigV4 signature and names the header's hash (not the header) when it is not one."""
    authorization = headers.get("Authorization")
    if authorization is None:
        return gateway_error(403, "Missing Authentication Token", request_id,
                             "MissingAuthenticationTokenException")
    digest = base64.b64encode(hashlib.sha256(authorization.encode()).digest()).decode("ascii")
    return gateway_error(403, "Invalid key=value pair (missing equal-sign) in Authorization header "
                              f"(hashed with SHA-256 and encoded with Base64): '{digest}'.",
                         request_id, "IncompleteSignatureException")


def is_binary(content_type: str, binary_types: list[str]) -> bool:
    """Whether API Gateway base64-encodes a body of this type: its media type (no parameters)
    is one of the API's binary media types, or matches one of their ``type/*`` or ``*/*``."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        return False
    wanted = {t.lower() for t in binary_types}
    return media in wanted or "*/*" in wanted or f"{media.split('/', 1)[0]}/*" in wanted


def proxy_response(response: Any) -> tuple[int, CIMultiDict[str], bytes]:
    """Status, headers and body of a Lambda proxy response; ``ValueError`` when API Gateway would
    call it malformed. ``multiValueHeaders`` win over ``headers`` of the same name, as on AWS."""
    if not isinstance(response, Mapping) or set(response) - _PROXY_KEYS:
        raise ValueError(f"not a proxy response: {type(response).__name__}")
    status = response.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int | str):
        raise ValueError(f"statusCode {status!r}")
    single = response.get("headers") or {}
    multi = response.get("multiValueHeaders") or {}
    body = response.get("body")
    if not isinstance(single, Mapping) or not isinstance(multi, Mapping) \
            or not isinstance(body, str | None) or any(not isinstance(v, list) for v in multi.values()):
        raise ValueError("headers, multiValueHeaders or body of the wrong type")
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in single.items():
        if name not in multi:
            headers.add(str(name), str(value))
    for name, values in multi.items():
        for value in values:
            headers.add(str(name), str(value))
    data = (body or "").encode("utf-8")
    if response.get("isBase64Encoded") and body:
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise ValueError("isBase64Encoded, and the body is not base64") from exc
    return int(status), headers, data


def http_response(outcome: Invocation, event: Mapping[str, Any]) -> web.Response:
    """What the client gets for one integration call, with API Gateway's own headers added."""
    context = event["requestContext"]
    request_id = context["requestId"]
    if outcome.timed_out:
        return gateway_error(504, "Endpoint request timed out", request_id)
    if outcome.error is not None:
        return gateway_error(502, "Internal server error", request_id, "InternalServerErrorException")
    try:
        status, headers, body = proxy_response(outcome.response)
    except ValueError as exc:
        log.error("REST %s: malformed Lambda proxy response (%s)", request_id, exc)
        return gateway_error(502, "Internal server error", request_id, "InternalServerErrorException")
    for name in _NOT_PASSED_ON:
        headers.popall(name, None)
    headers.setdefault("Content-Type", "application/json")
    headers["x-amzn-RequestId"] = request_id
    headers["x-amz-apigw-id"] = context["extendedRequestId"]
    headers["X-Amzn-Trace-Id"] = events.trace_id(context["requestTimeEpoch"] / 1000)
    return web.Response(status=status, body=body, headers=headers)


class RestApi:
    """The REST API's routes, served by the emulator's aiohttp app."""

    def __init__(self, app: Any, integration: LambdaIntegration, *, api_id: str, stage: str) -> None:
        self.app = app
        self.api_id = api_id
        self.stage = stage
        self._integration = integration
        # An app without routes (bench's, the emulator tests') has an API with no resources.
        self._routes: Mapping[str, Mapping[str, Any]] = getattr(app, "routes", {})
        self._binary_types: list[str] = getattr(getattr(app, "api", None), "binary_types", [])
        self._matcher = RouteMatcher(list(self._routes))
        self._authorizers = TokenAuthorizers(integration, os.environ.get("AWS_REGION", "us-east-1"))
        self._validator = RequestValidator(validation() if self._routes else {})

    def routes(self) -> list[web.RouteDef]:
        """``/<stage>/...`` (but ``@connections``, the management API's) and the app's top-level
        paths without a stage; register them before the page's catch-all ``GET``."""
        staged = web.route("*", f"/{self.stage}/{{path:(?!@connections/).+}}", self._staged)
        tops = sorted({route.split("/")[1] for route in self._routes} - {"", self.stage})
        return [staged] + [web.route("*", f"/{top}{{path:(?:/.*)?}}", self._unstaged)
                           for top in tops if not top.startswith("{")]

    async def _staged(self, request: web.Request) -> web.StreamResponse:
        raw_path = "/" + request.rel_url.raw_path.split("/", 2)[2]
        return await self._serve(request, raw_path)

    async def _unstaged(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.rel_url.raw_path)

    def _match(self, raw_path: str) -> tuple[str, dict[str, str]] | None:
        """The resource a path (below the stage, still percent-encoded) reaches, and its
        decoded path parameters; None if none does (an empty ``{param}`` matches nothing)."""
        try:
            match = self._matcher.match_route(raw_path)
        except ValueError:
            return None
        captured = {name: unquote(value) for name, value in match.captured.items()}
        return (match.route, captured) if all(captured.values()) else None

    async def _serve(self, request: web.Request, raw_path: str) -> web.StreamResponse:
        """Route one request: to API Gateway's own answers, or through the Lambda integration."""
        request_id = str(uuid.uuid4())  # REST APIs' request ids are UUIDs
        method = request.method
        matched = self._match(raw_path)
        methods = self._routes[matched[0]] if matched else {}
        if matched and method == "OPTIONS" and "OPTIONS" not in methods \
                and any(entry.cors for entry in methods.values()):
            return self._preflight(matched[0], request_id)
        if matched is None or method not in methods:
            log.info("REST %s %s -> 403 (no such resource or method)", method, request.path)
            return no_such_method(request.headers, request_id)
        event = await self._event(request, raw_path, *matched, request_id)
        authorizer = methods[method].authorizer
        refusal = await self._authorizers.authorize(authorizer, event, request_id) if authorizer else None
        refusal = refusal or self._validator.check(matched[0], method, event)
        if refusal is not None:
            log.info("REST %s %s -> %s (API Gateway's own)", method, matched[0], refusal.kind)
            return refusal_response(refusal, request_id)
        outcome = await self._integration.invoke_api(event, request_id)
        response = http_response(outcome, event)
        log.info("REST %s %s -> %d (%.1f ms)%s", method, matched[0], response.status, outcome.elapsed_ms,
                 " integration timed out (the function runs on)" if outcome.timed_out else "")
        return response

    async def _event(self, request: web.Request, raw_path: str, resource: str,
                     parameters: dict[str, str], request_id: str) -> dict[str, Any]:
        """The proxy event: the client's headers plus those API Gateway adds, the body read whole."""
        now = time.time()
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        source_ip = peer[0] if peer else "127.0.0.1"
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        proxy_headers = [("X-Amzn-Trace-Id", events.trace_id(now)), ("X-Forwarded-For", source_ip),
                         ("X-Forwarded-Port", str(request.url.port or 80)), ("X-Forwarded-Proto", "http")]
        return events.rest_event(
            events.RestApiFacts(self.api_id, self.stage, request.host), request.method, resource,
            unquote(raw_path), raw_headers + proxy_headers, request.rel_url.query.items(), body,
            path_parameters=parameters, request_path=request.path, source_ip=source_ip,
            is_binary=is_binary(request.headers.get("Content-Type", ""), self._binary_types),
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
            request_id=request_id, now_ms=events.epoch_ms(now))

    def _preflight(self, resource: str, request_id: str) -> web.Response:
        """The CORS preflight API Gateway answers itself (Chalice deploys it as a MOCK integration)."""
        # Chalice's own dev server computes these headers as its swagger gives the MOCK integration:
        # reused rather than rewritten (only that method; the rest of LocalGateway is its HTTP server).
        gateway = LocalGateway(self.app, Config())
        headers = gateway._autogen_options_headers({"requestContext": {"resourcePath": resource}})
        headers["x-amzn-RequestId"] = request_id
        return web.Response(status=200, body=b"", content_type="application/json", headers=headers)
