"""The emulator's REST API: a Chalice app's routes served as API Gateway's REST API and its Lambda
proxy integration would serve them (event shape, 403s, preflight, timeout, binary bodies).

A tiny Chalice app (defined here) echoes the event it got; ``urllib`` plays the client. Slow
handlers wait for the test to let them go, never for a time.
"""
from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chalice import AuthResponse, Chalice, CORSConfig, Response

from devserver.apigw import ApiGatewayEmulator, events
from devserver.apigw.integration import Invocation
from devserver.apigw.rest import http_response

Start = Callable[..., ApiGatewayEmulator]

app = Chalice("t")
CORS = CORSConfig(allow_origin="*", allow_headers=["Authorization", "Content-Type"], max_age=600)
GATE = threading.Event()  # GET /v1/hold waits for it


def _echo() -> dict[str, Any]:
    request = app.current_request
    return {"event": request.to_original_event(), "function": app.lambda_context.function_name,
            "raw": base64.b64encode(request.raw_body or b"").decode()}


@app.route("/v1/items/{item_id}", methods=["GET", "DELETE"], cors=CORS)
def get_item(item_id: str) -> dict[str, Any]:
    return {"itemId": item_id, **_echo()}


@app.route("/v1/items", methods=["POST"], cors=CORS, content_types=["application/json", "application/octet-stream"])
def post_item() -> Response:
    return Response(_echo(), {"X-Multi": ["a", "b"]}, 201)


@app.route("/v1/plain", methods=["GET"])
def plain() -> dict[str, Any]:
    return {"query": app.current_request.query_params}


@app.route("/v1/hold", methods=["GET"])
def hold() -> dict[str, Any]:
    GATE.wait(10)
    return {"held": True}


@app.route("/v1/image", methods=["GET"])
def image() -> Response:
    return Response(b"\x89PNG\x00\xff", {"Content-Type": "image/png"})


AUTHORIZED: list[str] = []  # the tokens the authorizer function was called with


@app.authorizer(ttl_seconds=300)
def gate(auth_request: Any) -> AuthResponse:
    AUTHORIZED.append(auth_request.token)
    if auth_request.token == "Bearer good":
        return AuthResponse(routes=["*"], principal_id="alice", context={"tier": "gold"})
    if auth_request.token == "Bearer narrow":
        return AuthResponse(routes=["/v1/guarded"], principal_id="bob")
    if auth_request.token == "Bearer broken":
        raise RuntimeError("the key store is down")
    raise Exception("Unauthorized")


@app.route("/v1/guarded", methods=["GET"], authorizer=gate)
def guarded() -> dict[str, Any]:
    return {"authorizer": app.current_request.context.get("authorizer")}


@app.route("/v1/also-guarded", methods=["GET"], authorizer=gate)
def also_guarded() -> dict[str, Any]:
    return {"authorizer": app.current_request.context.get("authorizer")}


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    GATE.clear()
    AUTHORIZED.clear()
    yield
    GATE.set()


@pytest.fixture
def emulator() -> Iterator[ApiGatewayEmulator]:
    with ApiGatewayEmulator(app, integration_timeout=1.0) as started:
        yield started


