"""``infra/envsize.py``: each function's environment at its longest, against Lambda's 4 KB (offline)."""
from __future__ import annotations

import json
import re
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any, Dict, Optional, Set

import pytest

from infra import deploy, envsize, stack
from tests.deploy.support import STAGES

# Bring your own issuer (CreateUserPool=false); the stack's own pool is the default, and both are bounded.
SIGN_IN = {"CreateUserPool": "false", "JwtIssuer": "https://issuer.example",
           "JwtJwksUrl": "https://issuer.example/.well-known/jwks.json"}
CONVERSE = {"Backend": "converse", "ModelId": "anthropic.claude-3-5-haiku-20241022-v1:0", **SIGN_IN}
GLOBALS = stack.load_json(stack.APP_TEMPLATE)["Globals"]["Function"]["Environment"]["Variables"]


def _parameters(stage: str = "dev", **given: str) -> Dict[str, str]:
    return stack.resolve_parameters(stage, {**CONVERSE, **given})


def test_sizes_are_the_json_lambda_measures_with_every_non_ascii_character_escaped():
    assert envsize.size({"A": "b", "CD": "e"}) == len('{"A":"b","CD":"e"}')
    assert envsize.size({"A": 'say "hi"'}) == len('{"A":"say \\"hi\\""}')  # as the "String measured" in Lambda's refusal
    assert envsize.size({"A": "é"}) == len('{"A":"\\u00e9"}')  # 6 bytes: more than its 2 in UTF-8
    assert envsize.size({"A": "🙂"}) == len('{"A":"\\ud83d\\ude42"}')  # 12 bytes: more than its 4 in UTF-8


def test_generated_names_take_the_longest_stack_name_cut_to_the_services_limit():
    bounds = envsize.longest()
    assert len(bounds.generated_name("ConnectionsTable", "AWS::DynamoDB::Table")) == 128 + 1 + 16 + 1 + 13
    assert len(bounds.generated_name("TurnQueue", "AWS::SQS::Queue")) == 80  # SQS: 80 characters at most


def test_arns_and_urls_take_the_longest_partition_region_and_suffix_botocore_knows():
    bounds = envsize.longest()
    for partition in ("aws", "aws-cn", "aws-us-gov", "aws-iso-b"):
        assert len(bounds.partition) >= len(partition)
    for region in ("us-east-1", "ap-southeast-5", "us-gov-west-1", "cn-northwest-1", "eusc-de-east-1", "us-isof-south-1"):
        assert len(bounds.region) >= len(region)
    assert len(bounds.dns_suffix) >= len("amazonaws.com.cn")
    url = envsize.longest_value({"Ref": "TurnQueue"}, _parameters())
    arn = envsize.longest_value({"Fn::GetAtt": ["TurnQueue", "Arn"]}, _parameters())
    # What CloudFormation gives a queue of a 128-character stack, in each form and partition, fits the bound.
    name = ("s" * 128 + "-TurnQueue-1A2B3C4D5E6F7")[:80]
    for real in (f"https://sqs.cn-northwest-1.amazonaws.com.cn/123456789012/{name}",
                 f"https://us-isof-south-1.queue.csp.hci.ic.gov/123456789012/{name}"):
        assert len(real) <= len(url)
    assert len(f"arn:aws-us-gov:sqs:us-gov-west-1:123456789012:{name}") <= len(arn)


def test_the_system_prompt_parameters_name_is_the_templates():
    # The name test_policies.py puts into moto, and the worker's grant names.
    assert envsize.longest_value({"Ref": "SystemPromptParameter"}, _parameters("prod")) == "/agentstream/prod/system-prompt"


def test_fn_if_counts_the_larger_branch_whatever_the_condition():
    without_prompt = _parameters()  # UsesSystemPrompt is false: the variable is "" on AWS, the name at most
    assert envsize.longest_value(GLOBALS["SYSTEM_PROMPT_PARAMETER"], without_prompt) == "/agentstream/dev/system-prompt"
    assert envsize.longest_value({"Fn::If": ["C", {"Ref": "AWS::NoValue"}, "x"]}, without_prompt) == "x"
    assert envsize.longest_value({"Fn::If": ["C", {"Ref": "AWS::NoValue"}, {"Ref": "AWS::NoValue"}]}, without_prompt) is None


