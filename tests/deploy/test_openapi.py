"""The REST API's description and request validation (``infra/openapi.py``): generated from the
routes and the wire schema, published as ``docs/openapi.json``, merged into the packaged REST API."""
from __future__ import annotations

import json
import re

import fastjsonschema
import pytest

from chalicelib.protocol import Ask, ProtocolError, parse_client_message
from infra import openapi, stack


def test_the_published_description_is_what_the_code_generates(tmp_path, monkeypatch):
    assert openapi.main(["--check"]) == 0, "docs/openapi.json is stale: run make openapi"
    stale = tmp_path / "openapi.json"
    stale.write_text(openapi.PUBLISHED.read_text().replace("/v1/turns", "/v1/trips", 1))
    monkeypatch.setattr(openapi, "PUBLISHED", stale)
    assert openapi.main(["--check"]) == 1


def test_the_published_description_is_valid_swagger_and_names_every_route():
    from openapi_spec_validator import validate

    import app

    document = json.loads(openapi.PUBLISHED.read_text())
    validate(document)
    routes = {(path, method.lower()) for path, entries in app.app.routes.items() for method in entries}
    described = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert described == routes
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"], (path, method)  # the route's docstring
            assert {"401", "500"} <= set(operation["responses"]), (path, method)
    assert document["definitions"]["AskMessage"]["properties"]["trace"] == {
        **json.loads(openapi.SCHEMA.read_text())["definitions"]["AskMessage"]["properties"]["trace"],
        "type": "boolean", "x-nullable": True}


@pytest.fixture(scope="module")
def body():
    return stack.merge_template("dev")["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]


def test_the_packaged_api_validates_the_ask_before_any_function_runs(body, templates):
    wire = json.loads(openapi.SCHEMA.read_text())["definitions"]
    assert body["definitions"] == {name: wire[name] for name in body["definitions"]}  # the wire schema, verbatim
    assert "AskMessage" in body["definitions"]
    validators = body["x-amazon-apigateway-request-validators"]
    assert validators == {openapi.VALIDATOR: {"validateRequestBody": True, "validateRequestParameters": True}}
    ask = body["paths"]["/v1/turns"]["post"]
    assert ask["x-amazon-apigateway-request-validator"] == openapi.VALIDATOR
    assert ask["parameters"] == [{"in": "body", "name": "AskMessage", "required": True,
                                  "schema": {"$ref": "#/definitions/AskMessage"}}]
    answers = body["paths"]["/v1/answers"]["get"]["parameters"]
    assert [(p["name"], p["required"]) for p in answers] == [("q", True)]
    for packaged in templates.values():  # merged into Chalice's body: its integrations kept
        post = packaged["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]["/v1/turns"]["post"]
        assert post["x-amazon-apigateway-request-validator"] == openapi.VALIDATOR
        assert post["x-amazon-apigateway-integration"]["type"] == "aws_proxy"


@pytest.mark.parametrize("sent", [
    '{"prompt": "hi"}', '{"prompt": "hi", "conversationId": "trip", "requestId": null, "trace": true}',
    '{"prompt": ""}', '{"prompt": 5}', '{}', '{"prompt": "hi", "requestId": ""}', '{"prompt": "hi", "trace": "yes"}',
    '{"prompt": "' + "x" * 25_001 + '"}', '{"prompt": "\\u200b  "}', '{"action": "ask", "prompt": "hi"}',
])
def test_api_gateway_refuses_what_the_app_refuses(body, sent):
    """The model (draft-04, as API Gateway reads it) against the app's own parser, for one body each."""
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "definitions": body["definitions"],
              **body["definitions"]["AskMessage"]}
    try:
        fastjsonschema.compile(schema)(json.loads(sent))
        gateway = True
    except fastjsonschema.JsonSchemaException:
        gateway = False
    try:
        app = isinstance(parse_client_message(sent), Ask)
    except ProtocolError:
        app = False
    assert gateway == app, sent


@pytest.mark.parametrize("kind, status, code, message", [
    ("BAD_REQUEST_BODY", 400, "invalid_request", "Invalid request body"),
    ("BAD_REQUEST_PARAMETERS", 400, "invalid_request", "Missing required request parameters: [q]"),
    ("UNAUTHORIZED", 401, "unauthorized", "Send a valid token"),
    ("ACCESS_DENIED", 403, "unauthorized", "This token may not call this API."),
    ("AUTHORIZER_FAILURE", 500, "internal", "The token could not be checked"),
    ("AUTHORIZER_CONFIGURATION_ERROR", 500, "internal", "The token could not be checked"),
])
def test_api_gateways_own_answers_are_in_the_apps_error_envelope(body, kind, status, code, message):
    response = body["x-amazon-apigateway-gateway-responses"][kind]
    template = response["responseTemplates"]["application/json"]
    assert not re.search(r"\$(?!context\.error\.(messageString|validationErrorString))", template)
    # Rendered as API Gateway renders it: messageString a JSON string, the validator's words inside one.
    answered, headers, rendered = openapi.render_gateway_response(kind, message, "[string '' is too short]")
    error = json.loads(rendered)["error"]
    assert (answered, error["code"]) == (status, code) and error["message"].startswith(message)
    assert error["retryable"] is (status == 500)
    assert headers["Access-Control-Allow-Origin"] == "*"  # the chat page reads the refusal too
    assert ("WWW-Authenticate" in headers) is (status == 401)
    assert set(body["x-amazon-apigateway-gateway-responses"]) == set(openapi.GATEWAY_RESPONSES)


def test_every_route_is_behind_the_token_authorizer_with_a_result_ttl(templates):
    """Verified by its own function before any route runs; invoked by name, as the routes' function is."""
    from chalicelib.handlers import rest

    for stage, packaged in templates.items():
        api = packaged["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
        authorizer = api["securityDefinitions"][stack.REST_AUTHORIZER]
        assert authorizer["name"] == "Authorization" and authorizer["x-amazon-apigateway-authtype"] == "custom"
        settings = authorizer["x-amazon-apigateway-authorizer"]
        assert settings["type"] == "token" and settings["authorizerResultTtlInSeconds"] == rest.AUTHORIZER_TTL_S
        assert settings["authorizerUri"]["Fn::Sub"].endswith(
            f":function:{stack.function_name('${Stage}', stack.REST_AUTHORIZER)}/invocations")
        assert packaged["Resources"]["RestAuthorizer"]["Properties"]["Handler"] == "app.rest_authorizer"
        assert "RestAuthorizer" not in json.dumps(packaged["Resources"]["RestAPI"]), stage  # no cycle through the page
        for path, operations in api["paths"].items():
            for method, operation in operations.items():
                if method != "options":  # the CORS preflight carries no token
                    assert operation["security"] == [{stack.REST_AUTHORIZER: []}], (path, method)


def test_the_rest_api_invokes_its_function_by_name_so_the_page_can_name_the_api(templates):
    """The page's CSP names the REST API, the page's URL is the app client's callback, the functions'
    environment names the app client: the API may not depend on the function as well (a cycle)."""
    for stage, packaged in templates.items():
        api = packaged["Resources"]["RestAPI"]
        assert "APIHandler" not in json.dumps(api), stage
        function = packaged["Resources"]["APIHandler"]["Properties"]["FunctionName"]["Fn::Sub"]
        for path, operations in api["Properties"]["DefinitionBody"]["paths"].items():
            for method, operation in operations.items():
                integration = operation["x-amazon-apigateway-integration"]
                if integration["type"] == "aws_proxy":
                    assert integration["uri"]["Fn::Sub"].endswith(f":function:{function}/invocations"), (path, method)
