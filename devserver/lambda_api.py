"""Lambda's Invoke API for the app's own functions, served in the local stack's process.

``POST /2015-03-31/functions/{FunctionName}/invocations`` calls the app's handler of that name with
the JSON payload and a ``LambdaContext``, as Lambda runs a Python function, and answers as Lambda
does, so botocore (the state machine's ``lambda:invoke`` tasks, through the moto server's
forwarding, or any boto3 ``lambda`` client) reads it as it reads AWS:

* ``RequestResponse`` (the default): 200 with the function's result as JSON. A function that
  raises: still 200, with ``X-Amz-Function-Error: Unhandled`` and ``{"errorMessage", "errorType",
  "requestId", "stackTrace"}`` (Step Functions names the error after ``errorType``); a result that
  is not JSON: ``Runtime.MarshalError``, likewise.
* ``Event``: 202 at once, the function runs on a thread of its own; ``DryRun``: 204.
* A function the app does not have: 404 ``ResourceNotFoundException``; a payload that is not JSON:
  400 ``InvalidRequestContentException``.

``FunctionName`` may be a name, ``name:qualifier``, a full ARN or a partial one
(``account:function:name``). The deployed name is ``agentstream-<stage>-<function>``
(``infra.stack.function_name``), which is what the state machine's ARNs name: the stage's prefix is
dropped to find the handler. Every qualifier runs the one local version, ``$LATEST``.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import traceback
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

from devserver.lambda_context import LOCAL_ACCOUNT_ID, LambdaContext
from devserver.serving import BackgroundServer

log = logging.getLogger("devserver.lambda")

Handler = Callable[[Any, Any], Any]
Answer = Tuple[int, Dict[str, str], bytes]
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
_JSON = {"Content-Type": "application/json"}


def parse_function_name(raw: str) -> Tuple[str, Optional[str]]:
    """(name, qualifier) of a ``FunctionName`` in any of the forms Lambda accepts (percent-encoded or not)."""
    value = unquote(raw)
    parts = value.split(":")
    if value.startswith("arn:"):  # arn:partition:lambda:region:account:function:name[:qualifier]
        if len(parts) in (7, 8) and parts[2] == "lambda" and parts[5] == "function":
            return parts[6], parts[7] if len(parts) == 8 else None
        raise ValueError(f"{value} is not a Lambda function ARN")
    if len(parts) in (3, 4) and parts[1] == "function":  # account:function:name[:qualifier]
        return parts[2], parts[3] if len(parts) == 4 else None
    if len(parts) <= 2 and parts[0]:
        return parts[0], parts[1] if len(parts) == 2 else None
    raise ValueError(f"{value} is not a function name")


def app_functions(app: Any) -> Dict[str, Handler]:
    """The Lambda functions of a Chalice app that an Invoke may run: its ``@app.lambda_function``
    functions and its event handlers (SQS, SNS, ...), by name, from ``app.handler_map``.

    Routes, WebSocket handlers and authorizers are API Gateway's to call (the API Gateway emulator).
    """
    names = [function.name for function in app.pure_lambda_functions]
    names += [source.name for source in app.event_sources]
    return {name: app.handler_map[name] for name in names if name in app.handler_map}


def configured_timeouts(config_file: Optional[Path] = None) -> Dict[str, float]:
    """Each function's ``lambda_timeout`` from ``.chalice/config.json`` (what its context's deadline is on AWS)."""
    path = config_file or Path(__file__).resolve().parent.parent / ".chalice" / "config.json"
    functions = json.loads(path.read_text()).get("lambda_functions", {})
    return {name: float(settings["lambda_timeout"]) for name, settings in functions.items() if "lambda_timeout" in settings}


def _error(status: int, code: str, message: str) -> Answer:
    body = json.dumps({"Type": "User", "message": message}).encode()
    return status, {**_JSON, "x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}, body


class LambdaApi(BackgroundServer):
    """The Invoke endpoint on ``host`` (any free port); ``serve`` gives it the functions to run.

    It can start before the app is imported (the moto server needs its URL first): until then, and
    for a name not served, an Invoke is a ``ResourceNotFoundException``. ``invocations`` counts the
    calls by function name.
    """

    def __init__(
        self,
        host: str,
        functions: Optional[Mapping[str, Handler]] = None,
        *,
        name_prefix: str = "",
        region: str = "us-east-1",
        timeout_s: float = 900.0,
        timeouts: Optional[Mapping[str, float]] = None,
        port: int = 0,
    ) -> None:
        """``timeouts``: seconds by function (``configured_timeouts()``), ``timeout_s`` for the others."""
        self.name_prefix = name_prefix  # e.g. "agentstream-local-": deployed name -> the app's
        self.region = region
        self.timeout_s = timeout_s
        self.timeouts = dict(timeouts or {})
        self._functions: Dict[str, Handler] = dict(functions or {})
        self._lock = threading.Lock()
        self.invocations: Counter[str] = Counter()
        api = self

        class InvokeHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = INVOKE_PATH.match(urlsplit(self.path).path)
                if found is None:
                    status, headers, data = _error(404, "UnknownOperationException", f"No operation at POST {self.path}")
                else:
                    invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
                    status, headers, data = api.invoke(found.group("name"), body, invocation_type)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(host, port, InvokeHandler, "lambda-api")

    def serve(self, functions: Mapping[str, Handler]) -> None:
        """Serve these functions (by the app's names), in place of any served before."""
        with self._lock:
            self._functions = dict(functions)

    def resolve(self, requested: str) -> Optional[Tuple[str, Handler]]:
        """(the app's name, its handler) for a ``FunctionName``, or None."""
        name, _ = parse_function_name(requested)
        if self.name_prefix and name.startswith(self.name_prefix):
            name = name[len(self.name_prefix):]
        with self._lock:
            handler = self._functions.get(name)
        return None if handler is None else (name, handler)

    def invoke(self, requested: str, payload: bytes, invocation_type: str = "RequestResponse") -> Answer:
        """One Invoke: (HTTP status, headers, body) as Lambda answers it."""
        try:
            found = self.resolve(requested)
        except ValueError as err:
            return _error(400, "InvalidParameterValueException", str(err))
        if found is None:
            name, qualifier = parse_function_name(requested)
            arn = f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT_ID}:function:{name}" + (f":{qualifier}" if qualifier else "")
            return _error(404, "ResourceNotFoundException", f"Function not found: {arn}")
        name, handler = found
        try:
            event = json.loads(payload or b"{}")
        except ValueError as err:
            return _error(400, "InvalidRequestContentException", f"Could not parse request body into json: {err}")
        if invocation_type == "DryRun":
            return 204, {"x-amzn-RequestId": str(uuid.uuid4())}, b""
        if invocation_type not in ("RequestResponse", "Event"):
            return _error(400, "InvalidParameterValueException", f"Unknown invocation type {invocation_type}")
        context = LambdaContext.for_invocation(name, self.timeouts.get(name, self.timeout_s), region=self.region)
        with self._lock:
            self.invocations[name] += 1
        if invocation_type == "Event":
            thread = threading.Thread(target=self._run, args=(name, handler, event, context), daemon=True,
                                      name=f"lambda-{name}")
            thread.start()
            return 202, {"x-amzn-RequestId": context.aws_request_id}, b""
        headers = {**_JSON, "x-amzn-RequestId": context.aws_request_id, "X-Amz-Executed-Version": "$LATEST"}
        result, error = self._run(name, handler, event, context)
        if error is not None:
            return 200, {**headers, "X-Amz-Function-Error": "Unhandled"}, json.dumps(error).encode()
        return 200, headers, result

    def _run(self, name: str, handler: Handler, event: Any, context: LambdaContext) -> Tuple[bytes, Optional[Dict[str, Any]]]:
        """(the result as JSON, None), or (b"", the error document) if the function raised."""
        try:
            result = handler(event, context)
        except Exception as exc:  # noqa: BLE001 - an unhandled function error, reported as Lambda reports it
            log.warning("%s raised %s: %s", name, type(exc).__name__, exc, exc_info=True)
            frames = traceback.extract_tb(exc.__traceback__)[1:]  # from the handler in (this frame dropped)
            return b"", _error_document(type(exc).__name__, str(exc), context, traceback.format_list(frames))
        try:
            return json.dumps(result).encode(), None
        except (TypeError, ValueError) as exc:
            return b"", _error_document("Runtime.MarshalError", f"Unable to marshal response: {exc}", context, [])


def _error_document(error_type: str, message: str, context: LambdaContext, stack: List[str]) -> Dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": context.aws_request_id, "stackTrace": stack}
