"""moto's server (DynamoDB, SQS, EventBridge, S3, SNS, Step Functions; Cognito with AUTH=cognito) in its own
process on loopback, with an injectable DynamoDB throttle.

Its own process, so the fake AWS and the app under test do not share one interpreter lock (the
local stack holds hundreds of streaming turns on two cores). moto never throttles; AWS does:
``throttle_dynamodb(n)`` makes the next n DynamoDB requests fail with
``ProvisionedThroughputExceededException`` exactly as DynamoDB sends it, so the app's real
botocore retry path (and what happens when it gives up) is exercised.

It also runs the document pipeline's state machine (``infra/documents.asl.json``) as AWS does, with
moto's Step Functions interpreter, which runs in this process:

* the interpreter is switched on before anything can create a state machine (``enable_interpreter``);
* ``MOTO_PORT`` is this server's port: the interpreter's boto3 clients call ``http://localhost:$MOTO_PORT``;
* ``AWS_DATA_PATH`` names ``bedrockagent`` for botocore (``devserver/sdk_aliases.py``) and
  ``devserver/sdk_casing.py`` gives its aws-sdk tasks Step Functions' casing;
* ``forwarding_middleware`` sends what moto cannot do to the local stack: Lambda Invoke of the app's
  functions (``--lambda-url``, ``devserver/lambda_api.py``) and bedrock-agent's ingestion jobs
  (``--bedrock-url``, the Bedrock emulator), keeping the headers Retry and Catch depend on.

    python -m devserver.moto_server --port 5000 [--lambda-url URL] [--bedrock-url URL]
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable, Iterable, List, Optional, Pattern, Sequence, Tuple

CONTROL_PATH = "/_agentstream/throttle-dynamodb"
_THROTTLED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded (injected).",
    }
).encode()


def throttling_middleware(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap moto's WSGI app: ``POST CONTROL_PATH`` arms the throttle.

    The body is a count, or ``{"requests": n, "matching": "text"}`` to throttle only requests whose
    body holds that text (e.g. ``"claimId"``: the worker's claim of a turn).
    """
    state: dict = {"remaining": 0, "matching": ""}
    lock = threading.Lock()
    dynamodb_lock = threading.Lock()

    def middleware(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CONTROL_PATH:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            armed = json.loads(environ["wsgi.input"].read(length) or b"0")
            if not isinstance(armed, dict):
                armed = {"requests": armed}
            with lock:
                state["remaining"] = int(armed.get("requests", 0))
                state["matching"] = str(armed.get("matching") or "")
            start_response("204 No Content", [])
            return [b""]
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with lock:
                matching = state["remaining"] > 0 and state["matching"]
            if matching:  # look at the body, then hand moto an unread copy
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)
                matching = matching.encode() not in body
            with lock:
                throttle = state["remaining"] > 0 and not matching
                state["remaining"] -= int(throttle)
            if throttle:
                headers = [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(_THROTTLED)))]
                start_response("400 Bad Request", headers)
                return [_THROTTLED]
            # DynamoDB applies each conditional write atomically; moto's backend takes no lock,
            # so two racing writes could both pass one condition. One request at a time.
            with dynamodb_lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return middleware


WsgiApp = Callable[..., Iterable[bytes]]
#: Lambda Invoke, as botocore sends it (the function name, ARN or name:qualifier percent-encoded).
LAMBDA_INVOKE = re.compile(r"^/2015-03-31/functions/[^/]+/invocations$")
#: bedrock-agent's ingestion jobs (Start, List, Get, Stop), which moto does not have.
INGESTION_JOBS = re.compile(r"^/knowledgebases/[^/]+/datasources/[^/]+/ingestionjobs(/.*)?$")
# What the interpreter's botocore reads from an answer: the request id (without it moto's aws-sdk task
# crashes in its error handling, past Retry and Catch), the error code, Lambda's function error.
_ANSWER_HEADERS = ("content-type", "x-amzn-requestid", "x-amzn-errortype", "x-amz-function-error",
                   "x-amz-executed-version", "x-amz-log-result")
_FORWARD_TIMEOUT_S = 900.0  # a Lambda invocation may take up to 15 minutes


