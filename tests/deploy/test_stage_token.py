"""``make token STAGE=dev user=NAME``: a token from a deployed stage's user pool (infra/signin.py).

moto's CloudFormation builds the stage's stack (``deploy_stack``, with ``tests/deploy/moto_models.py``)
and its Cognito issues the tokens; the app's own verifier (chalicelib.auth) checks them with the
environment the stack gives the functions. PyJWT fetches the JWKS with urllib, which moto's in-process
mock does not intercept, so the tests fetch it with ``requests`` (which it does) from the same URL.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import boto3
import jwt
import pytest
import requests
from moto import mock_aws

from chalicelib.auth import AuthError, TokenVerifier
from chalicelib.settings import Settings
from infra import signin, stack
from tests.deploy import deployer_iam
from tests.deploy.recording import Check
from tests.deploy.support import ACCOUNT, BACKENDS, REGION, deploy_stack

OWN_ISSUER = {"CreateUserPool": "false", "JwtIssuer": "https://issuer.example/tenant",
              "JwtJwksUrl": "https://issuer.example/tenant/keys", "JwtClientId": "web", "JwtTokenUse": "access"}
DOCS = stack.ROOT / "docs" / "deploy.md"


@pytest.fixture(autouse=True)
def jwks_through_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda self: requests.get(self.uri, timeout=5).json())


def _deployed(**given: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The stack make deploy creates (its outputs) and the functions' environment. Inside ``mock_aws``."""
    outputs, _ = deploy_stack(stack.resolve_parameters("dev", {**BACKENDS["agent"], **given}))
    return outputs, stack.environment_from_outputs(outputs)


def _packaged(name: str) -> Dict[str, str]:
    """A stack of the same template under ``name``, as the CloudFormation path's holds the pool (its
    outputs). Inside ``mock_aws``."""
    template = stack.deploy_template("dev")
    values = {**stack.resolve_parameters("dev", BACKENDS["agent"]), stack.WEBSOCKET_API: "", stack.REST_API: ""}
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"],
                                    Parameters=[{"ParameterKey": k, "ParameterValue": values[k]} for k in template["Parameters"]])
    (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o.get("OutputValue", "") for o in described["Outputs"]}


def make_token(*args: str, environ: Optional[Mapping[str, str]] = None,
               calls: Optional[List[Tuple[str, Dict[str, Any]]]] = None) -> Tuple[int, List[str], str]:
    """``python -m infra.signin ARGS`` in process: its exit code, stdout lines and stderr.
    ``calls`` collects each AWS operation it makes with its parameters."""
    session = boto3.session.Session(region_name=REGION)
    if calls is not None:
        session.events.register("before-parameter-build", lambda model, params, **_: calls.append(
            (f"{model.service_model.signing_name}:{model.name}", params)))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = signin.main(list(args), session=session, environ=environ or {})
    return code, out.getvalue().splitlines(), err.getvalue()


def _verified(env: Mapping[str, str], token: str) -> Dict[str, Any]:
    """The token's claims if the app's $connect check accepts it with this environment."""
    return TokenVerifier(Settings.from_env({**env, "STAGE": "dev"})).verify(token).claims


def _password_shown(stderr: str) -> str:
    (password,) = re.findall(r"\(shown once, for the web page's sign-in\): (\S+)", stderr)
    return password


def _password_works(outputs: Mapping[str, str], user: str, password: str) -> bool:
    cognito = boto3.client("cognito-idp", region_name=REGION)
    try:
        cognito.admin_initiate_auth(UserPoolId=outputs["UserPoolId"], ClientId=outputs["UserPoolClientId"],
                                    AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                    AuthParameters={"USERNAME": user, "PASSWORD": password})
    except cognito.exceptions.NotAuthorizedException:
        return False
    return True


def test_a_new_user_is_created_shown_its_password_once_and_given_a_token_the_stage_accepts():
    with mock_aws():
        outputs, env = _deployed()
        code, stdout, stderr = make_token("--stage", "dev", "bob")
        assert code == 0, stderr
        claims = _verified(env, stdout[-1])
        assert (claims["username"], claims["token_use"], claims["client_id"]) == ("bob", "access", outputs["UserPoolClientId"])
        assert f"Created bob in user pool {outputs['UserPoolId']} (stack agentstream-dev-data)" in stderr
        password = _password_shown(stderr)  # exactly once, on stderr, never on stdout
        assert stderr.count(password) == 1 and not any(password in line for line in stdout)
        assert len(password) >= 12 and all(re.search(p, password) for p in ("[A-Z]", "[a-z]", "[0-9]", "[^A-Za-z0-9]"))
        assert _password_works(outputs, "bob", password)  # the web page's sign-in takes it
        user = boto3.client("cognito-idp", region_name=REGION).admin_get_user(UserPoolId=outputs["UserPoolId"], Username="bob")
        assert user["UserStatus"] == "CONFIRMED"  # permanent: no change asked at the first sign-in


