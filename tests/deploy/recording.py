"""Every AWS request a deploy makes, recorded by the moto server, as the IAM checks each one incurs.

``make deploy`` and ``make destroy`` call AWS from two processes: ``infra/deploy.py`` (boto3) and the
``chalice deploy`` / ``chalice delete`` subprocesses. Both talk to the moto server of the test
(``AWS_ENDPOINT_URL``), and moto's request recorder (``/moto-api/recorder/...``, moto/moto_api) writes
every request it receives to a file, whichever process sent it. Each recorded request is then
matched to its operation with botocore's own service models (``X-Amz-Target`` for the JSON protocol,
``Action=`` for the query protocol, method and ``requestUri`` for the REST protocols), and from the
operation to the IAM action and resource it is authorized as.

What a recording cannot show: what AWS checks besides the call itself (``implicit_checks``: the role
a function is given is passed, the layers it names are read) and what a service does with the
caller's credentials on its own: CloudFormation creates a stack's resources with them (or with its
service role), but moto's CloudFormation calls its backends in-process, so those calls never reach
the recorder. ``tests/deploy/deployer_iam.py`` covers them from the resource types' handler
permissions instead.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

import botocore.session

# IAM actions named otherwise than their operation. Service Authorization Reference, AWS Lambda:
# GetLayerVersionByArn is authorized as lambda:GetLayerVersion, Invoke as lambda:InvokeFunction.
ACTION_NAMES = {
    ("lambda", "GetLayerVersionByArn"): "lambda:GetLayerVersion",
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    # Amazon S3 API reference, each operation's "Permissions": HEAD needs s3:GetObject; a multipart
    # upload's create, parts and completion need s3:PutObject; listing a bucket, s3:ListBucket.
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    # DeleteObjects: "you must have the s3:DeleteObject permission" for each object (resources: each key).
    ("s3", "DeleteObjects"): "s3:DeleteObject",
}
# Operations no policy can allow or deny. STS API reference, GetCallerIdentity: "No permissions are
# required to perform this operation."
NO_PERMISSION = {("sts", "GetCallerIdentity")}
# Actions that AWS authorizes together with another on the same resource. Lambda developer guide,
# "Using tags on Lambda functions": "For tagged functions, [lambda:ListTags] is also necessary for
# GetFunction" (Chalice and CloudFormation both tag every function they create).
IMPLIED = {"lambda:GetFunction": ("lambda:ListTags",)}
STACK_ID = "00000000-0000-0000-0000-000000000000"  # the id part of a stack's ARN, unknown before it exists


@dataclass(frozen=True)
class Request:
    """One HTTP request as moto's recorder wrote it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")

    @property
    def signing_name(self) -> str:
        """The service the request was signed for (SigV4 credential scope)."""
        match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", self.header("Authorization"))
        if not match:
            raise AssertionError(f"unsigned request {self.method} {self.url}")
        return match.group(1)


@dataclass(frozen=True)
class Call:
    """A request matched to its botocore operation."""

    service: str  # botocore's service name
    operation: str
    params: Mapping[str, Any]
    method: str
    path: str  # the request's path, percent-encoded as sent


@dataclass(frozen=True)
class Check:
    """One authorization AWS makes: ``action`` on ``resource``, with these request condition keys."""

    action: str
    resource: str
    context: Tuple[Tuple[str, str], ...] = ()
    why: str = field(default="", compare=False)


