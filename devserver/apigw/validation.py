"""A REST API's request validators, applied as API Gateway applies the packaged API's.

The definition is ``infra.openapi.validation()``, what ``infra/stack.py`` merges into the packaged
REST API: per route, the validator and the parameters it checks. Here, as there, after the
authorizer and before the function: a required query parameter missing is ``BAD_REQUEST_PARAMETERS``
(400), a JSON body that is not JSON or does not match its model (draft-04 JSON Schema) is
``BAD_REQUEST_BODY`` (400). A body of another content type is not checked against the JSON model
(API Gateway picks the model by content type); the app refuses it on its own.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from devserver.apigw.refusals import Refusal

BODY_MESSAGE = "Invalid request body"


class RequestValidator:
    def __init__(self, definition: Mapping[str, Any]) -> None:
        self._paths: Mapping[str, Any] = definition.get("paths", {})
        self._validators: Mapping[str, Any] = definition.get("x-amazon-apigateway-request-validators", {})
        self._definitions: Mapping[str, Any] = definition.get("definitions", {})
        self._models: dict[str, Any] = {}

    def check(self, resource: str, method: str, event: Mapping[str, Any]) -> Refusal | None:
        """The refusal API Gateway would answer the request with, or None."""
        operation = self._paths.get(resource, {}).get(method.lower())
        if not operation:
            return None
        validator = self._validators.get(operation.get("x-amazon-apigateway-request-validator", ""), {})
        parameters = operation.get("parameters", [])
        if validator.get("validateRequestParameters"):
            query = event.get("queryStringParameters") or {}
            missing = [p["name"] for p in parameters if p["in"] == "query" and p.get("required") and p["name"] not in query]
            if missing:
                message = f"Missing required request parameters: [{', '.join(missing)}]"
                return Refusal("BAD_REQUEST_PARAMETERS", message, message)
        body = next((p for p in parameters if p["in"] == "body"), None)
        if validator.get("validateRequestBody") and body is not None and self._is_json(event):
            return self._check_body(body["schema"]["$ref"].rsplit("/", 1)[1], event.get("body"))
        return None

    @staticmethod
    def _is_json(event: Mapping[str, Any]) -> bool:
        content_type = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "content-type"),
                            "application/json")  # API Gateway's default when none is sent
        return str(content_type).split(";", 1)[0].strip().lower() == "application/json"

    def _check_body(self, model: str, text: str | None) -> Refusal | None:
        try:
            document = json.loads(text or "")
        except ValueError as exc:
            return Refusal("BAD_REQUEST_BODY", BODY_MESSAGE, f"[Invalid JSON: {exc}]")
        errors = sorted(self._validator(model).iter_errors(document), key=lambda e: list(e.absolute_path))
        if errors:
            return Refusal("BAD_REQUEST_BODY", BODY_MESSAGE, "[" + ", ".join(_describe(e) for e in errors) + "]")
        return None

    def _validator(self, model: str) -> Any:
        if model not in self._models:
            from jsonschema import Draft4Validator  # the local stack's own dependency, loaded when first needed

            schema = {"definitions": dict(self._definitions), **self._definitions[model]}
            self._models[model] = Draft4Validator(schema)
        return self._models[model]


MAX_MESSAGE_CHARS = 200  # a message quotes the value it refuses: a 25,001-character prompt, say


def _describe(error: Any) -> str:
    where = "/".join(str(part) for part in error.absolute_path)
    message = str(error.message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS - 3] + "..."
    return f"{where}: {message}" if where else message
