"""The deployer's IAM policies (``docs/iam/``): shown verbatim in docs/deploy.md, sufficient, and no wider.

CloudFormation creates, reads, updates and deletes every resource of a stack with its service role
(or the caller's credentials), through the resource type's handlers; the permissions each handler
needs are in the resource provider schemas cfn-lint bundles. The service role must allow all of
them for every resource type of the packaged stacks (after the SAM transform, as CloudFormation
runs it) and of ``infra/data.json`` (every resource, whatever its condition), except what serves a
feature no resource uses (``deployer_iam.FEATURES``); and it must need every grant it holds.

What ``make deploy`` and ``make destroy`` call is recorded in
``tests/deploy/test_deploy_path.py::test_make_deploys_policy_allows_every_call_it_makes``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse

from infra import stack
from tests.deploy import deployer_iam, recording
from tests.deploy.deployer_iam import POLICIES, Check
from tests.deploy.support import ACCOUNT, REGION, STAGES


def _service_role(stage: str = "dev", text: str | None = None) -> Dict[str, Any]:
    return deployer_iam.policy("cloudformation-service-role", region=REGION, account=ACCOUNT, stage=stage, text=text)


@pytest.fixture(scope="module")
def stacks(packaged: Dict[str, Path]) -> Dict[str, Dict[str, Any]]:
    """Every template CloudFormation is given, as it creates it: each stage's packaged stack, SAM
    expanded, and the data stack ``make deploy`` deploys (``data.json`` with the functions' roles)."""
    found = {f"agentstream-{stage}": deployer_iam.sam_expanded(json.loads((path / "sam.json").read_text()), stage, REGION)
             for stage, path in packaged.items()}
    for stage in STAGES:
        found[stack.data_stack_name(stage)] = stack.deploy_template(stage)
    return found


def _handler_checks(stacks: Dict[str, Dict[str, Any]]) -> List[Check]:
    found: List[Check] = []
    for name, template in stacks.items():
        stage = name.split("-")[1]
        found += deployer_iam.handler_checks(template, name, REGION, ACCOUNT, {"Stage": stage})
    return found


def test_the_docs_show_each_policy_verbatim():
    docs = (deployer_iam.DOCS / "deploy.md").read_text()
    assert sorted(p.stem for p in deployer_iam.POLICY_DIR.glob("*")) == sorted(POLICIES)
    for name in POLICIES:
        text = deployer_iam.policy_text(name)
        document = json.loads(text)  # valid JSON, as pasted
        assert document["Version"] == "2012-10-17" and document["Statement"], name
        shown = re.search(rf"<!-- docs/iam/{name}\.json[^>]*-->\n```json\n(.*?)```\n", docs, re.S)
        assert shown, f"docs/deploy.md does not show docs/iam/{name}.json (marker, then a json block)"
        assert shown.group(1) == text, f"docs/deploy.md's copy of docs/iam/{name}.json differs from the file"
        for statement in document["Statement"]:  # the ARNs' capitals are the placeholders docs/deploy.md names
            for resource in deployer_iam._as_list(statement["Resource"]):
                assert set(re.findall(r"[A-Z]{2,}", resource)) <= {"REGION", "ACCOUNT", "STAGE", "BUCKET"}, (name, resource)


def test_the_templates_are_what_cloudformation_creates(stacks):
    """The SAM transform ran: only CloudFormation's own resource types are left to judge."""
    for name, template in stacks.items():
        kinds = set(deployer_iam.resources_by_type(template))
        assert not any(kind.startswith("AWS::Serverless::") for kind in kinds), name
    packaged = deployer_iam.resources_by_type(stacks["agentstream-dev"])
    expanded = {"AWS::Lambda::Function", "AWS::Lambda::LayerVersion", "AWS::Lambda::EventSourceMapping", "AWS::IAM::Role"}
    assert expanded <= set(packaged)
    # Every resource counts, whatever its condition: the dev data stack has the agent-only alarm too.
    assert "AgentModelThrottlesAlarm" in deployer_iam.resources_by_type(stacks["agentstream-dev-data"])["AWS::CloudWatch::Alarm"]


def test_every_resource_type_has_handler_permissions_or_a_reason(stacks):
    kinds = {kind for template in stacks.values() for kind in deployer_iam.resources_by_type(template)}
    without = {kind for kind in kinds if not deployer_iam.handler_permissions(kind)}
    assert without == set(deployer_iam.NO_HANDLERS) & kinds, "say in NO_HANDLERS how these types' needs are known"
    assert set(deployer_iam.NO_HANDLERS) <= kinds, "NO_HANDLERS names a type no template has"


@pytest.mark.parametrize("stage", STAGES)
def test_the_service_role_allows_every_handler_permission_of_the_stacks(stage, stacks):
    for name in (f"agentstream-{stage}", f"agentstream-{stage}-data"):
        checks = deployer_iam.handler_checks(stacks[name], name, REGION, ACCOUNT, {"Stage": stage})
        denied = deployer_iam.missing(_service_role(stage), checks)
        assert not denied, f"the service role cannot manage {name}:\n" + "\n".join(denied)


def test_every_grant_of_the_service_role_is_needed(stacks):
    """Removing any action of any statement leaves some handler permission of some stack denied."""
    needless = deployer_iam.needless(_service_role(), _handler_checks(stacks))
    assert not needless, "the service role grants what no handler needs:\n" + "\n".join(needless)


def test_features_left_out_are_unused(stacks):
    """What the service role leaves out serves only properties no resource of the templates sets,
    and each such permission really is one its type's handlers list."""
    for feature in deployer_iam.FEATURES:
        listed = {p for h in deployer_iam.HANDLERS for p in deployer_iam.handler_permissions(feature.type).get(h, ())}
        assert set(feature.permissions) & listed, f"{feature.type}: none of {feature.permissions} is a handler permission"
        for template in stacks.values():
            for logical_id, resource in deployer_iam.resources_by_type(template).get(feature.type, {}).items():
                for prop in feature.properties:
                    assert not deployer_iam.property_set(resource, prop), (
                        f"{logical_id} sets {prop}: the deployer policies need {feature.permissions} ({feature.reason})")


def test_removing_any_action_of_the_roles_statement_denies_something(stacks):
    """``needless`` above, done literally for the roles' statement (issue #17: the role-deletion reads
    were missing): each action removed in turn, every handler permission checked again."""
    checks = sorted(set(_handler_checks(stacks)), key=repr)
    role = _service_role()
    index = next(i for i, statement in enumerate(role["Statement"]) if statement.get("Sid") == "FunctionRoles")
    assert {"iam:ListRolePolicies", "iam:ListAttachedRolePolicies"} <= set(role["Statement"][index]["Action"])
    for action in role["Statement"][index]["Action"]:
        denied = deployer_iam.missing(deployer_iam.without(role, index, action), checks)
        assert denied and all(line.startswith(f"{action} on arn:aws:iam::{ACCOUNT}:role/agentstream-") for line in denied), action


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_action_aws_authorizes_with_another_comes_with_it(name):
    """GetFunction on a tagged function also needs ListTags (Lambda developer guide): a policy that
    allows one on a resource allows the other there too."""
    document = deployer_iam.policy(name, region=REGION, account=ACCOUNT, stage="dev")
    for statement in document["Statement"]:
        for action in deployer_iam._as_list(statement["Action"]):
            for implied in recording.IMPLIED.get(action, ()):
                for resource in deployer_iam._as_list(statement["Resource"]):
                    sample = resource.replace("*", "x")
                    assert deployer_iam.allows(document, Check(implied, sample)), (name, action, resource, implied)


# ---- the IAM model the checks rest on


def test_iam_matching_follows_iam_wildcards_and_conditions():
    document = {"Statement": [
        {"Effect": "Allow", "Action": "Lambda:Get*", "Resource": "arn:aws:lambda:us-east-1:1:function:app-?-*"},
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/app-*",
         "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}},
        {"Effect": "Allow", "Action": "lambda:CreateEventSourceMapping", "Resource": "*",
         "Condition": {"StringLike": {"lambda:FunctionArn": "arn:aws:lambda:*:1:function:app-*"}}},
    ]}
    function = "arn:aws:lambda:us-east-1:1:function:"
    assert deployer_iam.allows(document, Check("lambda:getfunction", f"{function}app-d-x"))  # actions: any case
    assert not deployer_iam.allows(document, Check("lambda:GetFunction", f"{function}APP-d-x"))  # ARNs: exact case
    assert not deployer_iam.allows(document, Check("lambda:GetFunction", f"{function}app-dd-x"))  # ? is one character
    assert not deployer_iam.allows(document, Check("lambda:UpdateFunctionCode", "arn:aws:lambda:us-east-1:1:function:app-d-x"))
    role = "arn:aws:iam::1:role/app-worker"
    assert deployer_iam.allows(document, Check("iam:PassRole", role, (("iam:PassedToService", "lambda.amazonaws.com"),)))
    assert not deployer_iam.allows(document, Check("iam:PassRole", role, (("iam:PassedToService", "ec2.amazonaws.com"),)))
    assert not deployer_iam.allows(document, Check("iam:PassRole", role))  # a condition key the request lacks fails
    mapping = "lambda:CreateEventSourceMapping"
    assert deployer_iam.allows(document, Check(mapping, "*", (("lambda:FunctionArn", f"{function}app-w"),)))
    assert not deployer_iam.allows(document, Check(mapping, "*", (("lambda:FunctionArn", f"{function}other"),)))


def _sent(service: str, method: str, **params: Any) -> recording.Request:
    """The request botocore itself sends for one call (captured before it leaves)."""
    client = botocore.session.get_session().create_client(
        service, region_name=REGION, endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing", aws_secret_access_key="testing")
    sent: List[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 500, {}, None)

    client.meta.events.register("before-send", capture)
    with pytest.raises(Exception):  # noqa: B017 - the stand-in response parses as nothing
        getattr(client, method)(**params)
    request = sent[0]
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return recording.Request(request.method, request.url, headers, body)


@pytest.mark.parametrize("service, method, params, expected", [
    # query protocol: Action=
    ("iam", "list_role_policies", {"RoleName": "agentstream-dev-turn_worker"},
     [("iam:ListRolePolicies", f"arn:aws:iam::{ACCOUNT}:role/agentstream-dev-turn_worker")]),
    ("cloudformation", "describe_stacks", {"StackName": "agentstream-dev-data"},
     [("cloudformation:DescribeStacks", deployer_iam.stack_arn("agentstream-dev-data", REGION, ACCOUNT))]),
    # JSON protocol: X-Amz-Target; DescribeLogGroups is authorized on no log group
    ("logs", "describe_log_groups", {"logGroupNamePrefix": "/aws/lambda/agentstream-dev-"},
     [("logs:DescribeLogGroups", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group::log-stream:")]),
    ("logs", "put_retention_policy", {"logGroupName": "/aws/lambda/agentstream-dev-x", "retentionInDays": 14},
     [("logs:PutRetentionPolicy", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/agentstream-dev-x:*")]),
    # REST: method and requestUri; an IAM action named otherwise than its operation
    ("lambda", "get_layer_version_by_arn", {"Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:agentstream-dev-managed-layer:3"},
     [("lambda:GetLayerVersion", f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:agentstream-dev-managed-layer:3")]),
    ("lambda", "get_function", {"FunctionName": "agentstream-dev-turn_worker"},
     [("lambda:GetFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:agentstream-dev-turn_worker"),
      ("lambda:ListTags", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:agentstream-dev-turn_worker")]),
    ("lambda", "delete_layer_version", {"LayerName": "agentstream-dev-managed-layer", "VersionNumber": 2},
     [("lambda:DeleteLayerVersion", f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:agentstream-dev-managed-layer:2")]),
    ("lambda", "list_event_source_mappings", {"EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"},
     [("lambda:ListEventSourceMappings", "*")]),
    # API Gateway v2: the HTTP verb, on the path without /v2
    ("apigatewayv2", "update_stage", {"ApiId": "a1b2c3d4e5", "StageName": "dev"},
     [("apigateway:PATCH", f"arn:aws:apigateway:{REGION}::/apis/a1b2c3d4e5/stages/dev")]),
    # no permission at all
    ("sts", "get_caller_identity", {}, []),
])
def test_recorded_requests_map_to_their_iam_checks(service, method, params, expected):
    call = recording.operation(_sent(service, method, **params))
    checks = recording.checks(call, REGION, ACCOUNT)
    assert [(c.action, c.resource) for c in checks] == expected


def test_calls_carry_what_aws_checks_besides_the_call():
    role = f"arn:aws:iam::{ACCOUNT}:role/agentstream-dev-data-TurnWorkerRole-X"
    layer = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:agentstream-dev-managed-layer:1"
    call = recording.operation(_sent("lambda", "create_function", FunctionName="agentstream-dev-turn_worker",
                                     Runtime="python3.13", Role=role, Handler="app.h", Code={"ZipFile": b"x"},
                                     Layers=[layer], Tags={"a": "b"}))
    checks = {(c.action, c.resource, c.context) for c in recording.checks(call, REGION, ACCOUNT)}
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:agentstream-dev-turn_worker"
    assert checks == {
        ("lambda:CreateFunction", function, ()),
        ("lambda:TagResource", function, ()),
        ("iam:PassRole", role, (("iam:PassedToService", "lambda.amazonaws.com"),)),
        ("lambda:GetLayerVersion", layer, ()),
    }
    mapping = recording.operation(_sent("lambda", "create_event_source_mapping", FunctionName="agentstream-dev-turn_worker",
                                        EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"))
    (check,) = recording.checks(mapping, REGION, ACCOUNT)
    assert (check.action, check.resource) == ("lambda:CreateEventSourceMapping", "*")
    assert check.context == (("lambda:FunctionArn", function),)
    cfn_role = f"arn:aws:iam::{ACCOUNT}:role/agentstream-cloudformation"
    create = recording.operation(_sent("cloudformation", "create_stack", StackName="agentstream-dev-data", TemplateBody="{}",
                                       RoleARN=cfn_role, Parameters=[{"ParameterKey": "Stage", "ParameterValue": "dev"}]))
    assert ("iam:PassRole", cfn_role, (("iam:PassedToService", "cloudformation.amazonaws.com"),)) in {
        (c.action, c.resource, c.context) for c in recording.checks(create, REGION, ACCOUNT)}
    assert deployer_iam.stack_parameters(create) == {"Stage": "dev"}
    assert deployer_iam.recorded_checks([create], REGION, ACCOUNT) == recording.checks(create, REGION, ACCOUNT)  # the role acts