class MotoRecorder:
    """Moto's request recorder, driven over HTTP so it sees every process that talks to the server."""

    def __init__(self, endpoint: str, path: Path) -> None:
        from moto.moto_api import recorder

        self.endpoint = endpoint.rstrip("/")
        # The server runs in this process (ThreadedMotoServer); its recorder would otherwise write
        # ./moto_recording, into the repository.
        recorder._location = str(path)
        if not getattr(recorder, "one_at_a_time", False):
            # The server answers each request in a thread of its own, and the recorder appends an entry
            # and its newline in two writes: parallel requests (the AWS CLI uploads an artifact's parts
            # ten at a time) would interleave them. One entry at a time.
            lock, record = threading.Lock(), recorder._record_request

            def locked(*args: Any, **kwargs: Any) -> None:
                with lock:
                    record(*args, **kwargs)

            vars(recorder).update(_record_request=locked, one_at_a_time=True)

    def _call(self, path: str) -> bytes:
        method = "GET" if path.endswith("download-recording") else "POST"
        request = urllib.request.Request(f"{self.endpoint}/moto-api/{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def start(self) -> None:
        """Record from a new account: what earlier tests left in moto's in-process backends (make
        destroy keeps the log groups) would spare the recorded run the calls that create it."""
        self._call("reset")
        self._call("recorder/reset-recording")
        self._call("recorder/start-recording")

    def forget(self) -> None:
        """Drop what was recorded so far and go on recording: the setup a test makes as someone else."""
        self._call("recorder/reset-recording")

    def stop(self) -> List[Request]:
        self._call("recorder/stop-recording")
        requests = []
        for line in self._call("recorder/download-recording").decode().splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            raw = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
            requests.append(Request(entry["method"], entry["url"], entry["headers"], raw))
        return requests


# ---- request -> operation


@lru_cache(maxsize=None)
def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def _services(signing_name: str, path: str) -> List[str]:
    """botocore services signed as ``signing_name``: API Gateway v1 and v2 share one."""
    if signing_name == "apigateway":
        return ["apigatewayv2"] if path.startswith("/v2/") else ["apigateway"]
    return [signing_name]


def _uri_pattern(request_uri: str) -> Tuple[re.Pattern, Dict[str, str]]:
    """A regex for a REST operation's path, and the literal query items its ``requestUri`` requires."""
    path, _, query = request_uri.partition("?")
    regex = re.sub(r"\\\{([A-Za-z0-9_-]+)\\\+\\\}", r"(?P<\1>.+)", re.escape(path))
    regex = re.sub(r"\\\{([A-Za-z0-9_-]+)\\\}", r"(?P<\1>[^/]+)", regex)
    regex = re.sub(r"\(\?P<([^>]+)>", lambda m: "(?P<" + re.sub(r"\W", "_", m.group(1)) + ">", regex)
    return re.compile(f"^{regex}$"), dict(parse_qsl(query, keep_blank_values=True))


def _required_members(operation_model: Any) -> Set[Tuple[str, str]]:
    """(location, name as sent) of an operation's required query string and header members."""
    shape = operation_model.input_shape
    found: Set[Tuple[str, str]] = set()
    for member in shape.required_members if shape else ():
        serialization = shape.members[member].serialization
        if serialization.get("location") in ("querystring", "header"):
            name = serialization.get("name", member)
            found.add((serialization["location"], name.lower() if serialization["location"] == "header" else name))
    return found


def _body(request: Request) -> Dict[str, Any]:
    if not request.body:
        return {}
    if request.body.lstrip().startswith(b"<"):
        return _xml_body(request.body)
    try:
        decoded = json.loads(request.body)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _xml_body(body: bytes) -> Dict[str, Any]:
    """The members of the one XML body whose content an IAM check depends on: S3 DeleteObjects'
    keys (each authorized as s3:DeleteObject on its object)."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:  # an object's content (an uploaded page), not a request document
        return {}
    if root.tag.rsplit("}", 1)[-1] != "Delete":
        return {}
    keys = [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]
    return {"Delete": {"Objects": [{"Key": key} for key in keys]}}


def operation(request: Request) -> Call:
    """The botocore operation of a recorded request, and its parameters (path, query and body)."""
    parts = urlsplit(request.url)
    raw_path = parts.path or "/"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for service in _services(request.signing_name, raw_path):
        model = _model(service)
        protocol = model.metadata.get("protocol")
        if protocol == "json":
            target = request.header("X-Amz-Target")
            if target:
                return Call(service, target.rsplit(".", 1)[1], _body(request), request.method, raw_path)
        elif protocol in ("query", "ec2"):
            form = dict(parse_qsl(request.body.decode(), keep_blank_values=True)) if request.body else {}
            params = {**query, **form}
            if "Action" in params:
                return Call(service, params["Action"], params, request.method, raw_path)
        elif protocol in ("rest-json", "rest-xml"):
            best: Optional[Tuple[int, str, Dict[str, str]]] = None
            for name in model.operation_names:
                http = model.operation_model(name).http
                if http["method"] != request.method:
                    continue
                pattern, required = _uri_pattern(http["requestUri"])
                match = pattern.match(raw_path)
                if not match or any(query.get(k) != v for k, v in required.items()):
                    continue
                members = _required_members(model.operation_model(name))
                if not members <= {("querystring", k) for k in query} | {("header", k.lower()) for k in request.headers}:
                    continue  # S3's PutObject, UploadPart and CopyObject share a path: their required members tell
                # The most specific wins: the longest literal path, then the most required members present.
                literal = len(re.sub(r"\{[^}]+\}", "", http["requestUri"])) * 100 + len(members)
                if best is None or literal > best[0]:
                    best = (literal, name, {k: unquote(v) for k, v in match.groupdict().items()})
            if best:
                return Call(service, best[1], {**query, **best[2], **_body(request)}, request.method, raw_path)
    raise AssertionError(f"no botocore operation matches {request.method} {request.url} (signed for {request.signing_name})")


# ---- operation -> IAM


def action(call: Call) -> Optional[str]:
    """The IAM action a call is authorized as; None when no permission applies."""
    if (call.service, call.operation) in NO_PERMISSION:
        return None
    if call.service in ("apigateway", "apigatewayv2"):  # API Gateway's management API: the HTTP verb
        return f"apigateway:{call.method}"
    if (call.service, call.operation) in ACTION_NAMES:
        return ACTION_NAMES[(call.service, call.operation)]
    return f"{_model(call.service).signing_name}:{call.operation}"


def function_arn(name: str, region: str, account: str) -> str:
    """A Lambda function's unqualified ARN, from a name, a partial or a full ARN."""
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:7])
    return f"arn:aws:lambda:{region}:{account}:function:{name.split(':')[0]}"


