"""The REST API's OpenAPI (Swagger 2.0) description, generated from the app's routes and the wire schema.

Two products, one source:

* ``validation()``: what the packaged REST API adds to the body Chalice generates (merged into the
  ``RestAPI`` resource by ``infra.stack.merge_template``): ``POST /v1/turns``'s body as a model made
  from ``chalicelib/protocol.schema.json``'s ``AskMessage``, a request validator, the query
  parameters each route requires, and gateway responses in the app's error envelope, so API
  Gateway refuses a malformed request with ``400`` before any function runs;
* ``document()``: the published description, ``docs/openapi.json`` (``make openapi`` writes it; a
  test checks it is what this module generates): Chalice's paths and summaries (the routes'
  docstrings), the same models and parameters, the bearer token, and the responses each route gives,
  without API Gateway's integration details.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from infra import stack

SCHEMA = stack.ROOT / "chalicelib" / "protocol.schema.json"
PUBLISHED = stack.ROOT / "docs" / "openapi.json"
VALIDATOR = "body-and-parameters"
# API Gateway's own answers (a refused token, a request the validator rejected, a broken authorizer)
# in the app's error envelope, each with the header that lets the chat page's origin read it (CORS).
# ``$context.error.messageString`` is a JSON string already ("Invalid request body"); the validator's
# own words (``validationErrorString``) go in ``details``, as API Gateway's guide shows them.
INVALID = ('{"error": {"code": "invalid_request", "message": $context.error.messageString, "retryable": false, '
           '"details": "$context.error.validationErrorString"}}')
REFUSED_TOKEN = ('{"error": {"code": "unauthorized", "message": "Send a valid token: Authorization: Bearer <JWT> '
                 '(this one is missing, expired, or not one this API accepts).", "retryable": false}}')
NOT_ALLOWED = '{"error": {"code": "unauthorized", "message": "This token may not call this API.", "retryable": false}}'
NOT_VERIFIED = ('{"error": {"code": "internal", "message": "The token could not be checked just now; try again.", '
                '"retryable": true}}')
CORS_HEADER = {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"}
CHALLENGE_HEADER = {"gatewayresponse.header.WWW-Authenticate": "'Bearer realm=\"agentstream\"'"}


def _gateway_response(status: int, template: str, headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    return {"statusCode": status, "responseParameters": {**CORS_HEADER, **(headers or {})},
            "responseTemplates": {"application/json": template}}


GATEWAY_RESPONSES = {
    "BAD_REQUEST_BODY": _gateway_response(400, INVALID),
    "BAD_REQUEST_PARAMETERS": _gateway_response(400, INVALID),
    "UNAUTHORIZED": _gateway_response(401, REFUSED_TOKEN, CHALLENGE_HEADER),
    "ACCESS_DENIED": _gateway_response(403, NOT_ALLOWED),
    "AUTHORIZER_FAILURE": _gateway_response(500, NOT_VERIFIED),
    "AUTHORIZER_CONFIGURATION_ERROR": _gateway_response(500, NOT_VERIFIED),
}


def render_gateway_response(kind: str, message: str, validation_error: str = "") -> Tuple[int, Dict[str, str], str]:
    """A gateway response as API Gateway sends it: status, headers, body (the local stack's too).

    The body's two variables are substituted as API Gateway does: ``messageString`` as a JSON
    string, ``validationErrorString`` as the text inside one; the headers' static values unquoted.
    """
    response = GATEWAY_RESPONSES[kind]
    body = response["responseTemplates"]["application/json"]
    body = body.replace("$context.error.messageString", json.dumps(message))
    body = body.replace("$context.error.validationErrorString", json.dumps(validation_error)[1:-1])
    headers = {name.rsplit(".", 1)[1]: value[1:-1] for name, value in response["responseParameters"].items()}
    return int(response["statusCode"]), {**headers, "Content-Type": "application/json"}, body


# Each route's query parameters (name, required, description); a route absent has none.
QUERY: Dict[str, List[Dict[str, Any]]] = {
    "/v1/answers": [{"name": "q", "required": True, "description": "The question (1 to 25,000 characters)."}],
    "/v1/conversations": [
        {"name": "limit", "required": False, "description": "Conversations per page: 1 to 50 (default 20)."},
        {"name": "cursor", "required": False, "description": "The previous page's cursor: the page after it."},
    ],
    "/v1/conversations/{conversation_id}": [
        {"name": "limit", "required": False, "description": "Turns per page: 1 to 50 (default 20)."},
        {"name": "cursor", "required": False, "description": "The previous page's cursor: the page after it."},
    ],
}
BODY = {("/v1/turns", "post"): "AskMessage"}
RESPONSES: Dict[tuple, Dict[str, str]] = {
    ("/v1/turns", "post"): {"202": "Queued: the turn's id (Location: /v1/turns/{turnId})."},
    ("/v1/turns/{turn_id}", "get"): {"200": "The turn and its answer so far.", "404": "No such turn of yours."},
    ("/v1/turns/{turn_id}", "delete"): {"200": "Cancelled.", "202": "Being cancelled (it was running).",
                                         "400": "It has already ended.", "404": "No such turn of yours."},
    ("/v1/answers", "get"): {"200": "The answer (cached: true when no agent was called).",
                             "202": "Still being answered: poll Location."},
    ("/v1/conversations", "get"): {"200": "A page of your conversations, newest first."},
    ("/v1/conversations/{conversation_id}", "get"): {"200": "A page of the conversation's turns, oldest first.",
                                                     "404": "You have no turn in that conversation."},
}
COMMON_RESPONSES = {"400": "Malformed request (the error envelope says what).", "401": "No token, or one refused.",
                    "429": "Rate limited or over budget: Retry-After.", "500": "Not served; retryable."}


def models() -> Dict[str, Any]:
    """The request models, as draft-04 JSON Schema (what API Gateway's models take): the wire
    schema's definitions, with references to its own definitions kept as Swagger references."""
    definitions = json.loads(SCHEMA.read_text())["definitions"]
    wanted, found = list(BODY.values()), {}
    while wanted:
        name = wanted.pop()
        if name in found:
            continue
        found[name] = definitions[name]
        wanted += [ref.rsplit("/", 1)[1] for ref in _refs(definitions[name])]
    return {name: found[name] for name in sorted(found)}


def _refs(node: Any) -> List[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _parameters(path: str, method: str) -> List[Dict[str, Any]]:
    parameters = [{"in": "query", "type": "string", **spec} for spec in QUERY.get(path, [])]
    if (path, method) in BODY:
        name = BODY[(path, method)]
        parameters.append({"in": "body", "name": name, "required": True, "schema": {"$ref": f"#/definitions/{name}"}})
    return parameters


def validation() -> Dict[str, Any]:
    """What the packaged REST API's body gets besides Chalice's: merged into it (dicts merge)."""
    paths: Dict[str, Any] = {}
    for (path, method) in RESPONSES:
        operation: Dict[str, Any] = {"x-amazon-apigateway-request-validator": VALIDATOR}
        parameters = _parameters(path, method)
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(path, {})[method] = operation
    return {
        "definitions": models(),
        "x-amazon-apigateway-request-validators": {
            VALIDATOR: {"validateRequestBody": True, "validateRequestParameters": True}},
        "x-amazon-apigateway-gateway-responses": GATEWAY_RESPONSES,
        "paths": paths,
    }


def _chalice_paths() -> Dict[str, Any]:
    """Chalice's own description of the routes (methods, summaries from the docstrings, CORS)."""
    from chalice.deploy.swagger import CFNSwaggerGenerator

    import app

    return dict(CFNSwaggerGenerator().generate_swagger(app.app)["paths"])


def document() -> Dict[str, Any]:
    """The published description (``docs/openapi.json``)."""
    paths: Dict[str, Any] = {}
    for path, operations in sorted(_chalice_paths().items()):
        for method, generated in operations.items():
            if method == "options":  # CORS preflights: API Gateway answers them
                continue
            responses = {**RESPONSES[(path, method)], **COMMON_RESPONSES}
            operation = {
                "summary": generated.get("summary", ""),
                "operationId": f"{method}{''.join(part.title() for part in path.replace('{', '').replace('}', '').split('/'))}",
                "produces": ["application/json"],
                "parameters": [*_path_parameters(path), *_parameters(path, method)],
                "responses": {code: {"description": text} for code, text in sorted(responses.items())},
            }
            paths.setdefault(path, {})[method] = operation
    return {
        "swagger": "2.0",
        "info": {"title": "agentstream REST API", "version": "1",
                 "description": "The WebSocket's turns without a socket (docs/rest.md). Generated by infra/openapi.py."},
        "basePath": "/<stage>",
        "schemes": ["https"],
        "consumes": ["application/json"],
        "securityDefinitions": {"bearer": {"type": "apiKey", "in": "header", "name": "Authorization",
                                           "description": "Bearer <JWT>: the token $connect takes."}},
        "security": [{"bearer": []}],
        "paths": paths,
        "definitions": swagger2(models()),
    }


def swagger2(schema: Any) -> Any:
    """A JSON Schema as Swagger 2.0's schema objects take it: a ``["T", "null"]`` type is ``T`` with
    ``x-nullable`` (the vendor extension tools read), and ``null`` leaves enums. API Gateway's
    models, full draft-04 JSON Schema, keep the original (``validation``)."""
    if isinstance(schema, list):
        return [swagger2(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: swagger2(value) for key, value in schema.items()}
    kinds = converted.get("type")
    if isinstance(kinds, list):
        rest = [kind for kind in kinds if kind != "null"]
        converted["type"] = rest[0] if len(rest) == 1 else rest
        if "null" in kinds:
            converted["x-nullable"] = True
    if isinstance(converted.get("enum"), list) and None in converted["enum"]:
        converted["enum"] = [value for value in converted["enum"] if value is not None]
        converted["x-nullable"] = True
    return converted


def _path_parameters(path: str) -> List[Dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [{"in": "path", "name": name, "required": True, "type": "string"} for name in names]


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m infra.openapi``: write docs/openapi.json (``--check``: say whether it is current)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    current = PUBLISHED.read_text() if PUBLISHED.exists() else ""
    if check:
        if current != render():
            print(f"{PUBLISHED} is not what infra/openapi.py generates: run make openapi", file=sys.stderr)
            return 1
        return 0
    PUBLISHED.write_text(render())
    print(PUBLISHED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
