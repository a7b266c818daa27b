"""The local stack's request validation: the packaged API's validators (infra/openapi.py), applied
as API Gateway applies them, and answered with the packaged API's gateway responses."""
from __future__ import annotations

import json
from typing import Any

import pytest

from devserver.apigw.refusals import Refusal, refusal_response
from devserver.apigw.validation import RequestValidator
from infra.openapi import validation


@pytest.fixture(scope="module")
def validator() -> RequestValidator:
    return RequestValidator(validation())


def event(body: str | None = None, query: dict[str, str] | None = None,
          content_type: str | None = "application/json") -> dict[str, Any]:
    return {"headers": {"Content-Type": content_type} if content_type else None,
            "queryStringParameters": query, "body": body}


@pytest.mark.parametrize("body, words", [
    ("{nope", "Invalid JSON"),
    ("[]", "is not of type 'object'"),
    ("{}", "'prompt' is a required property"),
    ('{"prompt": ""}', "prompt: '' should be non-empty"),
    ('{"prompt": 5}', "prompt: 5 is not of type 'string'"),
    (json.dumps({"prompt": "x" * 25_001}), "prompt: 'xxx"),
])
def test_a_body_its_model_refuses_is_bad_request_body(validator: RequestValidator, body: str, words: str) -> None:
    refusal = validator.check("/v1/turns", "POST", event(body))
    assert refusal is not None and refusal.kind == "BAD_REQUEST_BODY" and refusal.message == "Invalid request body"
    assert words in refusal.details and len(refusal.details) < 300  # never the whole 25,001 characters


@pytest.mark.parametrize("body", ['{"prompt": "hi"}', '{"prompt": "hi", "conversationId": "trip", "trace": true}'])
def test_a_body_its_model_accepts_goes_on(validator: RequestValidator, body: str) -> None:
    assert validator.check("/v1/turns", "POST", event(body)) is None
    assert validator.check("/v1/turns", "POST", event(body, content_type=None)) is None  # JSON is the default


def test_a_body_of_another_type_is_not_checked_against_the_json_model(validator: RequestValidator) -> None:
    assert validator.check("/v1/turns", "POST", event("{}", content_type="text/plain")) is None


def test_a_missing_required_query_parameter_is_bad_request_parameters(validator: RequestValidator) -> None:
    refusal = validator.check("/v1/answers", "GET", event())
    assert refusal == Refusal("BAD_REQUEST_PARAMETERS", "Missing required request parameters: [q]",
                              "Missing required request parameters: [q]")
    assert validator.check("/v1/answers", "GET", event(query={"q": "why?"})) is None
    assert validator.check("/v1/conversations", "GET", event()) is None  # limit and cursor are optional


def test_a_route_without_a_validator_is_not_checked(validator: RequestValidator) -> None:
    assert validator.check("/v1/elsewhere", "POST", event("{nope")) is None


def test_a_refusal_is_answered_in_the_apps_envelope() -> None:
    response = refusal_response(Refusal("BAD_REQUEST_BODY", "Invalid request body", '[prompt: "" is too short]'), "r1")
    assert response.status == 400 and response.headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(bytes(response.body)) == {"error": {
        "code": "invalid_request", "message": "Invalid request body", "retryable": False,
        "details": '[prompt: "" is too short]'}}