def test_a_second_call_needs_the_users_password_or_an_explicit_reset():
    with mock_aws():
        outputs, env = _deployed()
        _, _, first = make_token("--stage", "dev", "bob")
        # Never a silent reset of someone's password.
        code, stdout, stderr = make_token("--stage", "dev", "bob")
        assert (code, stdout) == (1, []) and "bob already exists" in stderr and "RESET_PASSWORD=1" in stderr
        assert _password_works(outputs, "bob", _password_shown(first))
        code, stdout, stderr = make_token("--stage", "dev", "bob", environ={signin.RESET_ENV: "1"})
        assert code == 0, stderr
        assert _verified(env, stdout[-1])["username"] == "bob"
        assert "Created" not in stderr and "bob existed" in stderr and "the previous one no longer works" in stderr
        second = _password_shown(stderr)
        assert not _password_works(outputs, "bob", _password_shown(first)) and _password_works(outputs, "bob", second)

        # The user's own password (TOKEN_PASSWORD, or --password): used, nothing changed, nothing shown.
        code, stdout, stderr = make_token("--stage", "dev", "bob", environ={signin.PASSWORD_ENV: second})
        assert code == 0, stderr
        assert _verified(env, stdout[-1])["username"] == "bob"
        assert "password was set" not in stderr and "shown once" not in stderr and second not in stderr
        assert _password_works(outputs, "bob", second)

        code, stdout, stderr = make_token("--stage", "dev", "bob", "--password", "Wr0ng-password!")
        assert (code, stdout) == (1, [])
        assert "bob: Cognito refused the password given" in stderr and "Wr0ng" not in stderr
        assert _password_works(outputs, "bob", second)


def test_a_new_user_may_be_given_its_password():
    with mock_aws():
        outputs, env = _deployed()
        code, stdout, stderr = make_token("--stage", "dev", "carol", "--password", "Carol's-0wn-pass")
        assert code == 0, stderr
        assert _verified(env, stdout[-1])["username"] == "carol"
        assert "Created carol" in stderr and "shown once" not in stderr
        assert _password_works(outputs, "carol", "Carol's-0wn-pass")


def test_the_user_joins_the_required_group_without_which_the_stage_refuses_the_token():
    with mock_aws():
        outputs, env = _deployed(JwtRequiredGroup="chatters")
        code, stdout, stderr = make_token("--stage", "dev", "dave")
        assert code == 0, stderr
        assert _verified(env, stdout[-1])["cognito:groups"] == ["chatters"]
        assert "dave is in the required group chatters" in stderr
        # Without the group the same pool's token is refused: joining it is what makes the token usable.
        cognito = boto3.client("cognito-idp", region_name=REGION)
        cognito.admin_remove_user_from_group(UserPoolId=outputs["UserPoolId"], Username="dave", GroupName="chatters")
        tokens = cognito.admin_initiate_auth(UserPoolId=outputs["UserPoolId"], ClientId=outputs["UserPoolClientId"],
                                             AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                             AuthParameters={"USERNAME": "dave", "PASSWORD": _password_shown(stderr)})
        with pytest.raises(AuthError, match="required group"):
            _verified(env, tokens["AuthenticationResult"]["AccessToken"])


def test_a_stage_without_a_pool_is_refused_and_nothing_is_created():
    with mock_aws():
        _deployed(**OWN_ISSUER)
        calls: List[Tuple[str, Dict[str, Any]]] = []
        code, stdout, stderr = make_token("--stage", "dev", "bob", calls=calls)
        assert (code, stdout) == (1, [])
        assert stderr.strip() == ("stage 'dev' (stack agentstream-dev-data) has no Cognito user pool (CreateUserPool=false): "
                                  "it accepts the tokens of the issuer it was deployed with; get a token from that issuer")
        assert {name for name, _ in calls} == {"cloudformation:DescribeStacks"}


def test_a_stack_without_the_pools_outputs_is_refused():
    """E.g. a stage deployed before the pool existed: no UserPoolId output, and no CreateUserPool either."""
    with mock_aws():
        template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="agentstream-dev-data", TemplateBody=json.dumps(template))
        code, stdout, stderr = make_token("--stage", "dev", "bob")
    assert (code, stdout) == (1, [])
    assert stderr.strip() == ("stage 'dev': stack agentstream-dev-data (CREATE_COMPLETE) has no UserPoolId and "
                              "UserPoolClientId outputs; deploy the stage (again) first")


def test_a_stage_not_deployed_is_refused_naming_the_stacks_looked_for():
    with mock_aws():
        code, stdout, stderr = make_token("--stage", "dev", "bob")
    assert (code, stdout) == (1, [])
    assert stderr.startswith(f"stage 'dev': no stack agentstream-dev-data or agentstream-dev in {REGION} ")
    assert "STACK_NAME=" in stderr