def test_the_user_pools_issuer_and_jwks_take_the_longest_region_suffix_and_pool_id():
    """The pool's issuer and JWKS URL are Fn::Subs of pseudo parameters and the pool's id: bounded by the
    longest Region and DNS suffix botocore knows and the longest id Cognito's API takes (55 characters)."""
    bounds, parameters = envsize.longest(), _parameters()
    issuer = envsize.longest_value(GLOBALS["JWT_ISSUER"], parameters, "JWT_ISSUER")
    assert issuer == f"https://cognito-idp.{bounds.region}.{bounds.dns_suffix}/{'x' * 55}"
    assert envsize.longest_value(GLOBALS["JWT_JWKS_URL"], parameters, "JWT_JWKS_URL") == issuer + "/.well-known/jwks.json"
    # The app client's id, up to the 128 characters Cognito's API takes, when longer than JwtClientId.
    assert envsize.longest_value(GLOBALS["JWT_CLIENT_ID"], parameters, "JWT_CLIENT_ID") == "x" * 128
    assert envsize.longest_value(GLOBALS["JWT_CLIENT_ID"], {**parameters, "JwtClientId": "c" * 200}) == "c" * 200
    real = "https://cognito-idp.cn-northwest-1.amazonaws.com.cn/cn-northwest-1_A1b2C3d4E"  # China's suffix, a real id
    assert len(real) <= len(issuer)
    literal = envsize.longest_value({"Fn::Sub": "${Stage}:${!Literal}:${AWS::Partition}"}, parameters)
    assert literal == f"dev:${{Literal}}:{bounds.partition}"


@pytest.mark.parametrize("node, refusal", [
    ({"Fn::Sub": ["${A}", {"A": "x"}]}, "reads Ref, Fn::GetAtt, Fn::Sub (a string) and Fn::If only"),
    ({"Fn::Sub": "${AWS::StackName}-x"}, "no bound for ${AWS::StackName} in an Fn::Sub"),
    ({"Fn::Sub": "${TurnsTable.StreamArn}"}, "no bound for Fn::GetAtt StreamArn of TurnsTable"),
    ({"Fn::Join": ["", ["a", "b"]]}, "reads Ref, Fn::GetAtt, Fn::Sub (a string) and Fn::If only"),
    ({"Ref": "AWS::Region"}, "not a resource of infra/data.json"),
    ({"Ref": "RestAPI"}, "not a resource of infra/data.json"),  # Chalice's, not bounded here
    ({"Fn::GetAtt": ["TurnsTable", "StreamArn"]}, "no bound for Fn::GetAtt StreamArn of TurnsTable"),
    ({"Ref": "TurnQueuePolicy"}, "no bound for Ref of TurnQueuePolicy"),
    ({"Ref": "InferenceProfileModelArns"}, "a list parameter"),
])
def test_a_shape_without_a_bound_is_refused_loudly(node, refusal):
    with pytest.raises(envsize.EnvironmentSizeError, match=re.escape(refusal)):
        envsize.longest_value(node, _parameters(), "VARIABLE")


def test_the_websocket_apis_id_is_bounded_by_what_api_gateway_generates():
    assert envsize.longest_value({"Ref": "WebsocketAPI"}, _parameters(), "WEBSOCKET_API_ID") == "x" * 10
    assert stack.deploy_template("dev")["Parameters"]["WebsocketAPI"]["AllowedPattern"] == "^$|^[a-z0-9]{10}$"


@pytest.mark.parametrize("stage", STAGES)
def test_the_default_parameters_fit_every_function_of_every_stage(stage):
    lines = envsize.check(stage, _parameters(stage))
    assert lines[0].startswith("Environment of each function at its longest (Lambda allows 4,096 bytes)")
    sizes = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in lines[1:]}
    assert set(sizes) == set(stack.functions())
    assert all(1000 < size <= envsize.LIMIT_BYTES for size in sizes.values()), sizes
    environment = envsize.environments(stage, _parameters(stage))["turn_worker"]
    own = {"MODEL_ID", "KNOWLEDGE_BASE_ID"}  # its model, and the knowledge base it retrieves the asker's passages from
    assert set(GLOBALS) | set(stack.chalice_config(stage, "turn_worker").environment_variables) | own == set(environment)


def test_the_system_prompt_never_reaches_the_environment_however_long():
    """The issue's case: 2048 four-byte characters once made every function's environment too large."""
    short, longest = _parameters(SystemPrompt="Be brief."), _parameters(SystemPrompt="🙂" * 2048)
    assert envsize.environments("dev", longest) == envsize.environments("dev", short)
    assert "SYSTEM_PROMPT" not in GLOBALS


def test_an_over_limit_set_of_parameters_is_refused_naming_the_functions_and_largest_variables():
    # More than CloudFormation would accept (MaxLength): the check measures whatever it is given.
    parameters = {**_parameters(), "JwtAudience": "a" * 3000, "JwtJwksUrl": "https://" + "b" * 500}
    with pytest.raises(envsize.EnvironmentSizeError) as refused:
        envsize.check("dev", parameters)
    message = str(refused.value)
    for function in stack.functions():
        assert re.search(rf"^{function}: [\d,]+ bytes, over Lambda's 4,096; the largest variables: "
                         r"JWT_AUDIENCE \(3,000 bytes\), JWT_JWKS_URL \(508 bytes\), ", message, re.M), message


