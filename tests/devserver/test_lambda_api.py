"""The local Lambda Invoke API, driven by boto3's own ``lambda`` client, serving a tiny Chalice app's functions."""
import json
import threading

import boto3
import pytest
from botocore.config import Config
from chalice import Chalice

from devserver.lambda_api import LambdaApi, app_functions, parse_function_name
from tests.support.timing import wait_until

PREFIX = "agentstream-test-"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


class ExtractError(Exception):
    pass


def tiny_app(seen):
    app = Chalice(app_name="tiny")

    @app.lambda_function(name="document_extract")
    def extract(event, context):
        if event.get("explode"):
            raise ExtractError(f"cannot read {event['key']}")
        return {"ok": True, "chunks": len(event.get("key", "")), "function": context.function_name,
                "left_ms": context.get_remaining_time_in_millis(), "arn": context.invoked_function_arn}

    @app.lambda_function(name="document_analyse")
    def analyse(event, context):
        seen.append(event)
        return {"analysis": {"summary": "s", "topics": ["t"]}}

    @app.lambda_function(name="unmarshallable")
    def unmarshallable(event, context):
        return {"set": {1, 2}}

    @app.route("/")
    def index():
        return {}

    return app


@pytest.fixture(scope="module")
def seen():
    return []


@pytest.fixture(scope="module")
def api(seen):
    server = LambdaApi("127.0.0.1", app_functions(tiny_app(seen)), name_prefix=PREFIX, timeout_s=30).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(api):
    return boto3.client("lambda", endpoint_url=api.url, region_name="us-east-1", aws_access_key_id="t",
                        aws_secret_access_key="t", config=Config(retries={"total_max_attempts": 1}))


def invoke(client, name, payload, **kwargs):
    answer = client.invoke(FunctionName=name, Payload=json.dumps(payload), **kwargs)
    return answer, json.loads(answer["Payload"].read() or b"null")


@pytest.mark.parametrize("name", [
    "document_extract",
    f"{PREFIX}document_extract",
    f"{PREFIX}document_extract:live",
    f"{ARN}{PREFIX}document_extract",
    f"{ARN}{PREFIX}document_extract:$LATEST",
    f"123456789012:function:{PREFIX}document_extract",
])
def test_every_form_of_function_name_runs_the_apps_handler(client, name):
    answer, result = invoke(client, name, {"key": "uploads/a"})
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    assert result["ok"] is True and result["chunks"] == len("uploads/a")
    # The handler gets a Lambda context: the app's function name, a deadline, its ARN.
    assert result["function"] == "document_extract" and 0 < result["left_ms"] <= 30_000
    assert result["arn"] == f"{ARN}document_extract"


def test_a_raised_exception_is_an_unhandled_function_error_as_lambda_reports_it(client):
    answer, error = invoke(client, "document_extract", {"explode": True, "key": "k"})
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ExtractError" and error["errorMessage"] == "cannot read k"
    assert error["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert any("raise ExtractError" in frame for frame in error["stackTrace"])
    assert not any("devserver/lambda_api.py" in frame for frame in error["stackTrace"])  # from the handler in


def test_a_result_that_is_not_json_is_a_marshal_error(client):
    answer, error = invoke(client, "unmarshallable", {})
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.MarshalError"


def test_unknown_functions_and_routes_are_not_found(client):
    for name in ("nope", f"{ARN}{PREFIX}nope", "index"):  # a route is API Gateway's, not Invoke's
        with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
            client.invoke(FunctionName=name, Payload=b"{}")
        assert "Function not found: arn:aws:lambda:us-east-1:123456789012:function:" in str(raised.value)


def test_a_payload_that_is_not_json_is_refused(client):
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="document_extract", Payload=b"{not json")


def test_event_invocations_answer_at_once_and_run_on_their_own(client, api, seen):
    before = len(seen)
    answer = client.invoke(FunctionName="document_analyse", InvocationType="Event", Payload=json.dumps({"n": 1}))
    assert answer["StatusCode"] == 202
    wait_until(lambda: len(seen) > before, 10, "the event invocation ran")
    assert seen[-1] == {"n": 1}
    assert client.invoke(FunctionName="document_analyse", InvocationType="DryRun")["StatusCode"] == 204


def test_functions_are_served_only_once_given(seen):
    server = LambdaApi("127.0.0.1").start()
    try:
        assert server.invoke("document_analyse", b"{}")[0] == 404  # the app is not imported yet
        server.serve(app_functions(tiny_app(seen)))
        status, headers, body = server.invoke("document_analyse", b"{}")
        assert status == 200 and json.loads(body) == {"analysis": {"summary": "s", "topics": ["t"]}}
        assert headers["x-amzn-RequestId"]
    finally:
        server.stop()


def test_invocations_run_concurrently(seen):
    gate, entered = threading.Event(), threading.Semaphore(0)
    app = Chalice(app_name="slow")

    @app.lambda_function(name="slow")
    def slow(event, context):
        entered.release()
        assert gate.wait(10)
        return event

    server = LambdaApi("127.0.0.1", app_functions(app)).start()
    results = []
    try:
        threads = [threading.Thread(target=lambda n=n: results.append(server.invoke("slow", json.dumps(n).encode())))
                   for n in range(2)]
        for thread in threads:
            thread.start()
        for _ in threads:
            assert entered.acquire(timeout=10)  # both inside the handler at once
        gate.set()
        for thread in threads:
            thread.join(10)
    finally:
        server.stop()
    assert sorted(json.loads(body) for _, _, body in results) == [0, 1]


def test_function_names_parse_as_lambda_reads_them():
    assert parse_function_name("f") == ("f", None)
    assert parse_function_name("f:2") == ("f", "2")
    assert parse_function_name("arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af%3Alive") == ("f", "live")
    assert parse_function_name("1:function:f") == ("f", None)
    for bad in ("arn:aws:s3:::bucket", "a:b:c:d:e", ""):
        with pytest.raises(ValueError):
            parse_function_name(bad)
