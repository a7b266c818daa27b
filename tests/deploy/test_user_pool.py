"""The stack's own Amazon Cognito user pool (``CreateUserPool``, on by default), and the sign-in it wires.

moto's CloudFormation builds the pool, its app client, domain and group from ``infra/data.json``
(``tests/deploy/moto_models.py`` teaches it the types) into moto's Cognito, whose API the tests
read them back from, and whose pool then issues real tokens. The functions' environment is the one
the stack ``make deploy`` creates resolves from ``infra/merge.json``'s ``Globals``, the packaged
stack's too (``test_package.py``'s ``WIRING``).
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Mapping, Tuple

import boto3
import jwt
import pytest
import requests
from moto import mock_aws

from infra import deploy, stack
from tests.deploy import deployer_iam
from tests.deploy.support import ACCOUNT, BACKENDS, REGION, deploy_stack

DATA, APP = stack.load_json(stack.DATA_TEMPLATE), stack.load_json(stack.APP_TEMPLATE)
GLOBALS = APP["Globals"]["Function"]["Environment"]["Variables"]
POOL_RESOURCES = ("UserPool", "UserPoolClient", "UserPoolDomain")
OWN_ISSUER = {"CreateUserPool": "false", "JwtIssuer": "https://issuer.example/tenant",
              "JwtJwksUrl": "https://issuer.example/tenant/keys", "JwtClientId": "web,cli", "JwtTokenUse": "id",
              "JwtAudience": "web,cli"}


def _deployed(**given: str) -> Tuple[Dict[str, str], Dict[str, str], Any]:
    """The stack's outputs, the functions' environment it resolves, and moto's Cognito client.
    Call inside ``mock_aws``."""
    parameters = stack.resolve_parameters("dev", {**BACKENDS["agent"], **given})
    outputs, _ = deploy_stack(parameters)
    return outputs, stack.environment_from_outputs(outputs), boto3.client("cognito-idp", region_name=REGION)


def _stack_id_prefix() -> str:
    (described,) = boto3.client("cloudformation", region_name=REGION).describe_stacks(
        StackName=stack.data_stack_name("dev"))["Stacks"]
    return described["StackId"].split("/")[2].split("-")[0]


# ---- the template


def test_the_pool_its_client_and_domain_exist_only_with_create_user_pool():
    assert DATA["Parameters"]["CreateUserPool"]["Default"] == "true"
    assert DATA["Conditions"]["CreatesUserPool"] == {"Fn::Equals": [{"Ref": "CreateUserPool"}, "true"]}
    for name in POOL_RESOURCES:
        assert DATA["Resources"][name]["Condition"] == "CreatesUserPool", name
    assert DATA["Resources"]["RequiredUserPoolGroup"]["Condition"] == "CreatesRequiredGroup"
    cognito = {name for name, r in DATA["Resources"].items() if r["Type"].startswith("AWS::Cognito::")}
    assert cognito == {*POOL_RESOURCES, "RequiredUserPoolGroup"}
    for name, output in DATA["Outputs"].items():
        if name.startswith("UserPool"):
            assert output["Condition"] == "CreatesUserPool", name


def test_the_outputs_say_what_the_functions_are_given():
    """The issuer and JWKS outputs are the Globals' pool branches; the domain's URL names the domain made."""
    pool_branch = {variable: GLOBALS[variable]["Fn::If"][1] for variable in ("JWT_ISSUER", "JWT_JWKS_URL", "JWT_CLIENT_ID")}
    assert all(GLOBALS[v]["Fn::If"][0] == "CreatesUserPool" for v in pool_branch)
    assert DATA["Outputs"]["UserPoolIssuer"]["Value"] == pool_branch["JWT_ISSUER"]
    assert DATA["Outputs"]["UserPoolJwksUrl"]["Value"] == pool_branch["JWT_JWKS_URL"]
    assert DATA["Outputs"]["UserPoolClientId"]["Value"] == pool_branch["JWT_CLIENT_ID"] == {"Ref": "UserPoolClient"}
    assert GLOBALS["JWT_TOKEN_USE"] == {"Fn::If": ["CreatesUserPool", "access", {"Ref": "JwtTokenUse"}]}
    (url, variables) = DATA["Outputs"]["UserPoolDomainUrl"]["Value"]["Fn::Sub"]
    assert url == "https://${Prefix}.auth.${AWS::Region}.amazoncognito.com"
    assert variables == {"Prefix": DATA["Resources"]["UserPoolDomain"]["Properties"]["Domain"]}
    # The issuer's format is pinned: an UPDATED issuer (https://issuer-cognito-idp...) would refuse every token.
    assert DATA["Resources"]["UserPool"]["Properties"]["IssuerConfiguration"] == {"Type": "ORIGINAL"}


def test_no_function_may_call_cognito():
    """The functions verify tokens offline, with the pool's public JWKS: none gets a Cognito grant."""
    for function, (_, document) in stack.policy_documents("dev").items():
        assert "cognito" not in json.dumps(document).lower(), function