def test_the_cloudformation_paths_stack_is_found_by_its_default_name_or_given():
    with mock_aws():
        outputs = _packaged("agentstream-dev")
        code, stdout, stderr = make_token("--stage", "dev", "erin")
        assert code == 0, stderr
        assert f"Created erin in user pool {outputs['UserPoolId']} (stack agentstream-dev)" in stderr
        other = _packaged("chat-dev")
        code, stdout, stderr = make_token("--stage", "dev", "--stack-name", "chat-dev", "erin")
        assert code == 0, stderr
        assert f"Created erin in user pool {other['UserPoolId']} (stack chat-dev)" in stderr
        assert jwt.decode(stdout[-1], options={"verify_signature": False})["client_id"] == other["UserPoolClientId"]
        code, stdout, stderr = make_token("--stage", "dev", "--stack-name", "chat-prod", "erin")
        assert (code, stdout) == (1, []) and "no stack chat-prod in" in stderr


def test_with_both_paths_deployed_for_a_stage_the_stack_must_be_named():
    with mock_aws():
        _deployed()
        _packaged("agentstream-dev")
        code, stdout, stderr = make_token("--stage", "dev", "bob")
        assert (code, stdout) == (1, [])
        assert "both agentstream-dev-data and agentstream-dev exist" in stderr and "STACK_NAME=" in stderr
        code, stdout, stderr = make_token("--stage", "dev", "--stack-name", "agentstream-dev-data", "bob")
        assert code == 0, stderr


# ---- the operator's permissions, as docs/deploy.md shows them


def _documented_policy() -> Dict[str, Any]:
    """The policy under "Permissions for `make token`" in docs/deploy.md, placeholders filled in."""
    text = DOCS.read_text().split("Permissions for `make token`", 1)[1]
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block, "docs/deploy.md: no JSON policy after 'Permissions for `make token`'"
    return deployer_iam.policy("make-token", region=REGION, account=ACCOUNT, stage="dev", text=block.group(1))


def _checks(calls: List[Tuple[str, Dict[str, Any]]], pool_id: str) -> Iterator[Check]:
    for action, params in calls:
        if action.startswith("cloudformation:"):
            resource = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{params['StackName']}/00000000"
        else:
            assert params["UserPoolId"] == pool_id
            resource = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{pool_id}"
        yield Check(action, resource)


def test_the_documented_permissions_allow_every_call_and_nothing_else():
    """Every call make token makes (new user, existing user, required group, the CloudFormation path's
    stack looked for too) is allowed by the documented policy, and each of its actions is used."""
    calls: List[Tuple[str, Dict[str, Any]]] = []
    with mock_aws():
        outputs, _ = _deployed(JwtRequiredGroup="chatters")
        for _ in range(2):
            assert make_token("--stage", "dev", "bob", "--reset-password", calls=calls)[0] == 0
    policy = _documented_policy()
    checks = set(_checks(calls, outputs["UserPoolId"]))
    denied = [check for check in checks if not deployer_iam.allows(policy, check)]
    assert not denied
    assert {action for _, action in deployer_iam.grants(policy)} == {check.action for check in checks}
    assert {check.action for check in checks} == {
        "cloudformation:DescribeStacks", "cognito-idp:AdminCreateUser", "cognito-idp:AdminSetUserPassword",
        "cognito-idp:AdminAddUserToGroup", "cognito-idp:AdminInitiateAuth"}
    for statement in policy["Statement"]:  # no account-wide grant: the stage's stacks, the Region's pools
        assert statement["Resource"] in (f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/*",
                                         [f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/agentstream-dev-data/*",
                                          f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/agentstream-dev/*"]), statement


# ---- the make target


def _make_n(*variables: str) -> str:
    stamp = Path(__file__)  # any existing file: `make install` has nothing to do
    result = subprocess.run(["make", "-n", "-s", "token", *variables, f"STAMP={stamp}", "BIN=BIN"],
                            cwd=stack.ROOT, capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin"})
    return result.stdout.strip() + result.stderr.strip()


def test_make_token_signs_in_to_a_deployed_stage_only_when_given_stage():
    assert _make_n("user=bob") == "BIN/python -m devserver.tokens --auth dev --port 8000 bob"
    assert _make_n("AUTH=cognito", "user=bob") == "BIN/python -m devserver.tokens --auth cognito --port 8000 bob"
    assert _make_n("STAGE=dev", "user=bob") == "BIN/python -m infra.signin --stage dev  bob"
    assert _make_n("STAGE=prod", "STACK_NAME=chat-prod", "user=bob") == \
        "BIN/python -m infra.signin --stage prod --stack-name chat-prod bob"
    assert "give one of them" in _make_n("STAGE=dev", "AUTH=cognito")