def forwarding_middleware(app: WsgiApp, routes: Sequence[Tuple[Pattern[str], str]]) -> WsgiApp:
    """Wrap moto's WSGI app: a request whose path matches a route's pattern goes to that route's base URL.

    Status, body and the headers botocore reads (``_ANSWER_HEADERS``) come back unchanged; a target
    that cannot be reached answers 502 ``ServiceException``, which the interpreter names
    ``Lambda.ServiceException`` (retried by the pipeline) or ``bedrockagent.ServiceException``.
    """
    active = [(pattern, base.rstrip("/")) for pattern, base in routes if base]

    def middleware(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        target = next((base for pattern, base in active if pattern.match(path)), None)
        if target is None:
            return app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        query = environ.get("QUERY_STRING")
        url = target + urllib.parse.quote(path, safe="/") + (f"?{query}" if query else "")
        # The signature (for this server's host; the targets accept any) and Lambda's x-amz-* options.
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_X_AMZ_") or key == "HTTP_AUTHORIZATION"}
        headers["content-type"] = environ.get("CONTENT_TYPE") or "application/json"
        request = urllib.request.Request(url, data=body, method=environ.get("REQUEST_METHOD", "GET"), headers=headers)
        try:
            answer = urllib.request.urlopen(request, timeout=_FORWARD_TIMEOUT_S)
        except urllib.error.HTTPError as err:
            answer = err  # an error answer is still the answer
        except OSError as err:
            data = json.dumps({"message": f"the local stack's {target} did not answer: {err}"}).encode()
            start_response("502 Bad Gateway", [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                               ("x-amzn-ErrorType", "ServiceException"),
                                               ("x-amzn-RequestId", str(uuid.uuid4()))])
            return [data]
        with answer:
            data = answer.read()
            kept: List[Tuple[str, str]] = [(k, v) for k, v in answer.headers.items() if k.lower() in _ANSWER_HEADERS]
            start_response(f"{answer.status} {answer.reason}", kept + [("Content-Length", str(len(data)))])
        return [data]

    return middleware


def enable_interpreter(app: WsgiApp) -> None:
    """Switch on moto's Step Functions interpreter through its documented ``POST /moto-api/config``.

    Done in-process before the server listens: moto keeps the state machines made with it off and
    on in two separate backends, so one created before the switch would never run.
    """
    from werkzeug.test import Client

    answer = Client(app).post("/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}})
    if answer.status_code >= 300:
        raise RuntimeError(f"moto refused its Step Functions config: {answer.status_code} {answer.get_data(as_text=True)}")


class MotoServer:
    """Starts and stops the moto process; ``url`` is what boto3's endpoint variables point at.

    ``lambda_url`` / ``bedrock_url``: where the state machine's Lambda invocations and ingestion-job
    calls go (``forwarding_middleware``); empty: to moto, which has neither.
    """

    def __init__(self, host: str, port: int, *, lambda_url: str = "", bedrock_url: str = "") -> None:
        self.host = host
        self.port = port
        self.lambda_url = lambda_url
        self.bedrock_url = bedrock_url
        self._process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "MotoServer":
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devserver.moto_server", "--host", self.host, "--port", str(self.port),
             "--lambda-url", self.lambda_url, "--bedrock-url", self.bedrock_url]
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("moto server exited at start")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto server did not start")

    def throttle_dynamodb(self, requests: int, matching: str = "") -> None:
        """Throttle the next ``requests`` DynamoDB requests (only those whose body holds ``matching``)."""
        body = json.dumps({"requests": requests, "matching": matching}).encode()
        request = urllib.request.Request(self.url + CONTROL_PATH, data=body, method="POST")
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description="moto (DynamoDB, SQS, EventBridge, S3, SNS, Step Functions) with a "
                                                 "DynamoDB throttle switch")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lambda-url", default="", help="where Lambda Invoke goes (the local stack's Lambda API)")
    parser.add_argument("--bedrock-url", default="", help="where bedrock-agent's ingestion jobs go (the Bedrock emulator)")
    args = parser.parse_args()

    from devserver import sdk_aliases, sdk_casing

    # Before botocore makes its first loader (moto's imports may): the interpreter's boto3 clients
    # call this server, and know the service name "bedrockagent".
    os.environ["MOTO_PORT"] = str(args.port)
    os.environ["AWS_DATA_PATH"] = sdk_aliases.install(current=os.environ.get("AWS_DATA_PATH", ""))
    sdk_casing.install()

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from devserver.redact import install_log_filters

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise here
    install_log_filters()  # werkzeug logs "Bad request syntax ('GET /?token=...')" at ERROR
    # The interpreter logs every state error (a Fail state's too) as a screenful of reprs at ERROR, once per
    # enclosing component, and warns on each bedrockagent error: an execution's errors are in its history.
    logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
    logging.getLogger("moto.stepfunctions.parser.asl.component.state.exec.state_task.service."
                      "state_task_service_aws_sdk").setLevel(logging.ERROR)
    moto = DomainDispatcherApplication(create_backend_app)
    enable_interpreter(moto)
    routes = [(LAMBDA_INVOKE, args.lambda_url), (INGESTION_JOBS, args.bedrock_url)]
    app = throttling_middleware(forwarding_middleware(moto, routes))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