# ---- as CloudFormation (moto's) builds it


def test_the_pool_admits_only_users_an_administrator_creates_and_is_protected_like_the_tables():
    with mock_aws():
        outputs, _, cognito = _deployed()  # TableDeletionProtection: true, the template's default
        pool = cognito.describe_user_pool(UserPoolId=outputs["UserPoolId"])["UserPool"]
        assert pool["Name"] == "agentstream-dev"
        assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True  # self sign-up off by default
        assert pool["DeletionProtection"] == "ACTIVE"
        assert pool["AliasAttributes"] == ["email"] and pool["AutoVerifiedAttributes"] == ["email"]
        assert pool["Policies"]["PasswordPolicy"] == {"MinimumLength": 12, "RequireUppercase": True, "RequireLowercase": True,
                                                      "RequireNumbers": True, "RequireSymbols": True,
                                                      "TemporaryPasswordValidityDays": 7}
        assert outputs["UserPoolArn"] == f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{outputs['UserPoolId']}"
    with mock_aws():
        outputs, _, cognito = _deployed(TableDeletionProtection="false", SelfSignUp="true")
        pool = cognito.describe_user_pool(UserPoolId=outputs["UserPoolId"])["UserPool"]
        assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is False
        assert pool["DeletionProtection"] == "INACTIVE"  # as asked: make destroy can remove it


