"""The IAM policies against what each function really does.

Every handler runs through the Chalice test client against moto, through the flows a client can
drive (connect, ping, ask, a repeated ask, cancel, resume, a client that leaves mid-answer, a
poison message, a redelivery, disconnect), while every AWS call it makes is recorded. Each call
must be allowed by the function's own policy, resolved as ``make deploy`` resolves it, and each
DynamoDB, SQS, SSM, Bedrock and execute-api grant must be used by some flow: a policy that
grants less breaks a deploy, one that grants more is not least privilege.
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from typing import Any, Dict, List, Set, Tuple
from urllib.parse import urlparse

import boto3
import pytest

from infra import stack
from tests.deploy.support import ACCOUNT, REGION, allows, data_outputs, grants, wired_names
from tests.events import API_ID, STAGE, sqs_event, ws_event
from tests.tokens import SECRET, make_token

SECRET_PARAMETER = "/agentstream/dev/jwt-secret"
# Granted for someone other than the app's code: Lambda's SQS poller, and the runtime's logging.
NOT_CALLED_BY_THE_CODE = {"ConsumeTurnQueue", "WriteOwnLogs"}


@pytest.fixture
def settings(settings):
    """Sign-in as deployed: the HS256 secret in an SSM SecureString, none in the environment."""
    boto3.client("ssm").put_parameter(Name=SECRET_PARAMETER, Value=SECRET, Type="SecureString")
    return dataclasses.replace(settings, jwt_secret="", jwt_secret_parameter=SECRET_PARAMETER)


class Recorder:
    """Every AWS call the app makes, as (IAM action, resource ARN)."""

    def __init__(self, runtime: Any, management: Any, agent: Any) -> None:
        self.calls: List[Tuple[str, str]] = []
        for client in (runtime.clients.dynamodb, runtime.clients.sqs, runtime.clients.ssm):
            client.meta.events.register("provide-client-params", self._aws_call)
        post, invoke = management.post_to_connection, agent.invoke_agent

        def post_to_connection(ConnectionId: str, Data: bytes) -> Any:
            endpoint = urlparse(management.endpoints[-1])
            api_id, stage = endpoint.hostname.split(".")[0], endpoint.path.strip("/")
            self.calls.append(("execute-api:ManageConnections",
                               f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}/POST/@connections/{ConnectionId}"))
            return post(ConnectionId=ConnectionId, Data=Data)

        def invoke_agent(**params: Any) -> Any:
            alias = f"agent-alias/{params['agentId']}/{params['agentAliasId']}"
            self.calls.append(("bedrock:InvokeAgent", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:{alias}"))
            return invoke(**params)

        management.post_to_connection = post_to_connection
        agent.invoke_agent = invoke_agent

    def _aws_call(self, params: Dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if service == "dynamodb":
            resource = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"
        elif service == "sqs":
            resource = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{params['QueueUrl'].rsplit('/', 1)[-1]}"
        elif service == "ssm":
            resource = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{params['Name']}"
        else:  # pragma: no cover - a new service needs a line here and a policy statement
            raise AssertionError(f"unexpected AWS call {service}:{model.name}")
        self.calls.append((f"{service}:{model.name}", resource))


@pytest.fixture
def used(client, runtime, management, agent, settings, resources) -> Dict[str, Set[Tuple[str, str]]]:
    recorder = Recorder(runtime, management, agent)
    sqs = boto3.client("sqs")  # the test's own client: not recorded
    calls: Dict[str, Set[Tuple[str, str]]] = defaultdict(set)

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
        (message,) = sqs.receive_message(QueueUrl=settings.turn_queue_url, MaxNumberOfMessages=1)["Messages"]
        sqs.delete_message(QueueUrl=settings.turn_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return message["Body"]

    for connection_id in ("c1", "c2", "c3"):
        answer = invoke("websocket_connect", ws_event("$connect", connection_id, query={"token": make_token("alice")}))
        assert answer["statusCode"] == 200
    assert [e["type"] for e in say("c1", action="ping")] == ["pong"]

    (accepted,) = say("c1", prompt="What is SQS?", requestId="r1")
    first = queued()
    assert say("c1", prompt="What is SQS?", requestId="r1")[0].get("duplicate") is True
    assert invoke("turn_worker", sqs_event([first])) == {"batchItemFailures": []}
    assert [e["type"] for e in say("c2", action="resume", turnId=accepted["turnId"])][-1] == "done"

    (second,) = say("c1", prompt="never mind")
    queued()
    assert say("c1", action="cancel", turnId=second["turnId"])[-1]["code"] == "cancelled"

    say("c3", prompt="and now?")
    third = queued()
    management.gone.add("c3")  # the client leaves while the answer streams
    assert invoke("turn_worker", sqs_event([third])) == {"batchItemFailures": []}

    assert invoke("turn_worker", sqs_event(["not a turn"])) == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}

    say("c1", prompt="one more")
    fourth = queued()
    assert runtime.store.claim_turn(json.loads(fourth)["turnId"]) is not None  # a worker that then died
    invoke("turn_worker", sqs_event([fourth], receive_count=2))  # how it settles is tests/unit's business

    for connection_id in ("c1", "c2"):
        invoke("websocket_disconnect", ws_event("$disconnect", connection_id))
    return calls


def _policies(runtime: Any, settings: Any, resources: Any) -> Dict[str, Dict[str, Any]]:
    """Each function's policy, resolved against this test's moto resources as make deploy would."""
    names = wired_names(resources.env())
    names["TurnDeadLetterQueue"] = resources.dead_letter_queue_url.rsplit("/", 1)[-1]
    parameters = stack.resolve_parameters(STAGE, {
        "AgentId": settings.agent_id, "AgentAliasId": settings.agent_alias_id, "JwtSecretParameter": SECRET_PARAMETER,
    })
    context = stack.context_from_outputs(parameters, data_outputs(names), websocket_api_id=API_ID)
    return {function: stack.render_policy(document, context)[0]
            for function, (_, document) in stack.policy_documents(STAGE).items()}


def test_every_call_a_function_makes_is_allowed_by_its_own_policy(used, runtime, settings, resources):
    policies = _policies(runtime, settings, resources)
    assert set(used) == set(policies)
    for function, calls in used.items():
        denied = sorted(call for call in calls if not allows(policies[function], *call))
        assert not denied, f"{function} would be denied {denied}: grant them in its .chalice policy file"


def test_every_grant_is_used(used, runtime, settings, resources):
    policies = _policies(runtime, settings, resources)
    for function, policy in policies.items():
        code_statements = {**policy, "Statement": [s for s in policy["Statement"] if s["Sid"] not in NOT_CALLED_BY_THE_CODE]}
        for action, pattern in grants(code_statements):
            single = {"Statement": [{"Effect": "Allow", "Action": action, "Resource": pattern}]}
            assert any(allows(single, *call) for call in used[function]), (
                f"{function} is granted {action} on {pattern} but no flow used it: remove it from its policy "
                "or add the flow that needs it to tests/deploy/test_policies.py"
            )


def test_the_secret_statement_is_there_only_when_a_parameter_is_configured(runtime, settings, resources):
    with_secret = _policies(runtime, settings, resources)["websocket_connect"]
    assert "ReadJwtSecret" in {s["Sid"] for s in with_secret["Statement"]}
    assert "DecryptJwtSecret" not in {s["Sid"] for s in with_secret["Statement"]}  # aws/ssm: no grant needed

    document = stack.policy_documents(STAGE)["websocket_connect"][1]
    base = stack.resolve_parameters(STAGE, {"AgentId": "AGENT12345", "AgentAliasId": "ALIAS12345",
                                            "JwtIssuer": "https://issuer.example", "JwtJwksUrl": "https://issuer.example/jwks"})
    context = stack.Context(parameters=base, attributes={"ConnectionsTable.Arn": "arn:table"},
                            pseudo={"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                                    "AWS::URLSuffix": "amazonaws.com"}, conditions=stack.all_conditions())
    sids = {s["Sid"] for s in stack.render_policy(document, context)[0]["Statement"]}
    assert sids == {"WriteOwnLogs", "RecordConnections"}

    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    context.parameters = {**base, "JwtSecretParameter": SECRET_PARAMETER, "JwtSecretKmsKeyArn": key}
    (decrypt,) = [s for s in stack.render_policy(document, context)[0]["Statement"] if s["Sid"] == "DecryptJwtSecret"]
    assert decrypt["Resource"] == key
    assert decrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
        "kms:EncryptionContext:PARAMETER_ARN": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{SECRET_PARAMETER}",
    }
