"""The IAM policies against what each function really does, for every backend.

Every handler runs through the Chalice test client against moto, through the flows a client can
drive (connect, ping, usage, ask, a repeated ask, cancel, resume, a client that leaves mid-answer, a
poison message, a redelivery, a document uploaded, taken through the pipeline's steps, listed and
deleted, disconnect), once per backend scenario, while every AWS call it makes is recorded. The app is configured by the environment the template gives it for that scenario, and
each call must be allowed by the function's own policy, resolved as ``make deploy`` resolves it;
each DynamoDB, SQS, SSM, EventBridge, Bedrock and execute-api grant must be used by some flow: a policy that
grants less breaks a deploy, one that grants more is not least privilege.

How each Bedrock call is recorded:

* ``InvokeAgent`` and ``Retrieve``: moto has no Bedrock, so the worker talks to a fake (``tests/support/fakes.py``),
  wrapped here; its Retrieve (the converse backend's passages of the asker's documents) finds nothing.
* ``ConverseStream`` and ``InvokeAgentRuntime``: the app's real boto3 clients call the local Bedrock
  emulator (``devserver/bedrock.py``, botocore's own request serializer and response parsers), and
  botocore's ``provide-client-params`` event records each call before it is sent. Which IAM checks a
  call incurs is AWS's rule, not something a client can observe; ``_bedrock_checks`` writes down the
  documented ones: ConverseStream is ``bedrock:InvokeModelWithResponseStream`` on the model or
  inference profile named by ``modelId``, and through a profile also on the foundation model in every
  Region the profile may route to, with ``bedrock:InferenceProfileArn`` set to the profile
  (Bedrock user guide, "Geographic cross-Region inference", "IAM policy requirements");
  InvokeAgentRuntime is checked on the runtime and on the endpoint it runs
  (``runtime/<id>/runtime-endpoint/<qualifier or DEFAULT>``).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple
from urllib.parse import urlparse

import boto3
import pytest

from infra import stack
from tests.deploy.support import (
    ACCOUNT,
    BACKENDS,
    REGION,
    US_SONNET_MODELS,
    allows,
    as_list,
    deploy_stack,
    resolved_stack,
    grants,
    isolated_env,
)
from tests.support.events import API_ID, STAGE, sqs_event, ws_event
from tests.support.tokens import SECRET, make_token

SECRET_PARAMETER = "/agentstream/dev/jwt-secret"
# HS256 tokens signed with the secret in SSM, instead of the stack's own user pool (the default).
OWN_SECRET = {"CreateUserPool": "false", "JwtSecretParameter": SECRET_PARAMETER}

Call = Tuple[str, str, Tuple[Tuple[str, str], ...]]  # (IAM action, resource ARN, request condition keys)
# The functions Lambda feeds from an SQS queue (app.py's on_sqs_message), and the output naming each queue.
SQS_SOURCES = {"turn_worker": "TurnQueueArn", "document_uploads": "UploadsQueueArn"}
NOTES = b"# Trip notes\n\nThe ferry leaves at nine. Bring the passports and the blue suitcase.\n"


def _aws_calls(function: str, outputs: Mapping[str, str]) -> Set[Call]:
    """The calls AWS makes with a function's role, which no recording of the code can show, as AWS
    documents them (AWS Lambda Developer Guide):

    * every function: the runtime writes its logs, ``logs:CreateLogStream`` and ``logs:PutLogEvents``
      on the function's own log group ("Lambda execution role", the AWSLambdaBasicExecutionRole
      policy; the stack or Chalice creates the group, so no ``logs:CreateLogGroup``);
    * a function with an SQS event source: Lambda's poller ``sqs:ReceiveMessage``,
      ``sqs:DeleteMessage`` and ``sqs:GetQueueAttributes`` on the queue ("Using Lambda with Amazon
      SQS", execution role permissions; AWSLambdaSQSQueueExecutionRole);
    * a function with active tracing: Lambda sends its segments, ``xray:PutTraceSegments`` and
      ``xray:PutTelemetryRecords`` ("Using AWS Lambda with AWS X-Ray"; AWSXRayDaemonWriteAccess). X-Ray's
      write actions have no resource type (Service Authorization Reference), hence ``*``.
    """
    name = stack.function_name(STAGE, function)
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{name}:log-stream:2026/12/03/[$LATEST]0123456789abcdef"
    calls: Set[Call] = {(f"logs:{action}", stream, ()) for action in ("CreateLogStream", "PutLogEvents")}
    if function in SQS_SOURCES:  # a queue's consumer (app.py: @app.on_sqs_message)
        queue_arn = outputs[SQS_SOURCES[function]]
        calls |= {(f"sqs:{action}", queue_arn, ()) for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")}
    if stack.chalice_config(STAGE, function).xray_enabled:
        calls |= {(f"xray:{action}", "*", ()) for action in ("PutTraceSegments", "PutTelemetryRecords")}
    return calls


def _problems(used: Mapping[str, Set[Call]], policies: Mapping[str, Dict[str, Any]]) -> List[str]:
    """Both ways a policy can be wrong: a call (the code's or AWS's) it would deny, a grant no call needs."""
    problems = []
    for function, calls in used.items():
        for call in sorted(calls):
            if not allows(policies[function], call[0], call[1], dict(call[2])):
                problems.append(f"{function} would be denied {call}: grant it in its .chalice policy file")
        for single in grants(policies[function]):
            if not any(allows(single, call[0], call[1], dict(call[2])) for call in calls):
                problems.append(f"{function} is granted {single['Statement'][0]} but no flow used it: remove it from its "
                                "policy or add the flow that needs it to tests/deploy/test_policies.py")
    return problems


def _bedrock_checks(service: str, operation: str, params: Mapping[str, Any], profiles: Mapping[str, List[str]]) -> List[Call]:
    """The IAM checks AWS documents for one Bedrock call (see the module's docstring)."""
    if (service, operation) == ("bedrock-runtime", "ConverseStream"):
        model = params["modelId"]
        if model.startswith("arn:"):
            target = model
        elif any(arn.endswith(f":inference-profile/{model}") for arn in profiles):
            target = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{model}"
        else:
            target = f"arn:aws:bedrock:{REGION}::foundation-model/{model}"
        action = "bedrock:InvokeModelWithResponseStream"
        routed = [(action, arn, (("bedrock:InferenceProfileArn", target),)) for arn in profiles.get(target, [])]
        return [(action, target, ())] + routed
    if (service, operation) == ("bedrock-agentcore", "InvokeAgentRuntime"):
        runtime, endpoint = params["agentRuntimeArn"], params.get("qualifier") or "DEFAULT"
        action = "bedrock-agentcore:InvokeAgentRuntime"
        return [(action, runtime, ()), (action, f"{runtime}/runtime-endpoint/{endpoint}", ())]
    raise AssertionError(f"unexpected Bedrock call {service}:{operation}: teach _bedrock_checks its IAM checks")


class Recorder:
    """Every AWS call the app makes, as the IAM checks it incurs."""

    def __init__(self, runtime: Any, management: Any, agent: Any, profiles: Mapping[str, List[str]]) -> None:
        self.calls: List[Call] = []
        self.profiles = profiles
        clients = runtime.clients
        for client in (clients.dynamodb, clients.sqs, clients.ssm, clients.events, clients.bedrock_runtime, clients.bedrock_agentcore,
                       clients.s3, clients.stepfunctions):
            client.meta.events.register("provide-client-params", self._aws_call)
        post, invoke = management.post_to_connection, agent.invoke_agent

        def post_to_connection(ConnectionId: str, Data: bytes) -> Any:
            endpoint = urlparse(management.endpoints[-1])
            api_id, stage = endpoint.hostname.split(".")[0], endpoint.path.strip("/")
            self.calls.append(("execute-api:ManageConnections",
                               f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}/POST/@connections/{ConnectionId}", ()))
            return post(ConnectionId=ConnectionId, Data=Data)

        def invoke_agent(**params: Any) -> Any:
            alias = f"agent-alias/{params['agentId']}/{params['agentAliasId']}"
            self.calls.append(("bedrock:InvokeAgent", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:{alias}", ()))
            return invoke(**params)

        close = management.delete_connection

        def delete_connection(ConnectionId: str) -> Any:
            endpoint = urlparse(management.endpoints[-1])
            api_id, stage = endpoint.hostname.split(".")[0], endpoint.path.strip("/")
            self.calls.append(("execute-api:ManageConnections",
                               f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}/DELETE/@connections/{ConnectionId}", ()))
            return close(ConnectionId=ConnectionId)

        def retrieve(**params: Any) -> Any:
            """Retrieve on the knowledge base (the fake has none of the asker's passages)."""
            knowledge_base = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:knowledge-base/{params['knowledgeBaseId']}"
            self.calls.append(("bedrock:Retrieve", knowledge_base, ()))
            return {"retrievalResults": []}

        management.post_to_connection = post_to_connection
        management.delete_connection = delete_connection
        agent.invoke_agent = invoke_agent
        agent.retrieve = retrieve

    def _aws_call(self, params: Dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if service == "dynamodb":  # a query of an index is authorized on the index
            resource = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"
            if "IndexName" in params:
                resource += f"/index/{params['IndexName']}"
        elif service == "sqs":
            resource = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{params['QueueUrl'].rsplit('/', 1)[-1]}"
        elif service == "ssm":
            resource = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{params['Name']}"
        elif service == "events":  # PutEvents: checked per entry, on its bus, with its source and detail-type
            for entry in params["Entries"]:
                bus = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{entry.get('EventBusName') or 'default'}"
                keys = (("events:source", entry["Source"]), ("events:detail-type", entry["DetailType"]))
                self.calls.append((f"{service}:{model.name}", bus, keys))
            return
        elif service in ("bedrock-runtime", "bedrock-agentcore"):
            self.calls.extend(_bedrock_checks(service, model.name, params, self.profiles))
            return
        elif service == "s3":  # each object's own action; a listing is the bucket's, with its prefix
            bucket = f"arn:aws:s3:::{params['Bucket']}"
            if model.name == "CreateBucket":  # botocore's generate_presigned_post: signs, sends nothing (see _documents)
                return
            if model.name == "ListObjectsV2":
                self.calls.append(("s3:ListBucket", bucket, (("s3:prefix", params.get("Prefix", "")),)))
            elif model.name == "DeleteObjects":
                self.calls.extend(("s3:DeleteObject", f"{bucket}/{o['Key']}", ()) for o in params["Delete"]["Objects"])
            elif model.name in ("GetObject", "PutObject", "DeleteObject"):
                self.calls.append((f"s3:{model.name}", f"{bucket}/{params['Key']}", ()))
            else:  # pragma: no cover
                raise AssertionError(f"unexpected S3 call {model.name}: teach the Recorder its IAM check")
            return
        elif service == "stepfunctions":  # StartExecution: on the state machine
            self.calls.append((f"states:{model.name}", params["stateMachineArn"], ()))
            return
        else:  # pragma: no cover - a new service needs a line here and a policy statement
            raise AssertionError(f"unexpected AWS call {service}:{model.name}")
        self.calls.append((f"{service}:{model.name}", resource, ()))


def _drive(client: Any, runtime: Any, management: Any, recorder: Recorder) -> Dict[str, Set[Call]]:
    """Every flow a client can drive; the calls each function made."""
    sqs = boto3.client("sqs")  # the test's own client: not recorded
    queue_url = runtime.settings.turn_queue_url
    calls: Dict[str, Set[Call]] = defaultdict(set)

    def invoke(function: str, event: Dict[str, Any]) -> Any:
        start = len(recorder.calls)
        payload = client.lambda_.invoke(function, event).payload
        calls[function].update(recorder.calls[start:])
        return payload

    def say(connection_id: str, **message: Any) -> List[Dict[str, Any]]:
        before = len(management.events(connection_id))
        invoke("websocket_message", ws_event("$default", connection_id, body=json.dumps(message)))
        return management.events(connection_id)[before:]

    def queued() -> str:
        (message,) = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1)["Messages"]
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return message["Body"]

    for connection_id in ("c1", "c2", "c3", "c4"):
        answer = invoke("websocket_connect", ws_event("$connect", connection_id, query={"token": make_token("alice")}))
        assert answer["statusCode"] == 200
    assert [e["type"] for e in say("c1", action="ping")] == ["pong"]
    assert [e["type"] for e in say("c1", action="usage")] == ["usage"]  # reads the user's usage items

    (accepted,) = say("c1", prompt="What is SQS?", requestId="r1")
    first = queued()
    assert say("c1", prompt="What is SQS?", requestId="r1")[0].get("duplicate") is True
    assert invoke("turn_worker", sqs_event([first])) == {"batchItemFailures": []}
    assert [e["type"] for e in management.events("c1")][-1] == "done", management.events("c1")[-1]  # answered, not denied
    assert [e["type"] for e in say("c2", action="resume", turnId=accepted["turnId"])][-1] == "done"

    (second,) = say("c1", prompt="never mind")
    queued()
    assert say("c1", action="cancel", turnId=second["turnId"])[-1]["code"] == "cancelled"

    say("c3", prompt="and now?")
    third = queued()
    management.gone.add("c3")  # the client leaves while the answer streams
    assert invoke("turn_worker", sqs_event([third])) == {"batchItemFailures": []}

    say("c4", prompt="are you there?")
    fifth = queued()
    management.refusing["c4"] = -1  # every post refused: the worker closes the connection
    assert invoke("turn_worker", sqs_event([fifth])) == {"batchItemFailures": []}
    assert "c4" in management.closed

    assert invoke("turn_worker", sqs_event(["not a turn"])) == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}

    say("c1", prompt="one more")
    fourth = queued()
    assert runtime.turns.claim(json.loads(fourth)["turnId"]) is not None  # a worker that then died
    invoke("turn_worker", sqs_event([fourth], receive_count=2))  # how it settles is tests/unit's business

    # The REST API: its authorizer, its own function with its own execution environment (a verifier
    # that loads the secret itself); then the routes' function, which trusts the authorizer's verdict:
    # a turn asked, duplicated, run and read back; a socket's queued turn cancelled.
    runtime.__dict__.pop("verifier", None)
    allowed = invoke("rest_authorizer", {"type": "TOKEN", "authorizationToken": f"Bearer {make_token('alice')}",
                                         "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api1/dev/POST/v1/turns"})
    assert allowed["principalId"] == "alice"

    def rest(method: str, path: str, body: Any = None) -> Tuple[int, Dict[str, Any]]:
        start = len(recorder.calls)
        response = getattr(client.http, method.lower())(
            path, headers={"Authorization": f"Bearer {make_token('alice')}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body))
        calls["api_handler"].update(recorder.calls[start:])
        return response.status_code, json.loads(response.body)

    status, created = rest("POST", "/v1/turns", {"prompt": "What is SNS?", "requestId": "rest-1"})
    assert status == 202, created
    rest_turn = queued()
    assert rest("POST", "/v1/turns", {"prompt": "What is SNS?", "requestId": "rest-1"})[1]["duplicate"] is True
    assert invoke("turn_worker", sqs_event([rest_turn])) == {"batchItemFailures": []}
    assert rest("GET", f"/v1/turns/{created['turnId']}")[1]["status"] == "done"
    assert rest("POST", "/v1/turns", {"prompt": "Plan a trip", "conversationId": "trip"})[0] == 202
    queued()
    assert say("c1", prompt="and then?", conversationId="trip")[0]["type"] == "accepted"
    queued()
    assert [c["conversationId"] for c in rest("GET", "/v1/conversations")[1]["conversations"]] == ["trip"]
    assert [t["prompt"] for t in rest("GET", "/v1/conversations/trip")[1]["turns"]] == ["Plan a trip", "and then?"]
    (socket_turn,) = say("c1", prompt="cancel me over REST")
    queued()
    assert rest("DELETE", f"/v1/turns/{socket_turn['turnId']}")[1]["error"]["code"] == "cancelled"
    assert management.events("c1")[-1]["code"] == "cancelled"  # told through the WebSocket API

    _documents(runtime, management, calls, invoke, say)

    for connection_id in ("c1", "c2"):
        invoke("websocket_disconnect", ws_event("$disconnect", connection_id))
    return calls


def _documents(runtime: Any, management: Any, calls: Dict[str, Set[Call]], invoke: Any, say: Any) -> None:
    """A document: its upload signed (by $default), the object arriving (S3's notice through the uploads
    queue), the pipeline's Lambda steps (Extract twice, as a retried step runs), its analysis, each status
    told to the owner (one of whose connections is gone), the listing, its deletion."""
    settings = runtime.settings
    bucket = settings.documents_bucket
    (signed,) = say("c1", action="upload", fileName="notes.md", contentType="text/markdown", size=len(NOTES))
    assert signed["type"] == "upload", signed
    key = signed["fields"]["key"]
    # The browser's POST: S3 authorizes it as the signer's s3:PutObject on the key (the presigned policy's).
    calls["websocket_message"].add(("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", ()))
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=NOTES)  # the test's own client: not recorded
    notice = {"Records": [{"eventName": "ObjectCreated:Post", "s3": {
        "bucket": {"name": bucket}, "object": {"key": key, "size": len(NOTES), "sequencer": "0065F1A2B3C4D5E6F7"}}}]}
    assert invoke("document_uploads", sqs_event([json.dumps(notice)])) == {"batchItemFailures": []}
    document = runtime.documents.get(signed["documentId"])
    state = {"action": "ingest", "document": document.brief(), "bucket": bucket, "key": key, "pollSeconds": 0}
    for _ in range(2):  # a retried step starts clean: it deletes the chunks the first one wrote
        assert invoke("document_extract", state)["ok"] is True
    for cached in ("backend", "system_prompt"):  # the Analyse step's own execution environment: it reads the prompt itself
        runtime.__dict__.pop(cached, None)
    assert "summary" in invoke("document_analyse", state)["analysis"]

    say("c1", action="ping")
    invoke("websocket_connect", ws_event("$connect", "c5", query={"token": make_token("alice")}))
    management.gone.add("c5")  # a connection of the owner's that is gone: forgotten
    for status in ("uploaded", "analysed"):
        message = {**document.brief(), "status": status, "analysis": {"summary": "Trip notes.", "topics": ["ferry"]}}
        sns = {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn:aws:sns:x",
                            "Sns": {"Type": "Notification", "MessageId": f"n-{status}", "TopicArn": "arn:aws:sns:x",
                                    "Subject": None, "Message": json.dumps(message), "Timestamp": "2026-12-03T00:00:00Z",
                                    "MessageAttributes": {"status": {"Type": "String", "Value": status}}}}]}
        invoke("document_notices", sns)
    assert [e["status"] for e in management.events("c1") if e["type"] == "document"][-1] == "analysed"
    assert runtime.connections.get("c5") is None

    (listed,) = say("c1", action="documents")
    assert [d["documentId"] for d in listed["documents"]] == [document.document_id]
    assert say("c1", action="delete", documentId=document.document_id)[-1]["status"] == "deleted"


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def recorded(request: pytest.FixtureRequest):
    """(calls per function, resolved policy per function, parameters) for one backend scenario."""
    from chalice.test import Client
    from moto import mock_aws

    import app
    from chalicelib.runtime import Runtime, set_runtime
    from chalicelib.settings import Settings
    from devserver.bedrock import BedrockEmulator
    from tests.support.fakes import FakeAgentRuntime, FakeClients, FakeManagementApi

    scenario = request.param
    with pytest.MonkeyPatch.context() as patch, BedrockEmulator(chunk_delay=0.001) as bedrock:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        for name, value in {**isolated_env(), "AWS_REGION": REGION}.items():
            patch.setenv(name, value)
        for service in ("BEDROCK_RUNTIME", "BEDROCK_AGENTCORE"):  # the real clients, against the emulator
            patch.setenv(f"AWS_ENDPOINT_URL_{service}", bedrock.url)
        with mock_aws():
            boto3.client("ssm").put_parameter(Name=SECRET_PARAMETER, Value=SECRET, Type="SecureString")
            parameters = stack.resolve_parameters(STAGE, {**BACKENDS[scenario], **OWN_SECRET})
            # The tables, queues and roles as CloudFormation makes them for make deploy (the packaged
            # roles hold the same documents), and the app configured by exactly the environment it resolves.
            outputs, roles = deploy_stack(parameters, websocket_api_id=API_ID, stage=STAGE)
            env = {**stack.environment_from_outputs(outputs), "STAGE": STAGE, "AWS_REGION": REGION, "FLUSH_INTERVAL_MS": "20",
                   "RELAY_RETRY_BASE_MS": "1"}
            settings = Settings.from_env(env)
            management, agent = FakeManagementApi(), FakeAgentRuntime()
            runtime = Runtime(settings, FakeClients(settings, management, agent))
            # What GetInferenceProfile would answer about the scenario's profile: the models it routes to.
            model, routes = parameters["InferenceProfile"], [arn for arn in parameters["InferenceProfileModelArns"].split(",") if arn]
            profile = model if model.startswith("arn:") else f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{model}"
            recorder = Recorder(runtime, management, agent, {profile: routes} if routes else {})
            set_runtime(runtime)
            try:
                with Client(app.app, stage_name="dev", project_dir=str(stack.ROOT)) as client:
                    calls = _drive(client, runtime, management, recorder)
            finally:
                set_runtime(None)
            policies = {function: roles[stack.role_id(function)] for function in stack.functions()}
    for function in policies:
        calls[function] |= _aws_calls(function, outputs)
    return scenario, calls, policies


def test_every_call_is_allowed_and_every_grant_is_used(recorded):
    scenario, used, policies = recorded
    assert set(used) == set(policies)
    assert not _problems(used, policies), scenario


def _mutants(statement: Dict[str, Any]) -> Iterator[Tuple[Optional[Dict[str, Any]], str]]:
    """The statement without itself, without each action, without each resource, with each resource
    pointing elsewhere (another log group, queue, table, API ...)."""
    yield None, "removed"
    actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
    for action in actions:
        if len(actions) > 1:
            yield {**statement, "Action": [a for a in actions if a != action]}, f"without {action}"
    for resource in resources:
        if len(resources) > 1:
            yield {**statement, "Resource": [r for r in resources if r != resource]}, f"without {resource}"
        elsewhere = resource[:-1] + "-elsewhere*" if resource.endswith("*") else resource + "-elsewhere"
        yield {**statement, "Resource": [elsewhere if r == resource else r for r in resources]}, f"with {elsewhere}"


def test_every_statement_action_and_resource_is_needed(recorded):
    """Remove each statement, each action, each resource in turn, or point a resource elsewhere:
    the checks above must fail every time, or that part of the policy is untested."""
    scenario, used, policies = recorded
    assert not _problems(used, policies)
    tried = 0
    for function, policy in policies.items():
        for index, statement in enumerate(policy["Statement"]):
            for mutant, change in _mutants(statement):
                rest = policy["Statement"][:index] + ([mutant] if mutant else []) + policy["Statement"][index + 1:]
                assert _problems(used, {**policies, function: {**policy, "Statement": rest}}), (
                    f"{scenario}: {function}'s {statement['Sid']} {change}: no check fails"
                )
                tried += 1
    assert tried > 40, tried


def test_the_worker_calls_only_its_backend(recorded):
    scenario, used, _ = recorded
    bedrock = {call[0] for function in used for call in used[function] if call[0].startswith(("bedrock:", "bedrock-agentcore:"))}
    expected = {
        "agent": {"bedrock:InvokeAgent"},
        # converse: the asker's passages retrieved from the knowledge base, before the prompt
        "converse": {"bedrock:InvokeModelWithResponseStream", "bedrock:Retrieve"},
        "agentcore": {"bedrock-agentcore:InvokeAgentRuntime"},
    }[BACKENDS[scenario].get("Backend", "agent")]
    assert bedrock == expected
    for answerer in ("turn_worker", "document_analyse"):  # the Analyse step asks the same backend
        assert {call[0] for call in used[answerer]} >= expected, answerer


@pytest.mark.parametrize("scenario", sorted(name for name, given in BACKENDS.items() if "InferenceProfileModelArns" in given))
def test_through_a_profile_its_models_are_reachable_only_through_it(scenario):
    parameters = stack.resolve_parameters(STAGE, {**BACKENDS[scenario], **OWN_SECRET})
    worker = _resolved(parameters)["TurnWorkerRole"]
    given = parameters["InferenceProfile"]
    profile = given if given.startswith("arn:") else f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{given}"
    other = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/eu.{US_SONNET_MODELS[0].rsplit('/', 1)[1]}"
    for arn in US_SONNET_MODELS:
        assert allows(worker, "bedrock:InvokeModelWithResponseStream", arn, {"bedrock:InferenceProfileArn": profile})
        assert not allows(worker, "bedrock:InvokeModelWithResponseStream", arn)  # called directly
        assert not allows(worker, "bedrock:InvokeModelWithResponseStream", arn, {"bedrock:InferenceProfileArn": other})
    assert not allows(worker, "bedrock:InvokeModelWithResponseStream", other)


def _resolved(parameters: Mapping[str, str]) -> Dict[str, Dict[str, Any]]:
    """Each role's policy as CloudFormation (moto's) resolves it for these parameters."""
    return resolved_stack(parameters, websocket_api_id=API_ID, stage=STAGE)[1]


def test_the_secret_statement_is_there_only_when_a_parameter_is_configured():
    base = stack.resolve_parameters(STAGE, {"Backend": "agent", "AgentId": "AGENT12345", "AgentAliasId": "ALIAS12345",
                                            "CreateUserPool": "false", "JwtIssuer": "https://issuer.example",
                                            "JwtJwksUrl": "https://issuer.example/jwks"})
    sids = {s["Sid"] for s in _resolved(base)["WebsocketConnectRole"]["Statement"]}
    assert sids == {"WriteOwnLogs", "RecordConnections"}

    with_secret = {**base, "JwtSecretParameter": SECRET_PARAMETER}
    sids = {s["Sid"] for s in _resolved(with_secret)["WebsocketConnectRole"]["Statement"]}
    assert sids == {"WriteOwnLogs", "RecordConnections", "ReadJwtSecret"}  # aws/ssm: no kms grant needed

    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    statements = _resolved({**with_secret, "JwtSecretKmsKeyArn": key})["WebsocketConnectRole"]["Statement"]
    (decrypt,) = [s for s in statements if s["Sid"] == "DecryptJwtSecret"]
    assert decrypt["Resource"] == key
    assert decrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
        "kms:EncryptionContext:PARAMETER_ARN": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{SECRET_PARAMETER}",
    }