def call(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """One request without proxies: status, headers and body, error statuses included."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_the_event_is_a_rest_proxy_event(emulator: ApiGatewayEmulator) -> None:
    status, headers, body = call(f"{emulator.rest_url}/v1/items/a%20b?x=1&x=2&y=", headers={"User-Agent": "ua/1"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["x-amzn-RequestId"] and headers["x-amz-apigw-id"] and headers["Access-Control-Allow-Origin"] == "*"
    answer = json.loads(body)
    event = answer["event"]
    assert answer["itemId"] == "a b" and answer["function"] == "t-local"  # Chalice's REST function: app-stage
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/v1/items/{item_id}", "/v1/items/a b", "GET")
    assert event["pathParameters"] == {"item_id": "a b"} and event["stageVariables"] is None
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["headers"]["User-Agent"] == "ua/1" and event["multiValueHeaders"]["User-Agent"] == ["ua/1"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1" and event["headers"]["X-Amzn-Trace-Id"].startswith("Root=1-")
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert (context["resourcePath"], context["httpMethod"], context["path"]) == (
        "/v1/items/{item_id}", "GET", "/local/v1/items/a b")
    assert (context["stage"], context["apiId"], context["protocol"]) == ("local", "localrest", "HTTP/1.1")
    assert context["requestId"] == headers["x-amzn-RequestId"] and len(context["requestId"]) == 36  # a UUID
    assert context["identity"]["sourceIp"] == "127.0.0.1" and context["identity"]["userAgent"] == "ua/1"
    assert isinstance(context["requestTimeEpoch"], int) and context["requestTime"].endswith(" +0000")


def test_without_the_stage_the_same_routes_answer(emulator: ApiGatewayEmulator) -> None:
    status, _, body = call(f"http://127.0.0.1:{emulator.port}/v1/plain?q=1")
    assert (status, json.loads(body)) == (200, {"query": {"q": "1"}})
    status, _, body = call(f"http://127.0.0.1:{emulator.port}/v1/items/z")
    assert json.loads(body)["event"]["requestContext"]["path"] == "/v1/items/z"  # as a custom domain would pass it


def test_a_body_arrives_as_text_or_base64_and_multi_value_headers_come_back(emulator: ApiGatewayEmulator) -> None:
    status, headers, body = call(f"{emulator.rest_url}/v1/items", "POST", b'{"a": 1}',
                                 {"Content-Type": "application/json"})
    assert status == 201 and headers.get_all("X-Multi") == ["a", "b"]
    event = json.loads(body)["event"]
    assert (event["body"], event["isBase64Encoded"]) == ('{"a": 1}', False)
    status, _, body = call(f"{emulator.rest_url}/v1/items", "POST", b"\xff\x00",
                           {"Content-Type": "application/octet-stream"})
    answer = json.loads(body)
    assert status == 201 and answer["event"]["isBase64Encoded"] is True
    assert base64.b64decode(answer["raw"]) == b"\xff\x00"


def test_a_base64_response_is_sent_as_bytes(emulator: ApiGatewayEmulator) -> None:
    status, headers, body = call(f"{emulator.rest_url}/v1/image", headers={"Accept": "image/png"})
    assert (status, headers["Content-Type"], body) == (200, "image/png", b"\x89PNG\x00\xff")


@pytest.mark.parametrize("method, path", [("GET", "/v1/nope"), ("PUT", "/v1/items/a"), ("GET", "/v1/items/a/b"),
                                          ("OPTIONS", "/v1/plain")])
def test_unknown_paths_and_methods_get_api_gateways_403(emulator: ApiGatewayEmulator, method: str, path: str) -> None:
    status, headers, body = call(emulator.rest_url + path, method)
    assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    status, headers, body = call(emulator.rest_url + path, method, headers={"Authorization": "Bearer abc"})
    assert status == 403 and headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    assert "abc" not in body.decode()  # the header's hash, never the token


def test_a_cors_route_gets_the_preflight_api_gateway_answers_itself(emulator: ApiGatewayEmulator) -> None:
    status, headers, body = call(f"{emulator.rest_url}/v1/items/a", "OPTIONS",
                                 headers={"Origin": "http://page", "Access-Control-Request-Method": "DELETE"})
    assert (status, body) == (200, b"")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert {"Authorization", "Content-Type"} <= set(headers["Access-Control-Allow-Headers"].split(","))
    assert set(headers["Access-Control-Allow-Methods"].split(",")) == {"GET", "DELETE", "OPTIONS"}
    assert headers["Access-Control-Max-Age"] == "600"


def test_past_the_integration_timeout_the_client_gets_504(emulator: ApiGatewayEmulator) -> None:
    status, _, body = call(f"{emulator.rest_url}/v1/hold")
    assert (status, json.loads(body)) == (504, {"message": "Endpoint request timed out"})
    GATE.set()  # the function runs on, as Lambda's does; the next call waits for it, then is served
    assert call(f"{emulator.rest_url}/v1/plain")[0] == 200


def test_concurrent_requests_each_see_their_own_request(emulator: ApiGatewayEmulator) -> None:
    def one(index: int) -> Any:
        return json.loads(call(f"{emulator.rest_url}/v1/plain?q={index}")[2])["query"]["q"]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(32))) == [str(i) for i in range(32)]


def test_the_management_api_and_the_page_keep_their_paths(emulator: ApiGatewayEmulator) -> None:
    status, headers, _ = call(f"{emulator.management_url}/@connections/nobody")
    assert status == 410 and headers["x-amzn-ErrorType"] == "GoneException"
    assert call(f"http://127.0.0.1:{emulator.port}/index.html")[0] == 404  # no static_dir: still the page's route


@pytest.mark.parametrize("response", [None, "text", {"statusCode": "x"}, {"statusCode": 200, "body": {"a": 1}},
                                      {"statusCode": 200, "extra": 1},
                                      {"statusCode": 200, "body": "!!", "isBase64Encoded": True}])
def test_a_malformed_proxy_response_is_a_502(response: Any) -> None:
    event = {"requestContext": {"requestId": "r", "extendedRequestId": "e", "requestTimeEpoch": 0}}
    answer = http_response(Invocation("r", response=response), event)
    assert answer.status == 502 and json.loads(answer.text or "") == {"message": "Internal server error"}


def test_a_function_error_is_a_502() -> None:
    event = {"requestContext": {"requestId": "r", "extendedRequestId": "e", "requestTimeEpoch": 0}}
    assert http_response(Invocation("r", error=RuntimeError("boom")), event).status == 502


def test_rest_event_nulls_what_the_request_lacks() -> None:
    facts = events.RestApiFacts("api1", "dev", "api1.execute-api.us-east-1.amazonaws.com")
    bare = events.rest_event(facts, "GET", "/v1/turns", "/v1/turns", [], now_ms=5)
    assert [bare[k] for k in ("headers", "multiValueHeaders", "queryStringParameters",
                              "multiValueQueryStringParameters", "pathParameters", "body")] == [None] * 6
    context = bare["requestContext"]
    assert (context["path"], context["domainPrefix"], context["requestTimeEpoch"]) == ("/dev/v1/turns", "api1", 5)
    binary = events.rest_event(facts, "POST", "/v1/turns", "/v1/turns", [("Content-Length", "2")], body=b"\xff\x00",
                               is_binary=True)
    assert (binary["body"], binary["isBase64Encoded"], binary["headers"]) == ("/wA=", True, None)


def test_without_a_token_the_authorizer_is_not_called_and_the_answer_is_401(emulator: ApiGatewayEmulator) -> None:
    status, headers, body = call(emulator.rest_url + "/v1/guarded")
    assert status == 401 and headers["x-amzn-ErrorType"] == "UnauthorizedException"
    assert headers["WWW-Authenticate"].startswith("Bearer") and headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(body)["error"]["code"] == "unauthorized" and AUTHORIZED == []


@pytest.mark.parametrize("token, status, kind", [
    ("Bearer refused", 401, "unauthorized"),  # raised "Unauthorized"
    ("Bearer broken", 500, "internal"),  # raised anything else: AUTHORIZER_FAILURE
])
def test_an_authorizer_that_refuses_or_fails_keeps_the_request_from_the_route(
        emulator: ApiGatewayEmulator, token: str, status: int, kind: str) -> None:
    answered, _, body = call(emulator.rest_url + "/v1/guarded", headers={"Authorization": token})
    assert answered == status and json.loads(body)["error"]["code"] == kind
    assert AUTHORIZED == [token]


def test_an_allowed_token_reaches_the_route_with_its_principal_and_is_cached(emulator: ApiGatewayEmulator) -> None:
    good = {"Authorization": "Bearer good"}
    for path in ("/v1/guarded", "/v1/guarded", "/v1/also-guarded"):
        status, _, body = call(emulator.rest_url + path, headers=good)
        assert status == 200 and json.loads(body)["authorizer"] == {"principalId": "alice", "tier": "gold"}
    assert AUTHORIZED == ["Bearer good"]  # once per token for its TTL, whichever route it calls


def test_a_policy_that_does_not_name_the_route_is_403(emulator: ApiGatewayEmulator) -> None:
    narrow = {"Authorization": "Bearer narrow"}
    assert call(emulator.rest_url + "/v1/guarded", headers=narrow)[0] == 200
    status, headers, body = call(emulator.rest_url + "/v1/also-guarded", headers=narrow)
    assert status == 403 and headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert AUTHORIZED == ["Bearer narrow"]  # the cached policy decided the second call