def test_the_web_client_has_no_secret_and_signs_in_only_with_the_authorization_code():
    callbacks = "http://localhost:8000/,https://chat.example.com/"
    with mock_aws():
        outputs, _, cognito = _deployed(CallbackUrls=callbacks)
        client = cognito.describe_user_pool_client(UserPoolId=outputs["UserPoolId"],
                                                   ClientId=outputs["UserPoolClientId"])["UserPoolClient"]
    assert "ClientSecret" not in client  # a public client: the page keeps no secret
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert client["AllowedOAuthFlows"] == ["code"]  # no implicit flow, no client credentials
    assert client["AllowedOAuthScopes"] == ["openid", "email", "profile"]
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    # The stack's own page first (tests/deploy/test_page.py), then those given.
    assert client["CallbackURLs"] == client["LogoutURLs"] == [outputs["PageUrl"], *callbacks.split(",")]
    # No password or SRP sign-in through the API: only refresh, and the admin flow make token uses.
    assert client["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    assert client["PreventUserExistenceErrors"] == "ENABLED" and client["EnableTokenRevocation"] is True
    assert (client["AccessTokenValidity"], client["IdTokenValidity"], client["RefreshTokenValidity"]) == (60, 60, 30)
    assert client["TokenValidityUnits"] == {"AccessToken": "minutes", "IdToken": "minutes", "RefreshToken": "days"}


def test_the_hosted_domain_is_derived_from_the_stage_and_the_stack_unless_given():
    with mock_aws():
        outputs, _, cognito = _deployed()
        prefix = f"agentstream-dev-{_stack_id_prefix()}"
        assert re.fullmatch(DATA["Parameters"]["UserPoolDomainPrefix"]["AllowedPattern"], prefix)
        domain = cognito.describe_user_pool_domain(Domain=prefix)["DomainDescription"]
        assert domain["UserPoolId"] == outputs["UserPoolId"]
        assert outputs["UserPoolDomainUrl"] == f"https://{prefix}.auth.{REGION}.amazoncognito.com"
    with mock_aws():
        outputs, _, cognito = _deployed(UserPoolDomainPrefix="chat-example")
        domain = cognito.describe_user_pool_domain(Domain="chat-example")["DomainDescription"]
        assert domain["UserPoolId"] == outputs["UserPoolId"]
        assert outputs["UserPoolDomainUrl"] == f"https://chat-example.auth.{REGION}.amazoncognito.com"


def test_every_function_accepts_the_pools_access_tokens_for_its_own_client():
    """The issuer, JWKS URL, app client and token use the functions get are those of the tokens the
    pool issues to its client (moto's Cognito signs them RS256 and serves the pool's JWKS)."""
    with mock_aws():
        outputs, env, cognito = _deployed()
        pool, client = outputs["UserPoolId"], outputs["UserPoolClientId"]
        assert env["JWT_ISSUER"] == outputs["UserPoolIssuer"] == f"https://cognito-idp.{REGION}.amazonaws.com/{pool}"
        assert env["JWT_JWKS_URL"] == outputs["UserPoolJwksUrl"] == f"{env['JWT_ISSUER']}/.well-known/jwks.json"
        assert (env["JWT_CLIENT_ID"], env["JWT_TOKEN_USE"]) == (client, "access")
        assert (env["JWT_AUDIENCE"], env["JWT_SECRET_PARAMETER"], env["JWT_REQUIRED_GROUP"]) == ("", "", "")

        # What make token does (the admin flow the client allows), then what $connect checks.
        cognito.admin_create_user(UserPoolId=pool, Username="alice", MessageAction="SUPPRESS")
        cognito.admin_set_user_password(UserPoolId=pool, Username="alice", Password="Tr0ub4dor&3-x", Permanent=True)
        tokens = cognito.admin_initiate_auth(UserPoolId=pool, ClientId=client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                             AuthParameters={"USERNAME": "alice", "PASSWORD": "Tr0ub4dor&3-x"})
        access = tokens["AuthenticationResult"]["AccessToken"]
        keys = jwt.PyJWKSet.from_dict(requests.get(env["JWT_JWKS_URL"], timeout=5).json())
        claims = jwt.decode(access, keys[jwt.get_unverified_header(access)["kid"]].key, algorithms=["RS256"],
                            issuer=env["JWT_ISSUER"])
    assert (claims["client_id"], claims["token_use"]) == (env["JWT_CLIENT_ID"], env["JWT_TOKEN_USE"])
    assert "aud" not in claims  # why JWT_AUDIENCE stays empty with the pool


def test_the_required_group_is_created_in_the_pool_and_given_to_the_functions():
    with mock_aws():
        outputs, env, cognito = _deployed(JwtRequiredGroup="chatters")
        (group,) = cognito.list_groups(UserPoolId=outputs["UserPoolId"])["Groups"]
        assert group["GroupName"] == env["JWT_REQUIRED_GROUP"] == "chatters"
    with mock_aws():  # another issuer's group: only checked, nothing to create
        outputs, env, cognito = _deployed(**OWN_ISSUER, JwtRequiredGroup="chatters")
        assert env["JWT_REQUIRED_GROUP"] == "chatters" and cognito.list_user_pools(MaxResults=10)["UserPools"] == []


def test_with_create_user_pool_false_the_functions_get_the_issuer_given_and_no_pool_exists():
    with mock_aws():
        outputs, env, cognito = _deployed(**OWN_ISSUER)
        assert cognito.list_user_pools(MaxResults=10)["UserPools"] == []
    assert not [name for name in outputs if name.startswith("UserPool")]
    assert {k: env[k] for k in ("JWT_ISSUER", "JWT_JWKS_URL", "JWT_CLIENT_ID", "JWT_TOKEN_USE", "JWT_AUDIENCE")} == {
        "JWT_ISSUER": OWN_ISSUER["JwtIssuer"], "JWT_JWKS_URL": OWN_ISSUER["JwtJwksUrl"],
        "JWT_CLIENT_ID": "web,cli", "JWT_TOKEN_USE": "id", "JWT_AUDIENCE": "web,cli"}
    with mock_aws():  # the HS256 secret instead
        _, env, _ = _deployed(CreateUserPool="false", JwtSecretParameter="/agentstream/dev/jwt-secret")
    assert (env["JWT_SECRET_PARAMETER"], env["JWT_ISSUER"], env["JWT_CLIENT_ID"], env["JWT_TOKEN_USE"]) == (
        "/agentstream/dev/jwt-secret", "", "", "")


# ---- parameters (CloudFormation's Rules, which make deploy checks offline too)


def test_by_default_sign_in_needs_no_parameter():
    values = deploy.gather_parameters("dev", [], {"BACKEND": "agent", "AGENT_ID": "AGENT12345", "AGENT_ALIAS_ID": "ALIAS12345"})
    assert (values["CreateUserPool"], values["SelfSignUp"], values["CallbackUrls"]) == ("true", "false", "")


@pytest.mark.parametrize("given, problem", [
    ({"JwtIssuer": "https://issuer.example", "JwtJwksUrl": "https://issuer.example/keys"}, "pass CreateUserPool=false"),
    ({"JwtSecretParameter": "/agentstream/dev/jwt"}, "pass CreateUserPool=false"),
    ({"CreateUserPool": "false"}, "CreateUserPool=false: set JwtJwksUrl (with JwtIssuer) or JwtSecretParameter"),
    ({**OWN_ISSUER, "UserPoolDomainPrefix": "chat"}, "they need CreateUserPool=true"),
    ({"UserPoolDomainPrefix": "cognito-chat"}, "without aws, amazon or cognito"),
    ({"UserPoolDomainPrefix": "Chat"}, "UserPoolDomainPrefix='Chat' does not match"),
    ({"CallbackUrls": "https://chat.example.com/,http://chat.example.com/"}, "CallbackUrls='http://chat.example.com/'"),
    ({"JwtRequiredGroup": "chat users"}, "JwtRequiredGroup='chat users' does not match"),
])
def test_sign_in_parameters_are_refused_as_cloudformation_would(given: Mapping[str, str], problem: str):
    with pytest.raises(stack.ParameterError, match=re.escape(problem)):
        stack.resolve_parameters("dev", {**BACKENDS["agent"], **given})


# ---- the deployer's policies: Cognito's own ARNs, "*" only where IAM has no resource


@pytest.mark.parametrize("name", ["cloudformation-service-role", "make-deploy"])
def test_the_deployer_reaches_user_pools_in_its_account_and_region_only(name):
    """A pool's id is generated, so pools are granted as userpool/* of the account and Region; the two
    actions IAM authorizes on no resource (CreateUserPool, DescribeUserPoolDomain) alone on "*"."""
    document = deployer_iam.policy(name, region=REGION, account=ACCOUNT, stage="dev")
    for statement in document["Statement"]:
        actions = [a for a in deployer_iam._as_list(statement["Action"]) if a.startswith("cognito-idp:")]
        if not actions:
            continue
        if statement["Resource"] == "*":
            assert set(actions) == {"cognito-idp:CreateUserPool", "cognito-idp:DescribeUserPoolDomain"} <= deployer_iam.UNSCOPED
        else:
            assert statement["Resource"] == f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/*", statement
            assert not any("*" in action for action in actions)
