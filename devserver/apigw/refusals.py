"""API Gateway's own refusals of a REST request (gateway responses), before any route's function runs.

The kinds and their bodies are the packaged API's (``infra.openapi.GATEWAY_RESPONSES``), rendered
as API Gateway renders them, so a client sees here what it sees on AWS.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from infra.openapi import render_gateway_response


@dataclass(frozen=True)
class Refusal:
    """A gateway response kind, API Gateway's ``messageString`` for it and the validator's words."""

    kind: str
    message: str
    details: str = ""


def refusal_response(refusal: Refusal, request_id: str) -> web.Response:
    status, headers, body = render_gateway_response(refusal.kind, refusal.message, refusal.details)
    error_type = {401: "UnauthorizedException", 403: "AccessDeniedException"}.get(status)
    extra = {"x-amzn-RequestId": request_id, **({"x-amzn-ErrorType": error_type} if error_type else {})}
    return web.Response(status=status, body=body.encode("utf-8"), headers={**headers, **extra})
