"""A REST API's Lambda TOKEN authorizers, run in front of the routes as API Gateway runs them.

For a route with a Chalice built-in authorizer (``@app.authorizer``), before the integration:

* no ``Authorization`` header (the identity source, the authorizer's ``header``): ``UNAUTHORIZED`` (401), the function uncalled;
* else the authorizer function is called with a TOKEN event (``authorizationToken``, ``methodArn``).
  It raising exactly ``Unauthorized`` is ``UNAUTHORIZED`` (401); any other failure, a timeout or a
  result without a policy is ``AUTHORIZER_FAILURE`` / ``AUTHORIZER_CONFIGURATION_ERROR`` (500); a
  policy that does not allow ``execute-api:Invoke`` on the method's ARN is ``ACCESS_DENIED`` (403);
* an allowing policy's ``principalId`` and ``context`` become the event's ``requestContext.authorizer``,
  and the result is kept for the authorizer's TTL, keyed by the header (API Gateway's cache): the
  token's next calls, to any route the policy allows, do not call the function again.

The gateway responses are the packaged API's own (``infra/openapi.py``), rendered as API Gateway renders them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from chalice.local import ARNMatcher

from devserver.apigw.integration import LambdaIntegration
from devserver.apigw.refusals import Refusal

log = logging.getLogger("devserver.apigw")

#: API Gateway's authorizer result TTL when the authorizer names none.
DEFAULT_TTL_S = 300
#: The error message with which a Lambda authorizer asks API Gateway for a 401.
UNAUTHORIZED = "Unauthorized"


@dataclass(frozen=True)
class _Allowed:
    resources: tuple[str, ...]
    context: Mapping[str, Any]
    expires_at: float


def method_arn(context: Mapping[str, Any], region: str) -> str:
    """``arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<resource path>``."""
    path = context["resourcePath"].lstrip("/")
    return (f"arn:aws:execute-api:{region}:{context['accountId']}:{context['apiId']}/{context['stage']}/"
            f"{context['httpMethod']}/{path}")


def allowed_resources(result: Any) -> tuple[str, ...] | None:
    """The resources a policy allows ``execute-api:Invoke`` on; None if the result is no policy."""
    if not isinstance(result, Mapping) or not isinstance(result.get("principalId"), str):
        return None
    statements = (result.get("policyDocument") or {}).get("Statement")
    if not isinstance(statements, list):
        return None
    resources: list[str] = []
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") == "Allow" and ("execute-api:Invoke" in actions or "execute-api:*" in actions):
            listed = statement.get("Resource", [])
            resources += [listed] if isinstance(listed, str) else listed
    return tuple(resources)


class TokenAuthorizers:
    """Runs the routes' authorizers through the Lambda integration, with API Gateway's result cache."""

    def __init__(self, integration: LambdaIntegration, region: str) -> None:
        self._integration = integration
        self._region = region
        self._cache: dict[tuple[str, str], _Allowed] = {}
        self._lock = threading.Lock()

    async def authorize(self, authorizer: Any, event: dict[str, Any], request_id: str) -> Refusal | None:
        """None, with ``requestContext.authorizer`` set, if the request may go on; else the refusal."""
        header = str(getattr(authorizer.config, "header", None) or "Authorization").lower()
        token = next((value for name, value in (event.get("headers") or {}).items() if name.lower() == header), None)
        if not token:
            return Refusal("UNAUTHORIZED", UNAUTHORIZED)
        context = event["requestContext"]
        arn = method_arn(context, self._region)
        key = (authorizer.name, token)
        with self._lock:
            allowed = self._cache.get(key)
        if allowed is None or allowed.expires_at <= time.monotonic():
            refusal, allowed = await self._call(authorizer, token, arn, request_id)
            if refusal is not None:
                return refusal
        if allowed is None or not ARNMatcher(arn).does_any_resource_match(list(allowed.resources)):
            return Refusal("ACCESS_DENIED", "User is not authorized to access this resource")
        context["authorizer"] = dict(allowed.context)
        return None

    async def _call(self, authorizer: Any, token: str, arn: str,
                    request_id: str) -> tuple[Refusal | None, _Allowed | None]:
        event = {"type": "TOKEN", "authorizationToken": token, "methodArn": arn}
        outcome = await self._integration.invoke_authorizer(authorizer, authorizer.name, event, request_id)
        if outcome.error is not None and str(outcome.error) == UNAUTHORIZED:
            return Refusal("UNAUTHORIZED", UNAUTHORIZED), None
        if outcome.error is not None or outcome.timed_out:
            return Refusal("AUTHORIZER_FAILURE", "Internal server error"), None
        resources = allowed_resources(outcome.response)
        if resources is None:
            log.error("REST %s: the authorizer %s returned no policy", request_id, authorizer.name)
            return Refusal("AUTHORIZER_CONFIGURATION_ERROR", "Internal server error"), None
        result = outcome.response
        allowed = _Allowed(resources, {**(result.get("context") or {}), "principalId": result["principalId"]},
                           time.monotonic() + self._ttl(authorizer))
        if allowed.expires_at > time.monotonic():
            with self._lock:
                self._cache[(authorizer.name, token)] = allowed
        return None, allowed

    @staticmethod
    def _ttl(authorizer: Any) -> float:
        """The authorizer's ``ttl_seconds``; API Gateway's 300 when it names none (0 caches nothing)."""
        ttl = getattr(authorizer.config, "ttl_seconds", None)
        return float(DEFAULT_TTL_S if ttl is None else ttl)