def resources(call: Call, region: str, account: str) -> List[str]:
    """The ARNs a call is authorized on, for the services a deploy calls; ``*`` for what has none."""
    p = call.params
    if call.service == "lambda":
        if "ARN" in p or "Resource" in p:  # the tagging API names the ARN itself
            return [p.get("ARN") or p["Resource"]]
        if "Arn" in p:  # GetLayerVersionByArn
            return [p["Arn"]]
        if "LayerName" in p:
            layer = p["LayerName"]
            if not layer.startswith("arn:"):
                layer = f"arn:aws:lambda:{region}:{account}:layer:{layer}"
            return [f"{layer}:{p['VersionNumber']}" if "VersionNumber" in p else layer]
        if "UUID" in p:
            return [f"arn:aws:lambda:{region}:{account}:event-source-mapping:{p['UUID']}"]
        if "FunctionName" in p and call.operation != "CreateEventSourceMapping":
            return [function_arn(p["FunctionName"], region, account)]
        return ["*"]  # CreateEventSourceMapping, ListEventSourceMappings, ListFunctions: no resource
    if call.service in ("apigateway", "apigatewayv2"):
        path = call.path[3:] if call.service == "apigatewayv2" else call.path  # IAM's paths have no /v2
        return [f"arn:aws:apigateway:{region}::{path}"]
    if call.service == "iam":
        if "RoleName" in p:
            return [f"arn:aws:iam::{account}:role/{p['RoleName']}"]
        return [p["PolicyArn"]] if "PolicyArn" in p else ["*"]
    if call.service == "cloudformation":
        name = p.get("StackName")
        if not name:
            return ["*"]
        return [name if name.startswith("arn:") else f"arn:aws:cloudformation:{region}:{account}:stack/{name}/{STACK_ID}"]
    if call.service == "logs":
        if call.operation == "DescribeLogGroups":
            # Authorized on no log group: AWS reports a denial "on resource:
            # arn:aws:logs:<region>:<account>:log-group::log-stream:" (hashicorp/terraform-provider-aws#8804),
            # so only a grant on log-group:* (or *) allows it, whatever the prefix asked for.
            return [f"arn:aws:logs:{region}:{account}:log-group::log-stream:"]
        if "logGroupName" in p:
            return [f"arn:aws:logs:{region}:{account}:log-group:{p['logGroupName']}:*"]
        return ["*"]
    if call.service == "sts":
        return ["*"]
    if call.service == "sns":  # a subscription's calls are authorized on its topic (whose ARN its own extends)
        if "TopicArn" in p:
            return [p["TopicArn"]]
        return [p["SubscriptionArn"].rsplit(":", 1)[0]] if "SubscriptionArn" in p else ["*"]
    if call.service == "s3":
        if call.operation == "DeleteObjects":
            return [f"arn:aws:s3:::{p['Bucket']}/{o['Key']}" for o in p["Delete"]["Objects"]]
        return [f"arn:aws:s3:::{p['Bucket']}/{p['Key']}" if "Key" in p else f"arn:aws:s3:::{p['Bucket']}"]
    raise AssertionError(f"{call.service}:{call.operation}: teach tests/deploy/recording.py its resource ARNs")


