"""Helpers for the deployment tests: running the tools, reading templates, judging policies."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import boto3

from infra import stack
from tests.deploy import cfn, deployer_iam
from tests.deploy.recording import Check
from tests.deploy import moto_models  # noqa: F401 - moto's CloudFormation builds the user pool and the page (deploy_stack)

STAGES = ("dev", "prod")
ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"

# Each backend's parameters as an operator gives them (besides sign-in), one scenario per IAM shape.
SONNET = "anthropic.claude-sonnet-4-5-20250929-v1:0"
US_SONNET_PROFILE = f"us.{SONNET}"
# What `aws bedrock get-inference-profile --inference-profile-identifier us.<SONNET>` lists as its models.
US_SONNET_MODELS = tuple(f"arn:aws:bedrock:{region}::foundation-model/{SONNET}" for region in ("us-east-1", "us-east-2", "us-west-2"))
APPLICATION_PROFILE = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/a1b2c3d4e5f6"
RUNTIME_ARN = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/answers_agent-A1b2C3d4E5"
SYSTEM_PROMPT = "Réponds brièvement, en français. 🙂"  # non-ASCII: kept in SSM, never in an environment
BACKENDS: Dict[str, Dict[str, str]] = {
    "agent": {"Backend": "agent", "AgentId": "AGENT12345", "AgentAliasId": "ALIAS12345"},
    # With a system prompt the worker reads it from SSM (ReadSystemPrompt); converse-profile has none.
    "converse-model": {"Backend": "converse", "ModelId": "anthropic.claude-3-5-haiku-20241022-v1:0", "SystemPrompt": SYSTEM_PROMPT},
    "converse-profile": {"Backend": "converse", "InferenceProfile": US_SONNET_PROFILE, "InferenceProfileModelArns": ",".join(US_SONNET_MODELS)},
    "converse-application-profile": {
        "Backend": "converse", "InferenceProfile": APPLICATION_PROFILE, "InferenceProfileModelArns": ",".join(US_SONNET_MODELS),
        "SystemPrompt": SYSTEM_PROMPT,
    },
    "agentcore": {"Backend": "agentcore", "AgentRuntimeArn": RUNTIME_ARN},
    "agentcore-endpoint": {"Backend": "agentcore", "AgentRuntimeArn": RUNTIME_ARN, "AgentRuntimeQualifier": "production"},
}


def tool(name: str) -> str:
    """A console script of the Python running the tests (the project's virtualenv)."""
    return str(Path(sys.executable).parent / name)


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("cfn-lint"), str(path)], capture_output=True, text=True)


def isolated_env() -> Dict[str, str]:
    """This environment without any way to reach a real AWS account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    return env


def as_list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else [value]


def resources_of_type(template: Dict[str, Any], kind: str) -> Dict[str, Dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def statements(document: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """Every statement of a policy document, both branches of an ``Fn::If`` included."""
    for statement in document["Statement"]:
        if "Fn::If" in statement:
            for branch in statement["Fn::If"][1:]:
                if branch != {"Ref": "AWS::NoValue"}:
                    yield branch
        else:
            yield statement


class Placeholders(cfn.Context):
    """Resolves every reference to a visible marker, so a ``*`` left in a resource is the template's own.

    Conditions are whatever ``truth`` says (true when it does not name them), so a scan can walk
    every branch of every ``Fn::If``, nested ones included.
    """

    def __init__(self, truth: Optional[Mapping[str, bool]] = None) -> None:
        super().__init__()
        self.truth = dict(truth or {})

    def ref(self, name: str) -> Any:
        return cfn.NO_VALUE if name == "AWS::NoValue" else f"<{name.replace('AWS::', '')}>"

    def attribute(self, resource: str, attribute: str) -> str:
        return f"<{resource}.{attribute}>"

    def condition(self, name: str) -> bool:
        return self.truth.get(name, True)


def deploy_stack(parameters: Mapping[str, str], websocket_api_id: str = "", stage: str = "dev") -> Tuple[Dict[str, str], Dict[str, Dict[str, Any]]]:
    """The stack ``make deploy`` creates, as (moto's) CloudFormation resolves it: its outputs, and each
    role's policy by the role's logical id (``TurnWorkerRole``). Call inside ``mock_aws``.
    """
    template = stack.deploy_template(stage)
    values = {**parameters, stack.WEBSOCKET_API: websocket_api_id, stack.REST_API: ""}
    cloudformation, iam = boto3.client("cloudformation", region_name=REGION), boto3.client("iam", region_name=REGION)
    name = stack.data_stack_name(stage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No Moto CloudFormation support for AWS::CloudWatch::Alarm"
        cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"],
                                    Parameters=[{"ParameterKey": k, "ParameterValue": values[k]} for k in template["Parameters"]])
    (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in described["Outputs"]}
    policies = {stack.role_id(f): role_policy(iam, outputs[stack.role_output(f)], f) for f in stack.functions()}
    return outputs, policies


def resolved_stack(parameters: Mapping[str, str], websocket_api_id: str = "",
                   stage: str = "dev") -> Tuple[Dict[str, str], Dict[str, Dict[str, Any]]]:
    """``deploy_stack`` in a moto of its own, for a test that needs only what it resolved."""
    from moto import mock_aws

    with mock_aws():
        return deploy_stack(parameters, websocket_api_id, stage)


def role_policy(iam: Any, role_arn: str, function: str) -> Dict[str, Any]:
    """A function's inline policy on the role the deploy stack made for it, as CloudFormation would
    have stored it. Two moto habits are undone: it returns the document as Python's ``repr``, and
    keeps an ``AWS::NoValue`` list item as ``None`` where CloudFormation drops it."""
    document = iam.get_role_policy(RoleName=role_arn.rsplit("/", 1)[1], PolicyName=function)["PolicyDocument"]
    if isinstance(document, str):
        document = ast.literal_eval(document) if document.startswith("{'") else json.loads(document)
    document["Statement"] = [statement for statement in document["Statement"] if statement is not None]
    return document


def conditions_in(node: Any) -> set:
    """The names of the conditions any ``Fn::If`` in ``node`` tests."""
    found: set = set()
    if isinstance(node, dict):
        if "Fn::If" in node:
            found.add(node["Fn::If"][0])
        for value in node.values():
            found |= conditions_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= conditions_in(value)
    return found


def allows(policy: Dict[str, Any], action: str, resource: str, context: Optional[Mapping[str, str]] = None) -> bool:
    """Whether an identity policy allows this request, by the one IAM matcher the deploy tests share
    (``deployer_iam.allows``: IAM's wildcards and condition operators). ``context`` holds the
    request's condition keys (e.g. ``bedrock:InferenceProfileArn``)."""
    return deployer_iam.allows(policy, Check(action, resource, tuple(sorted((context or {}).items()))))


def grants(policy: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """Every grant of an identity policy, one (action, resource pattern) per single-statement policy."""
    for statement in policy["Statement"]:
        if statement["Effect"] == "Allow":
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    single = {"Sid": statement.get("Sid"), "Effect": "Allow", "Action": action, "Resource": resource}
                    if "Condition" in statement:
                        single["Condition"] = statement["Condition"]
                    yield {"Statement": [single]}
