"""The system prompt lives in SSM, never in an environment: the template, and the stack moto builds from it."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from infra import stack
from tests.deploy.support import ACCOUNT, REGION, SYSTEM_PROMPT, deploy_stack

DATA, APP = stack.load_json(stack.DATA_TEMPLATE), stack.load_json(stack.APP_TEMPLATE)
NAME = "/agentstream/dev/system-prompt"
SIGN_IN = {"CreateUserPool": "false", "JwtSecretParameter": "/agentstream/dev/jwt-secret"}
CONVERSE = {"Backend": "converse", "ModelId": "anthropic.claude-3-5-haiku-20241022-v1:0", **SIGN_IN}


def test_the_prompt_is_a_parameter_of_the_data_stack_kept_in_an_ssm_parameter():
    spec = DATA["Parameters"]["SystemPrompt"]
    assert "SystemPrompt" not in APP["Parameters"]  # one definition; the packaged stack merges data.json's
    # SSM holds 8 KB (an advanced parameter; Intelligent-Tiering picks it only past the free tier's 4 KB):
    # enough for MaxLength characters of 4 bytes each, whichever way a character is counted.
    assert spec["MaxLength"] * 4 <= 8 * 1024 and spec["Default"] == ""
    parameter = DATA["Resources"]["SystemPromptParameter"]
    assert parameter["Type"] == "AWS::SSM::Parameter" and parameter["Condition"] == "UsesSystemPrompt"
    assert parameter["Properties"]["Type"] == "String" and parameter["Properties"]["Tier"] == "Intelligent-Tiering"
    assert parameter["Properties"]["Name"] == {"Fn::Sub": "/agentstream/${Stage}/system-prompt"}
    assert parameter["Properties"]["Value"] == {"Ref": "SystemPrompt"}
    output = DATA["Outputs"]["SystemPromptParameterName"]
    assert output == {**output, "Condition": "UsesSystemPrompt", "Value": {"Ref": "SystemPromptParameter"}}
    # Only a converse stage with a prompt has one (an SSM String may not be empty).
    assert DATA["Conditions"]["UsesSystemPrompt"] == {"Fn::And": [
        {"Condition": "InvokesModel"}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "SystemPrompt"}, ""]}]}]}


def test_only_the_worker_may_read_it():
    """The worker, and the document pipeline's Analyse step, which asks the same backend (converse: with the prompt)."""
    for function, (_, document) in stack.policy_documents("dev").items():
        reads = [s for s in document["Statement"] if "UsesSystemPrompt" in str(s)]
        if function not in ("turn_worker", "document_analyse"):
            assert not reads, function
            continue
        (statement,) = reads
        condition, grant, otherwise = statement["Fn::If"]
        assert (condition, otherwise) == ("UsesSystemPrompt", {"Ref": "AWS::NoValue"})
        assert grant == {"Sid": "ReadSystemPrompt", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": {
            "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SystemPromptParameter}"}}


@pytest.mark.parametrize("given, kept", [
    ({**CONVERSE, "SystemPrompt": SYSTEM_PROMPT}, True),
    (CONVERSE, False),
    # A prompt a stage's backend does not use is neither stored nor readable.
    ({"Backend": "agent", "AgentId": "AGENT12345", "AgentAliasId": "ALIAS12345", "SystemPrompt": SYSTEM_PROMPT, **SIGN_IN},
     False),
])
def test_cloudformation_keeps_the_prompt_in_ssm_and_gives_the_worker_its_name_and_grant(given, kept):
    with mock_aws():
        outputs, roles = deploy_stack(stack.resolve_parameters("dev", given), websocket_api_id="a1b2c3d4e5")
        stored = boto3.client("ssm", region_name=REGION).describe_parameters()["Parameters"]
        environment = stack.environment_from_outputs(outputs)
        grants = [s for s in roles["TurnWorkerRole"]["Statement"] if s["Sid"] == "ReadSystemPrompt"]
        if kept:
            value = boto3.client("ssm", region_name=REGION).get_parameter(Name=NAME)["Parameter"]["Value"]
            assert value == SYSTEM_PROMPT and outputs["SystemPromptParameterName"] == NAME
            assert environment["SYSTEM_PROMPT_PARAMETER"] == NAME
            assert grants == [{"Sid": "ReadSystemPrompt", "Effect": "Allow", "Action": ["ssm:GetParameter"],
                               "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{NAME}"}]
        else:
            assert stored == [] and "SystemPromptParameterName" not in outputs
            assert environment["SYSTEM_PROMPT_PARAMETER"] == "" and grants == []
        assert SYSTEM_PROMPT not in str(environment) and "SYSTEM_PROMPT" not in environment