def implicit_checks(call: Call, region: str, account: str) -> List[Check]:
    """What AWS authorizes besides the call itself, from the call's parameters."""
    checks: List[Check] = []
    p = call.params
    if call.service == "lambda" and call.operation == "CreateFunction" and p.get("Tags"):
        # Lambda developer guide, "Using tags on Lambda functions": tagging on create needs lambda:TagResource.
        checks.append(Check("lambda:TagResource", function_arn(p["FunctionName"], region, account), (),
                            "CreateFunction with Tags"))
    if call.service == "lambda" and call.operation in ("CreateFunction", "UpdateFunctionConfiguration"):
        if p.get("Role"):  # Lambda developer guide, "Lambda execution role": the caller needs iam:PassRole
            checks.append(Check("iam:PassRole", p["Role"], (("iam:PassedToService", "lambda.amazonaws.com"),),
                                f"{call.operation} gives the function this role"))
        for layer in p.get("Layers") or []:  # Lambda developer guide, "Layers": lambda:GetLayerVersion on each
            checks.append(Check("lambda:GetLayerVersion", layer, (), f"{call.operation} adds this layer"))
    if call.service == "cloudformation" and call.operation in ("CreateStack", "UpdateStack", "CreateChangeSet", "DeleteStack"):
        if p.get("RoleARN"):  # CloudFormation user guide, "CloudFormation service role"
            checks.append(Check("iam:PassRole", p["RoleARN"], (("iam:PassedToService", "cloudformation.amazonaws.com"),),
                                f"{call.operation} hands CloudFormation this role"))
        if p.get("TemplateURL"):
            checks.append(Check("s3:GetObject", s3_object_arn(p["TemplateURL"]), (),
                                "CloudFormation reads the template as the caller"))
    return checks


def s3_object_arn(url: str) -> str:
    """The object a path-style S3 URL names (the AWS CLI hands CloudFormation such TemplateURLs)."""
    bucket, _, key = unquote(urlsplit(url).path).lstrip("/").partition("/")
    return f"arn:aws:s3:::{bucket}/{key}"


def checks(call: Call, region: str, account: str) -> List[Check]:
    """Every IAM check one call incurs."""
    name = action(call)
    why = f"{call.service}:{call.operation}"
    context = _context(call, region, account)
    found = [] if name is None else [Check(name, r, context, why) for r in resources(call, region, account)]
    implied = [Check(other, c.resource, (), f"{why} ({c.action} implies it)")
               for c in found for other in IMPLIED.get(c.action, ())]
    return found + implied + implicit_checks(call, region, account)


def _context(call: Call, region: str, account: str) -> Tuple[Tuple[str, str], ...]:
    """The request condition keys the documented policies test."""
    if call.service == "lambda" and call.operation == "CreateEventSourceMapping":
        return (("lambda:FunctionArn", function_arn(call.params["FunctionName"], region, account)),)
    return ()


def templates(calls: Sequence[Call]) -> Iterator[Tuple[Call, Dict[str, Any]]]:
    """The templates handed to CloudFormation, with the call that handed each."""
    for call in calls:
        if call.service == "cloudformation" and "TemplateBody" in call.params:
            yield call, json.loads(call.params["TemplateBody"])