def test_the_stages_variables_count_per_function(tmp_path):
    config = stack.load_json(stack.ROOT / ".chalice" / "config.json")
    config["stages"]["dev"].setdefault("lambda_functions", {})["turn_worker"] = {"environment_variables": {"NOTES": "n" * 3000}}
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    with pytest.raises(envsize.EnvironmentSizeError) as refused:
        envsize.check("dev", _parameters(), tmp_path)
    over = [line.split(":")[0] for line in str(refused.value).splitlines() if "over Lambda's" in line]
    assert over == ["turn_worker"] and "NOTES (3,000 bytes)" in str(refused.value)


# ---- whatever the templates accept fits: every parameter the environment holds is bounded


def _characters(pattern: Optional[str]) -> Optional[Set[str]]:
    """Every character ``pattern`` can match (None: any), from Python's own parse of it."""
    if pattern is None:
        return None

    def walk(items: Any) -> Optional[Set[str]]:
        found: Set[str] = set()
        for op, argument in items:
            if op == sre_constants.LITERAL:
                found.add(chr(argument))
            elif op == sre_constants.IN:
                for item, value in argument:
                    if item == sre_constants.LITERAL:
                        found.add(chr(value))
                    elif item == sre_constants.RANGE:
                        found.update(chr(code) for code in range(value[0], value[1] + 1))
                    else:  # a negated set or a category (\S, \d): not bounded to a known set
                        return None
            elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.SUBPATTERN, sre_constants.BRANCH):
                if op == sre_constants.BRANCH:
                    parts = argument[1]
                else:
                    parts = [argument[3] if op == sre_constants.SUBPATTERN else argument[2]]
                for part in parts:
                    inner = walk(part)
                    if inner is None:
                        return None
                    found |= inner
            elif op not in (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT):  # these consume nothing
                return None
        return found

    return walk(sre_parser.parse(pattern))


def _worst(name: str, spec: Dict[str, Any]) -> str:
    """The value of ``name`` that takes the most bytes in an environment, of those CloudFormation accepts."""
    if "AllowedValues" in spec:
        return max((str(v) for v in spec["AllowedValues"]), key=lambda v: envsize.size({name: v}))
    assert "MaxLength" in spec, f"{name} feeds the functions' environment: give it a MaxLength (or AllowedValues)"
    characters = _characters(spec.get("AllowedPattern"))
    costliest = "🙂" if characters is None else max(characters, key=lambda c: envsize.size({"": c}))
    return costliest * int(spec["MaxLength"])


def _referenced(node: Any) -> Set[str]:
    if isinstance(node, dict):
        return {node["Ref"]} if set(node) == {"Ref"} else set().union(*(_referenced(v) for v in node.values()))
    return set().union(*(_referenced(v) for v in node)) if isinstance(node, list) else set()


def test_the_characters_of_a_pattern_are_read_as_cloudformation_would_match_them():
    assert _characters("^$|^[a-c]{1,3}(\\.x)?$") == {"a", "b", "c", ".", "x"}
    assert _characters("^(?!us\\.)[0-9]+$") == set("0123456789")  # a lookahead matches nothing itself
    assert _characters("^https://\\S+$") is None and _characters("^[^,]*$") is None and _characters(None) is None


@pytest.mark.parametrize("stage", STAGES)
def test_whatever_parameters_the_templates_accept_every_function_fits(stage):
    specs = stack.parameter_specs()
    feeding = (_referenced(GLOBALS) & set(specs)) | {"Stage"}  # Stage: in the SSM parameter's name
    worst = {name: _worst(name, specs[name]) if name in feeding else str(specs[name].get("Default", ""))
             for name in specs}
    for function, variables in envsize.environments(stage, worst).items():
        assert envsize.size(variables) <= envsize.LIMIT_BYTES, (function, envsize.size(variables), envsize.largest(variables, 6))


# ---- make deploy-check


def test_make_deploy_check_prints_each_functions_size(capsys, monkeypatch):
    for name in ("BACKEND", "MODEL_ID", "JWT_ISSUER", "JWT_JWKS_URL", "SYSTEM_PROMPT", "CREATE_USER_POOL"):
        monkeypatch.delenv(name, raising=False)
    given = [f"{name}={value}" for name, value in CONVERSE.items()] + ["SystemPrompt=" + "é" * 2048]
    assert deploy.main(["check", "--stage", "dev"] + [arg for pair in given for arg in ("--param", pair)]) == 0
    out = capsys.readouterr().out
    for function in stack.functions():
        assert re.search(rf"^  {function} +[\d,]+ bytes$", out, re.M), out


def test_make_deploy_check_refuses_an_environment_over_the_limit(capsys, monkeypatch):
    for name in ("BACKEND", "MODEL_ID", "JWT_ISSUER", "JWT_JWKS_URL", "CREATE_USER_POOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(envsize, "LIMIT_BYTES", 1000)
    given = [f"{name}={value}" for name, value in CONVERSE.items()]
    assert deploy.main(["check", "--stage", "dev"] + [arg for pair in given for arg in ("--param", pair)]) == 2
    err = capsys.readouterr().err
    assert "turn_worker: " in err and "over Lambda's 1,000; the largest variables: " in err
    assert "keep large settings out of the environment" in err

