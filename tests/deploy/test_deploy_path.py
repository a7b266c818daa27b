"""``make deploy``: parameters, the rendered Chalice project, and the whole path against moto.

The end-to-end test runs the real thing (the data stack through CloudFormation, ``chalice deploy``
twice, the event source and stage fixes, a redeploy, ``make destroy``) against a moto server. Three
API calls and the CloudFormation role updates moto does not implement are filled in below, each with
the smallest stand-in.
"""
from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import unquote

import boto3
import pytest

from infra import deploy, page, stack
from tests.deploy import deployer_iam, recording
from tests.deploy.support import ACCOUNT, BACKENDS, REGION, RUNTIME_ARN, US_SONNET_MODELS, US_SONNET_PROFILE, resolved_stack, role_policy

# Bring your own issuer (CreateUserPool=false): the stack's own Cognito pool is tests/deploy/test_user_pool.py's.
SIGN_IN = {"CREATE_USER_POOL": "false", "JWT_ISSUER": "https://issuer.example",
           "JWT_JWKS_URL": "https://issuer.example/.well-known/jwks.json"}
OWN_ISSUER = {"CREATE_USER_POOL": "false"}
AGENT = {"BACKEND": "agent", "AGENT_ID": "AGENT12345", "AGENT_ALIAS_ID": "ALIAS12345"}


def test_parameter_names_follow_the_apps_environment():
    assert deploy.env_name("AgentAliasId") == "AGENT_ALIAS_ID"
    assert deploy.env_name("JwtJwksUrl") == "JWT_JWKS_URL"
    assert deploy.env_name("TurnQueueAgeAlarmSeconds") == "TURN_QUEUE_AGE_ALARM_SECONDS"
    assert deploy.env_name("InferenceProfileModelArns") == "INFERENCE_PROFILE_MODEL_ARNS"
    assert deploy.env_name("InferenceProfile") == "INFERENCE_PROFILE"
    # A parameter the app reads is named as the app's own variable: BACKEND=converse make run / make deploy.
    variables = stack.load_json(stack.APP_TEMPLATE)["Globals"]["Function"]["Environment"]["Variables"]
    for variable, value in variables.items():
        if set(value) == {"Ref"} and value["Ref"] in stack.parameter_specs():
            assert deploy.env_name(value["Ref"]) == variable, variable


def test_each_backend_needs_only_its_own_parameters():
    converse = deploy.gather_parameters("dev", [], {**SIGN_IN, "BACKEND": "converse", "INFERENCE_PROFILE": US_SONNET_PROFILE,
                                                    "INFERENCE_PROFILE_MODEL_ARNS": ",".join(US_SONNET_MODELS)})
    assert (converse["Backend"], converse["AgentId"], converse["ModelId"]) == ("converse", "", "")
    assert converse["InferenceProfile"] == US_SONNET_PROFILE
    assert converse["InferenceProfileModelArns"] == ",".join(US_SONNET_MODELS)
    agentcore = deploy.gather_parameters("dev", ["Backend=agentcore", f"AgentRuntimeArn={RUNTIME_ARN}"], SIGN_IN)
    assert (agentcore["Backend"], agentcore["AgentRuntimeArn"], agentcore["AgentRuntimeQualifier"]) == ("agentcore", RUNTIME_ARN, "")
    assert deploy.gather_parameters("dev", [], {**AGENT, **SIGN_IN})["Backend"] == "agent"  # the default


def test_parameters_come_from_the_environment_and_pairs():
    values = deploy.gather_parameters("dev", ["AgentMemory=true"], {**AGENT, **SIGN_IN, "AGENT_MEMORY": "false"})
    assert values["AgentId"] == "AGENT12345" and values["AgentMemory"] == "true"
    assert values["Stage"] == "dev" and values["TableDeletionProtection"] == "false"
    assert deploy.gather_parameters("prod", [], {**AGENT, **SIGN_IN})["TableDeletionProtection"] == "true"


@pytest.mark.parametrize(
    "environ, problem",
    [
        ({**SIGN_IN}, "Backend is required"),  # no default: Agents Classic is closed to new accounts
        ({**SIGN_IN, "AGENT_ID": "AGENT12345"}, "Backend is required"),
        ({**SIGN_IN, "BACKEND": "agent"}, "Backend=agent needs AgentId and AgentAliasId"),
        ({**SIGN_IN, "BACKEND": "agent", "AGENT_ID": "AGENT12345"}, "Backend=agent needs AgentId and AgentAliasId"),
        ({**AGENT, **SIGN_IN, "AGENT_ID": "agent-1"}, "AgentId='agent-1' does not match"),
        ({**AGENT, **SIGN_IN, "BACKEND": "bedrock"}, "Backend='bedrock' is not one of"),
        ({**SIGN_IN, "BACKEND": "converse"}, "Backend=converse needs ModelId"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": "anthropic.*"}, "ModelId='anthropic.*' does not match"),
        ({**SIGN_IN, "BACKEND": "converse", "INFERENCE_PROFILE": US_SONNET_PROFILE,
          "INFERENCE_PROFILE_MODEL_ARNS": f"{US_SONNET_MODELS[0]},arn:aws:bedrock:*::foundation-model/{US_SONNET_PROFILE[3:]}"},
         "InferenceProfileModelArns='arn:aws:bedrock:*::"),
        # A profile is never a ModelId: granted as a foundation model, every turn would be denied (issue #17).
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": US_SONNET_PROFILE,
          "INFERENCE_PROFILE_MODEL_ARNS": ",".join(US_SONNET_MODELS)},
         f"ModelId={US_SONNET_PROFILE!r} does not match: ModelId takes a foundation model id or ARN"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": f"global.{US_SONNET_PROFILE[3:]}"},
         "goes in InferenceProfile instead, with InferenceProfileModelArns, and ModelId stays empty"),
        ({**SIGN_IN, "BACKEND": "converse",
          "MODEL_ID": f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{US_SONNET_PROFILE}"},
         f"ModelId='arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/"),
        ({**SIGN_IN, "BACKEND": "converse", "INFERENCE_PROFILE": US_SONNET_PROFILE[3:],
          "INFERENCE_PROFILE_MODEL_ARNS": US_SONNET_MODELS[0]},
         f"InferenceProfile={US_SONNET_PROFILE[3:]!r} does not match: "
         "InferenceProfile takes a cross-Region inference profile id"),
        # A profile needs the models it routes to, and those models need their profile.
        ({**SIGN_IN, "BACKEND": "converse", "INFERENCE_PROFILE": US_SONNET_PROFILE},
         "InferenceProfile needs InferenceProfileModelArns, without empty items: the foundation-model ARNs the profile "
         "routes to, as aws bedrock get-inference-profile --inference-profile-identifier <InferenceProfile>"),
        ({**SIGN_IN, "BACKEND": "converse", "INFERENCE_PROFILE": US_SONNET_PROFILE,
          "INFERENCE_PROFILE_MODEL_ARNS": f"{US_SONNET_MODELS[0]},"},
         "InferenceProfile needs InferenceProfileModelArns, without empty items"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": US_SONNET_PROFILE[3:],
          "INFERENCE_PROFILE_MODEL_ARNS": ",".join(US_SONNET_MODELS)},
         "InferenceProfileModelArns needs InferenceProfile: pass the profile they belong to as InferenceProfile"),
        ({**AGENT, **SIGN_IN, "INFERENCE_PROFILE_MODEL_ARNS": US_SONNET_MODELS[0]},
         "InferenceProfileModelArns needs InferenceProfile"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": US_SONNET_PROFILE[3:], "INFERENCE_PROFILE": US_SONNET_PROFILE,
          "INFERENCE_PROFILE_MODEL_ARNS": ",".join(US_SONNET_MODELS)},
         "Backend=converse takes ModelId or InferenceProfile, not both"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": "amazon.nova-lite-v1:0", "LATENCY": "fast"}, "Latency='fast' is not one of"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": "amazon.nova-lite-v1:0", "MAX_TOKENS": "0"}, "MaxTokens='0' does not match"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": "amazon.nova-lite-v1:0", "SYSTEM_PROMPT": "x" * 2049},
         "SystemPrompt is longer than 2048"),
        ({**SIGN_IN, **AGENT, "JWT_AUDIENCE": "client-id " * 26}, "JwtAudience is longer than 256"),
        ({**AGENT, **OWN_ISSUER, "JWT_ISSUER": "https://issuer.example/é", "JWT_JWKS_URL": "https://issuer.example/jwks"},
         "JwtIssuer='https://issuer.example/é' does not match"),
        ({**SIGN_IN, "BACKEND": "agentcore"}, "Backend=agentcore needs AgentRuntimeArn"),
        ({**SIGN_IN, "BACKEND": "agentcore", "AGENT_RUNTIME_ARN": RUNTIME_ARN.replace("A1b2C3d4E5", "*")}, "AgentRuntimeArn='arn"),
        ({**SIGN_IN, "BACKEND": "agentcore", "AGENT_RUNTIME_ARN": RUNTIME_ARN, "AGENT_RUNTIME_QUALIFIER": "DEFAULT*"},
         "AgentRuntimeQualifier='DEFAULT*' does not match"),
        ({**AGENT, **OWN_ISSUER}, "CreateUserPool=false: set JwtJwksUrl (with JwtIssuer) or JwtSecretParameter"),
        ({**AGENT, **OWN_ISSUER, "JWT_JWKS_URL": "https://issuer.example/jwks"}, "JwtJwksUrl needs JwtIssuer"),
        ({**AGENT, **OWN_ISSUER, "JWT_JWKS_URL": "http://issuer.example/jwks", "JWT_ISSUER": "x"}, "JwtJwksUrl='http"),
        ({**AGENT, **OWN_ISSUER, "JWT_SECRET_PARAMETER": "jwt-secret"}, "JwtSecretParameter='jwt-secret' does not match"),
        # The stack's own pool (the default) sets the issuer, JWKS, app client and token use: nothing to bring.
        *[({**AGENT, name: value}, "CreateUserPool=true (the default) signs users in with the stack's own Cognito user pool")
          for name, value in (("JWT_ISSUER", "https://issuer.example"), ("JWT_JWKS_URL", "https://issuer.example/jwks"),
                              ("JWT_AUDIENCE", "client"), ("JWT_CLIENT_ID", "client"), ("JWT_TOKEN_USE", "id"),
                              ("JWT_SECRET_PARAMETER", "/agentstream/dev/jwt"))],
        ({**AGENT, **SIGN_IN, "SELF_SIGN_UP": "true"}, "UserPoolDomainPrefix and SelfSignUp configure the stack's own user pool"),
        ({**AGENT, **SIGN_IN, "USER_POOL_DOMAIN_PREFIX": "chat"}, "UserPoolDomainPrefix and SelfSignUp configure"),
        ({**AGENT, "USER_POOL_DOMAIN_PREFIX": "my-aws-chat"}, "UserPoolDomainPrefix='my-aws-chat' does not match"),
        ({**AGENT, "USER_POOL_DOMAIN_PREFIX": "-chat"}, "UserPoolDomainPrefix='-chat' does not match"),
        ({**AGENT, "CALLBACK_URLS": "http://example.com/"}, "CallbackUrls='http://example.com/' does not match"),
        ({**AGENT, "JWT_TOKEN_USE": "refresh"}, "JwtTokenUse='refresh' is not one of"),
        ({**AGENT, **SIGN_IN, "AGENT_MEMORY": "yes"}, "AgentMemory='yes' is not one of"),
        ({**AGENT, **SIGN_IN, "API_THROTTLING_RATE_LIMIT": "0"}, "ApiThrottlingRateLimit=0 is below 1"),
    ],
)
def test_parameters_are_refused_as_cloudformation_would(environ, problem):
    with pytest.raises(stack.ParameterError, match=re.escape(problem)):
        deploy.gather_parameters("dev", [], environ)


@pytest.mark.parametrize("model", [
    "anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.nova-lite-v1:0", "meta.llama3-1-70b-instruct-v1:0",
    "ai21.jamba-1-5-large-v1:0", "anthropic.claude-v2:1", "amazon.titan-text-express-v1", "moonshotai.kimi-k2.5",
    "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
])
def test_model_id_takes_foundation_models(model):
    """Real Bedrock model ids, dotted versions included, pass the pattern that keeps profiles out."""
    assert deploy.gather_parameters("dev", [], {**SIGN_IN, "BACKEND": "converse", "MODEL_ID": model})["ModelId"] == model


@pytest.mark.parametrize("profile", [
    *(f"{geography}.{US_SONNET_PROFILE[3:]}" for geography in ("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global")),
    f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{US_SONNET_PROFILE}",
    f"arn:aws-us-gov:bedrock:us-gov-west-1:{ACCOUNT}:inference-profile/us-gov.{US_SONNET_PROFILE[3:]}",
    f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/a1b2c3d4e5f6",
])
def test_inference_profile_takes_profile_ids_and_arns(profile):
    environ = {**SIGN_IN, "BACKEND": "converse", "INFERENCE_PROFILE": profile, "INFERENCE_PROFILE_MODEL_ARNS": ",".join(US_SONNET_MODELS)}
    values = deploy.gather_parameters("dev", [], environ)
    assert (values["InferenceProfile"], values["ModelId"]) == (profile, "")


def test_unknown_parameters_are_refused():
    with pytest.raises(stack.ParameterError, match="unknown parameters: JwtSecret"):
        deploy.gather_parameters("dev", ["JwtSecret=hunter2"], {**AGENT, **SIGN_IN})


def test_cloudformation_resolves_the_roles_and_the_environment_chalice_is_given(project, tmp_path):
    """The stack before ``chalice deploy`` holds the functions' roles and resolves the app's
    environment; the rendered project hands both to Chalice as literals."""
    parameters = deploy.gather_parameters("dev", [], {**AGENT, **SIGN_IN})
    outputs, policies = resolved_stack(parameters, websocket_api_id="")
    worker = {s["Sid"]: s for s in policies["TurnWorkerRole"]["Statement"]}
    # Before chalice deploy made the API, the @connections grants name no API, so match none.
    assert worker["StreamToClients"]["Resource"] == [
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:/dev/{method}/@connections/*" for method in ("POST", "DELETE")
    ]
    assert worker["InvokeTheAgent"]["Resource"] == f"arn:aws:bedrock:{REGION}:{ACCOUNT}:agent-alias/AGENT12345/ALIAS12345"
    assert worker["RunTurns"]["Resource"] == outputs["TurnsTableArn"]
    _, policies = resolved_stack(parameters, websocket_api_id="a1b2c3d4e5")
    worker = {s["Sid"]: s for s in policies["TurnWorkerRole"]["Statement"]}
    assert worker["StreamToClients"]["Resource"] == [  # post the answer; close a connection that refuses it
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:a1b2c3d4e5/dev/{method}/@connections/*" for method in ("POST", "DELETE")
    ]

    stack.render_project("dev", outputs, tmp_path / "p", project, reserved={"websocket_connect": 7})
    chalice_dir = tmp_path / "p" / ".chalice"
    config = json.loads((chalice_dir / "config.json").read_text())["stages"]["dev"]
    assert config["manage_iam_role"] is False
    for function in stack.functions():
        settings = config["lambda_functions"][function]
        assert settings["iam_role_arn"] == outputs[stack.role_output(function)]
        assert settings.get("reserved_concurrency") == (7 if function == "websocket_connect" else None)
    env = config["environment_variables"]
    assert env["TURN_QUEUE_URL"] == outputs["TurnQueueUrl"] and env["TURN_QUEUE_ARN"] == outputs["TurnQueueArn"]
    assert env["CONNECTIONS_TABLE"] == outputs["ConnectionsTableName"] and env["JWT_ISSUER"] == SIGN_IN["JWT_ISSUER"]
    assert env["STAGE"] == "dev" and env["BACKEND"] == "agent" and "JWT_SECRET" not in env
    assert set(stack.app_environment_expressions()) <= set(env)
    # A variable only one function needs is that function's alone (each counts against its 4 KB).
    assert "MODEL_ID" not in env and config["lambda_functions"]["turn_worker"]["environment_variables"] == {
        "MODEL_ID": "", "KNOWLEDGE_BASE_ID": outputs["DocumentsKnowledgeBaseId"]}
    assert config["lambda_functions"]["api_handler"]["environment_variables"] == {
        "CONVERSATIONS_TABLE": outputs["ConversationsTableName"], "WEBSOCKET_API_ID": ""}
    assert sorted(p.name for p in chalice_dir.iterdir()) == ["config.json", "deployed", "deployments"]  # no policy to resolve
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [".chalice", "app.py", "chalicelib", "requirements.txt"]
    assert (chalice_dir / "deployed").resolve() == (project / ".chalice" / "deployed").resolve()


@pytest.mark.parametrize("scenario", ["converse-profile", "agentcore"])
def test_the_stage_runs_the_backend_its_parameters_choose(scenario):
    """BACKEND in the environment and the worker's grants both follow the Backend parameter."""
    given = [f"{name}={value}" for name, value in BACKENDS[scenario].items()]
    parameters = deploy.gather_parameters("dev", given, SIGN_IN)
    outputs, policies = resolved_stack(parameters, websocket_api_id="a1b2c3d4e5")
    env = stack.environment_from_outputs(outputs)
    worker = policies["TurnWorkerRole"]
    bedrock = {a for s in worker["Statement"] for a in s["Action"] if a.startswith(("bedrock:", "bedrock-agentcore:"))}
    if scenario == "converse-profile":
        assert (env["BACKEND"], env["MODEL_ID"], env["AGENT_ID"]) == ("converse", US_SONNET_PROFILE, "")
        assert bedrock == {"bedrock:InvokeModelWithResponseStream", "bedrock:Retrieve"}  # the asker's passages too
        (models,) = [s for s in worker["Statement"] if s["Sid"] == "InvokeTheProfilesModels"]
        assert models["Resource"] == list(US_SONNET_MODELS)
        history = [s for s in worker["Statement"] if s["Sid"] == "KeepConversations"]
        assert history and history[0]["Resource"] == outputs["HistoryTableArn"]
    else:
        assert (env["BACKEND"], env["AGENT_RUNTIME_ARN"], env["AGENT_RUNTIME_QUALIFIER"]) == ("agentcore", RUNTIME_ARN, "")
        assert bedrock == {"bedrock-agentcore:InvokeAgentRuntime"}
        assert "KeepConversations" not in {s["Sid"] for s in worker["Statement"]}


# ---- the whole path against moto


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch):
    """A moto server (a separate process talks to it: chalice), with the three calls and the
    CloudFormation role updates moto lacks."""
    import moto.apigatewayv2.urls
    from moto.apigateway.models import APIGatewayBackend
    import moto.cloudformation.parsing
    from moto.apigatewayv2.responses import ApiGatewayV2Response
    from moto.awslambda.responses import LambdaResponse
    from moto.iam.models import Role
    from moto.server import ThreadedMotoServer

    deployments = itertools.count(1)

    def create_deployment(*_: Any) -> Any:  # apigatewayv2 CreateDeployment
        return 201, {}, json.dumps({"deploymentId": f"d{next(deployments)}", "deploymentStatus": "DEPLOYED"})

    def update_stage(self: Any) -> Any:  # apigatewayv2 UpdateStage: route settings only
        api_id, stage_name = self.path.split("/")[-3], unquote(self.path.split("/")[-1])
        stage = self.apigatewayv2_backend.get_stage(api_id, stage_name)
        stage.default_route_settings.update(json.loads(self.body).get("defaultRouteSettings", {}))
        return 200, {}, json.dumps(stage.to_json())

    def get_layer_version_by_arn(self: Any) -> str:  # lambda GetLayerVersionByArn
        return json.dumps(self.backend.layers_versions_by_arn(self._get_param("Arn")).get_layer_version())

    original_update_role = Role.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def update_role(cls: Any, **kwargs: Any) -> Any:
        """CloudFormation's update of a role's inline policies (moto updates only its description)."""
        role = original_update_role(cls, **kwargs)
        policies = {p["PolicyName"]: p["PolicyDocument"] for p in kwargs["cloudformation_json"]["Properties"].get("Policies", [])}
        for gone in set(role.policies) - set(policies):
            role.delete_policy(gone)
        for policy_name, document in policies.items():
            role.put_policy(policy_name, document)
        return role

    monkeypatch.setattr(Role, "update_from_cloudformation_json", classmethod(update_role))
    put_openapi = APIGatewayBackend.put_rest_api

    def put_swagger(self: Any, function_id: str, api_doc: Dict[str, Any], fail_on_warnings: bool, mode: str = "merge") -> Any:
        """API Gateway imports Chalice's Swagger 2.0 body for the REST API; moto reads only OpenAPI 3:
        its paths and methods are given to it so, unchecked (API Gateway accepts the body), the CORS
        preflights' mock integrations with the URI and method moto wants of every integration."""
        def operation(document: Dict[str, Any]) -> Dict[str, Any]:
            integration = {"uri": "", "httpMethod": "POST", **document.get("x-amazon-apigateway-integration", {})}
            return {**document, "x-amazon-apigateway-integration": integration}

        paths = {path: {method: operation(document) for method, document in item.items()}
                 for path, item in api_doc["paths"].items()}
        openapi = {"openapi": "3.0.1", "info": api_doc["info"], "paths": paths}
        return put_openapi(self, function_id, openapi, fail_on_warnings=False, mode=mode)

    def import_swagger(self: Any, api_doc: Dict[str, Any], fail_on_warnings: bool) -> Any:
        api = self.create_rest_api(name=api_doc["info"]["title"], description=api_doc["info"].get("description", ""))
        put_swagger(self, api.id, api_doc, fail_on_warnings)
        return api

    monkeypatch.setattr(APIGatewayBackend, "import_rest_api", import_swagger)
    monkeypatch.setattr(APIGatewayBackend, "put_rest_api", put_swagger)
    original_references = moto.cloudformation.parsing.get_references_from_template

    def references(template: Any) -> List[str]:
        """What a resource refers to, ``${Name}`` in an ``Fn::Sub`` too (moto sees only ``Ref``), so a
        changed parameter updates every resource that names it, as in CloudFormation."""
        found = original_references(template)
        if isinstance(template, (dict, list)):
            found += re.findall(r"\$\{([A-Za-z0-9]+)\}", json.dumps(template))
        return found

    monkeypatch.setattr(moto.cloudformation.parsing, "get_references_from_template", references)
    monkeypatch.setitem(moto.apigatewayv2.urls.url_paths, "{0}/v2/apis/(?P<api_id>[^/]+)/deployments$", create_deployment)
    monkeypatch.setattr(ApiGatewayV2Response, "update_stage", update_stage, raising=False)
    monkeypatch.setattr(LambdaResponse, "get_layer_version_by_arn", get_layer_version_by_arn, raising=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield
    server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the app as committed, so the test's deployed state stays out of the repository."""
    copy = tmp_path / "project"
    for name in stack.APP_SOURCES:
        source = stack.ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".chalice").mkdir()
    for path in (stack.ROOT / ".chalice").glob("*.json"):
        shutil.copy2(path, copy / ".chalice" / path.name)
    (stack.ROOT / ".chalice" / "deployments").mkdir(exist_ok=True)  # Chalice's package cache, shared
    (copy / ".chalice" / "deployments").symlink_to(stack.ROOT / ".chalice" / "deployments")
    return copy


@pytest.mark.filterwarnings("ignore::UserWarning")  # moto: "no CloudFormation support for AWS::CloudWatch::Alarm"
def test_make_deploy_then_redeploy_then_destroy(moto_server, project, tmp_path):
    session = boto3.session.Session(region_name=REGION)
    log: List[str] = []
    deployer = deploy.Deployer(session, "dev", project_dir=project, build_dir=tmp_path / "build", poll_seconds=0.05,
                               log=log.append)
    parameters = deploy.gather_parameters("dev", [], {**AGENT, **SIGN_IN})

    result = deployer.deploy(parameters)
    api_id = stack.deployed_websocket_api_id("dev", project)
    assert result[stack.URL_OUTPUT] == f"wss://{api_id}.execute-api.{REGION}.amazonaws.com/dev/"
    assert f"Scoping the functions' @connections grants to the API {api_id} ..." in log
    # The page last: published with a config.json naming this stage, and its URL the last line printed.
    assert log[-1] == f"Sign in and chat: {result['PageUrl']}" and result["PageUrl"].startswith("https://")
    s3 = session.client("s3")
    config = json.loads(s3.get_object(Bucket=result["PageBucketName"], Key="config.json")["Body"].read())
    # Its own issuer (SIGN_IN), no pool: the page asks for a token (test_page.py: the config with a pool).
    rest_id = stack.deployed_rest_api_id("dev", project)
    assert config == {"wsUrl": result[stack.URL_OUTPUT], "restUrl": result[stack.REST_URL_OUTPUT].rstrip("/"), "region": REGION}
    assert result[stack.REST_URL_OUTPUT].startswith(f"https://{rest_id}.execute-api.{REGION}.amazonaws.com/")
    assert f"Letting the page call the REST API {rest_id} ..." in log
    assert s3.head_object(Bucket=result["PageBucketName"], Key="index.html")["ContentType"] == "text/html; charset=utf-8"

    iam, awslambda = session.client("iam"), session.client("lambda")
    for function in stack.functions():
        name = stack.function_name("dev", function)
        role = awslambda.get_function_configuration(FunctionName=name)["Role"]
        assert role == result[stack.role_output(function)]  # the stack's role, not one Chalice made
        policy = role_policy(iam, role, function)
        text = json.dumps(policy)
        assert "${" not in text and "Fn::" not in text
        for statement in policy["Statement"]:
            for resource in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
                if statement["Sid"] == "WriteTraces":  # X-Ray's write actions take no resource ARN
                    assert (statement["Action"], resource) == (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*")
                    continue
                if resource.startswith("arn:aws:s3:::"):  # S3 ARNs name no account: the documents bucket's objects
                    assert resource.startswith(f"arn:aws:s3:::{result['DocumentsBucketName']}"), resource
                    continue
                if resource.startswith(f"arn:aws:bedrock:{REGION}::foundation-model/"):  # a model: no account either
                    continue
                assert f":{ACCOUNT}:" in resource, resource
                if "execute-api" in resource:
                    allowed = ("POST",) if function == "websocket_message" else ("POST", "DELETE")
                    assert resource in [f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/dev/{m}/@connections/*" for m in allowed]
        variables = awslambda.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        assert variables["CONNECTIONS_TABLE"] == result["ConnectionsTableName"]
        assert variables["TURN_QUEUE_URL"] == result["TurnQueueUrl"] and variables["STAGE"] == "dev"
        assert variables["AGENT_ALIAS_ID"] == "ALIAS12345" and "JWT_SECRET" not in variables

    (uploads,) = awslambda.list_event_source_mappings(EventSourceArn=result["UploadsQueueArn"])["EventSourceMappings"]
    assert uploads["FunctionArn"].endswith(":function:agentstream-dev-document_uploads")
    assert uploads["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # pipeline.handle_batch's partial failures
    (subscription,) = session.client("sns").list_subscriptions_by_topic(TopicArn=result["DocumentsTopicArn"])["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"].rsplit(":", 1)[1]) == ("lambda", "agentstream-dev-document_notices")
    (mapping,) = awslambda.list_event_source_mappings(EventSourceArn=result["TurnQueueArn"])["EventSourceMappings"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == int(stack.chalice_config("dev").environment_variables["TURN_WORKER_BATCH_SIZE"])
    for function in ("websocket_connect", "websocket_message"):  # nothing reserved by default
        assert "ReservedConcurrentExecutions" not in awslambda.get_function_concurrency(FunctionName=stack.function_name("dev", function))
    assert mapping["FunctionArn"].endswith(":function:agentstream-dev-turn_worker")
    routes = session.client("apigatewayv2").get_stage(ApiId=api_id, StageName="dev")["DefaultRouteSettings"]
    assert (routes["ThrottlingRateLimit"], routes["ThrottlingBurstLimit"]) == (50.0, 100)

    log.clear()
    # A redeploy that switches the stage to another backend: same API, one pass, new grants and environment.
    switched = deploy.gather_parameters(
        "dev", [f"{k}={v}" for k, v in BACKENDS["converse-profile"].items()] + ["WebsocketReservedConcurrency=50"], SIGN_IN
    )
    assert deployer.deploy(switched)[stack.URL_OUTPUT] == result[stack.URL_OUTPUT]
    assert "Updating the data stack agentstream-dev-data ..." in log
    assert not any(line.startswith("Scoping") for line in log)
    worker = stack.function_name("dev", "turn_worker")
    policy = role_policy(iam, result[stack.role_output("turn_worker")], "turn_worker")
    sids = {statement["Sid"] for statement in policy["Statement"]}
    assert {"InvokeTheModel", "InvokeTheProfilesModels", "KeepConversations"} <= sids and "InvokeTheAgent" not in sids
    variables = awslambda.get_function_configuration(FunctionName=worker)["Environment"]["Variables"]
    assert (variables["BACKEND"], variables["MODEL_ID"]) == ("converse", US_SONNET_PROFILE)
    for function in ("websocket_connect", "websocket_message"):  # workers can no longer starve them
        reserved = awslambda.get_function_concurrency(FunctionName=stack.function_name("dev", function))
        assert reserved["ReservedConcurrentExecutions"] == 50
    assert "ReservedConcurrentExecutions" not in awslambda.get_function_concurrency(FunctionName=worker)

    deployer.destroy()
    assert awslambda.list_functions()["Functions"] == []
    assert f"Emptied s3://{result['PageBucketName']}/ ({len(list(page.page_files())) + 1} objects)" in log
    assert f"Emptied s3://{result['DocumentsBucketName']}/ (0 objects)" in log  # CloudFormation deletes it only empty
    assert s3.list_buckets()["Buckets"] == []  # the stack could delete the page's bucket
    assert session.client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])["StackSummaries"] == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_make_deploys_policy_allows_every_call_it_makes(moto_server, project, tmp_path):
    """The flow above (deploy, a redeploy that switches the backend, destroy), with every AWS request
    recorded by the moto server, those of the ``chalice`` subprocesses too: docs/iam/make-deploy.json
    allows each as IAM authorizes it, and what CloudFormation does with the caller's credentials for
    each template handed to it (its resource types' handler permissions, since moto's CloudFormation
    calls its backends in-process and nothing of it is recorded); and it needs every grant it holds.
    """
    import os

    recorder = recording.MotoRecorder(os.environ["AWS_ENDPOINT_URL"], tmp_path / "recording.jsonl")
    deployer = deploy.Deployer(boto3.session.Session(region_name=REGION), "dev", project_dir=project,
                               build_dir=tmp_path / "build", poll_seconds=0.05, log=lambda line: None)
    switched = [f"{k}={v}" for k, v in BACKENDS["converse-profile"].items()] + ["WebsocketReservedConcurrency=50"]
    recorder.start()
    deployer.deploy(deploy.gather_parameters("dev", [], {**AGENT, **SIGN_IN}))
    deployer.deploy(deploy.gather_parameters("dev", switched, SIGN_IN))
    deployer.destroy()
    calls = [recording.operation(request) for request in recorder.stop()]

    operations = {f"{call.service}:{call.operation}" for call in calls}
    # Both processes were heard: infra/deploy.py's stack and event source calls, and chalice's.
    assert {"cloudformation:CreateStack", "lambda:UpdateEventSourceMapping", "lambda:CreateFunction",
            "apigatewayv2:CreateApi", "lambda:DeleteFunction"} <= operations
    assert "describe_stack_events" in (stack.ROOT / "infra" / "deploy.py").read_text()  # why unrecorded_checks holds it
    needed = deployer_iam.recorded_checks(calls, REGION, ACCOUNT) + deployer_iam.unrecorded_checks("dev", REGION, ACCOUNT)
    policy = deployer_iam.policy("make-deploy", region=REGION, account=ACCOUNT, stage="dev")
    denied = deployer_iam.missing(policy, needed)
    assert not denied, "docs/iam/make-deploy.json does not allow:\n" + "\n".join(denied)
    needless = deployer_iam.needless(policy, needed)
    assert not needless, "docs/iam/make-deploy.json grants what nothing needs:\n" + "\n".join(needless)


def test_the_docs_and_gitignore_agree_about_chalices_deployed_records():
    ignored = ".chalice/deployed/" in (stack.ROOT / ".gitignore").read_text().split()
    docs = (stack.ROOT / "docs" / "deploy.md").read_text()
    assert ignored and "It is git-ignored (`.gitignore`)" in docs and "git add -f .chalice/deployed/<stage>.json" in docs


def _function(awslambda: Any, iam: Any, name: str, **tags: str) -> None:
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    awslambda.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.app",
                              Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18}, Tags=tags)


@pytest.mark.parametrize("owner, refusal", [
    # What the CloudFormation path leaves: CloudFormation tags each function with its stack's name.
    ({"aws:cloudformation:stack-name": "agentstream-dev"}, "already deployed by the CloudFormation stack 'agentstream-dev'"),
    ({}, "another checkout deployed this stage"),  # make deploy from a checkout with its own .chalice/deployed
])
def test_make_deploy_refuses_a_stage_it_did_not_deploy_before_creating_anything(owner, refusal, project, tmp_path):
    from moto import mock_aws

    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        _function(session.client("lambda"), session.client("iam"), stack.function_name("dev", "websocket_connect"), **owner)
        deployer = deploy.Deployer(session, "dev", project_dir=project, build_dir=tmp_path / "build", poll_seconds=0.05,
                                   log=lambda line: None)
        with pytest.raises(SystemExit, match=refusal):
            deployer.deploy(deploy.gather_parameters("dev", [], {**AGENT, **SIGN_IN}))
        assert session.client("cloudformation").list_stacks()["StackSummaries"] == []  # no data stack was started


# ---- the CloudFormation path's preflight (docs/deploy.md, Path 1)


def _preflight(session: Any, project: Path, tmp_path: Path, stack_name: str = "agentstream-dev") -> List[str]:
    """``make preflight`` for dev; what it logged (it raises SystemExit to refuse)."""
    log: List[str] = []
    deployer = deploy.Deployer(session, "dev", project_dir=project, build_dir=tmp_path / "build", log=log.append)
    deployer.preflight(stack_name)
    return log


def _stack(cloudformation: Any, name: str, resources: dict[str, Any]) -> None:
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": resources}))


@pytest.mark.parametrize("owner, refusal", [
    ({}, "agentstream-dev-websocket_connect exists outside CloudFormation: make deploy made it; make destroy STAGE=dev"),
    ({"aws:cloudformation:stack-name": "agentstream-dev-blue"},
     "agentstream-dev-websocket_connect is a resource of the stack 'agentstream-dev-blue', not of 'agentstream-dev'"),
])
def test_preflight_refuses_functions_the_stack_does_not_own_before_creating_anything(owner, refusal, project, tmp_path):
    from moto import mock_aws

    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        _function(session.client("lambda"), session.client("iam"), stack.function_name("dev", "websocket_connect"), **owner)
        with pytest.raises(SystemExit, match=re.escape(refusal)) as refused:
            _preflight(session, project, tmp_path)
        assert "Stage 'dev' cannot be deployed as the stack 'agentstream-dev'" in str(refused.value)
        assert session.client("cloudformation").list_stacks()["StackSummaries"] == []


def test_preflight_refuses_the_data_stack_of_make_deploy(project, tmp_path):
    from moto import mock_aws

    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        _stack(session.client("cloudformation"), stack.data_stack_name("dev"), {"Queue": {"Type": "AWS::SQS::Queue"}})
        with pytest.raises(SystemExit, match="the stack agentstream-dev-data exists: make deploy deployed this stage"):
            _preflight(session, project, tmp_path)
        with pytest.raises(SystemExit, match="agentstream-dev-data is the name of make deploy's own stack for this stage"):
            _preflight(session, project, tmp_path, stack_name="agentstream-dev-data")


def test_preflight_refuses_the_log_groups_make_destroy_leaves_but_not_the_stacks_own(project, tmp_path):
    from moto import mock_aws

    group = f"/aws/lambda/{stack.function_name('dev', 'turn_worker')}"
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        session.client("logs").create_log_group(logGroupName=group)
        with pytest.raises(SystemExit, match=re.escape(f"aws logs delete-log-group --log-group-name {group}")):
            _preflight(session, project, tmp_path)
        session.client("logs").delete_log_group(logGroupName=group)
        # The stack's own log group (an update of that stack) is no obstacle.
        _stack(session.client("cloudformation"), "agentstream-dev",
               {"TurnWorkerLogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": group}}})
        assert _preflight(session, project, tmp_path) == [
            "Stage 'dev': nothing of make deploy's or of another stack's in the way of 'agentstream-dev'."
        ]


def test_preflight_passes_a_new_stage_and_an_update_of_the_same_stack(project, tmp_path):
    from moto import mock_aws

    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        assert _preflight(session, project, tmp_path)[-1].startswith("Stage 'dev': nothing of make deploy's")
        for function in stack.functions(project):  # what the stack itself made
            _function(session.client("lambda"), session.client("iam"), stack.function_name("dev", function),
                      **{"aws:cloudformation:stack-name": "agentstream-dev"})
        assert _preflight(session, project, tmp_path)[-1].startswith("Stage 'dev': nothing of make deploy's")


def test_make_preflight_runs_the_check_for_the_stack_named(tmp_path):
    import subprocess

    result = subprocess.run(["make", "-n", "preflight", "STAGE=prod", f"STAMP={tmp_path}/stamp"],
                            cwd=stack.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "-m infra.deploy preflight --stage prod --stack-name agentstream-prod" in result.stdout
    docs = (stack.ROOT / "docs" / "deploy.md").read_text().split("## Path 1", 1)[1].split("\n## ", 1)[0]
    assert "make preflight STAGE=prod" in docs  # in Path 1's steps, before aws cloudformation deploy
    assert docs.index("make preflight STAGE=prod") < docs.index("aws cloudformation deploy")


@pytest.mark.parametrize("target, command", [("publish-page", "publish"), ("empty-page", "empty")])
def test_make_page_targets_run_infra_page_for_the_stack_named(target, command, tmp_path):
    import subprocess

    result = subprocess.run(["make", "-n", target, "STAGE=prod", f"STAMP={tmp_path}/stamp"],
                            cwd=stack.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"-m infra.page {command} --stack-name agentstream-prod" in result.stdout


# ---- the WebSocket stage's access logs on the chalice deploy path


@pytest.fixture
def stage_settings(monkeypatch: pytest.MonkeyPatch):
    """moto's apigatewayv2 lacks UpdateStage and DeleteAccessLogSettings: the smallest stand-ins, refusing
    access logs as API Gateway does while the account has no CloudWatch Logs role in the Region."""
    import moto.apigateway.urls
    import moto.apigatewayv2.urls
    from moto.apigateway.models import APIGatewayBackend
    from moto.apigateway.models import apigateway_backends
    from moto.apigatewayv2.exceptions import BadRequestException
    from moto.apigatewayv2.models import apigatewayv2_backends
    from moto.apigatewayv2.responses import ApiGatewayV2Response

    def update_stage(self: Any) -> Any:  # apigatewayv2 UpdateStage: route and access log settings
        api_id, stage_name = self.path.split("/")[-3], unquote(self.path.split("/")[-1])
        stage = self.apigatewayv2_backend.get_stage(api_id, stage_name)
        body = json.loads(self.body)
        if "accessLogSettings" in body:
            if not apigateway_backends[self.current_account][self.region].account.cloudwatch_role_arn:
                raise BadRequestException("CloudWatch Logs role ARN must be set in account settings to enable logging")
            stage.access_log_settings = body["accessLogSettings"]
        stage.default_route_settings.update(body.get("defaultRouteSettings", {}))
        return 200, {}, json.dumps(stage.to_json())

    def delete_access_log_settings(request: Any, full_url: str, headers: Any) -> Any:  # apigatewayv2 DeleteAccessLogSettings
        api_id, _, stage_name, _ = full_url.split("/v2/apis/", 1)[1].split("/")
        apigatewayv2_backends[ACCOUNT][REGION].get_stage(api_id, unquote(stage_name)).access_log_settings = None
        return 204, {}, ""

    monkeypatch.setattr(ApiGatewayV2Response, "update_stage", update_stage, raising=False)
    path = "{0}/v2/apis/(?P<api_id>[^/]+)/stages/(?P<stage_name>[^/]+)/accesslogsettings$"
    for urls in (moto.apigateway.urls, moto.apigatewayv2.urls):  # apigateway's copies apigatewayv2's when imported
        monkeypatch.setitem(urls.url_paths, path, delete_access_log_settings)


def test_make_deploy_logs_the_stages_access_as_the_template_does_and_stops_when_asked(stage_settings, project, tmp_path):
    from moto import mock_aws

    template_format = stack.load_json(stack.APP_TEMPLATE)["Resources"]["WebsocketAPIStage"]["Properties"]["AccessLogSettings"]
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/apigateway/agentstream-dev-websocket-access:*"
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        apigateway = session.client("apigatewayv2")
        api_id = apigateway.create_api(Name="dev-agentstream", ProtocolType="WEBSOCKET",
                                       RouteSelectionExpression="$request.body.action")["ApiId"]
        apigateway.create_stage(ApiId=api_id, StageName="dev")
        log: List[str] = []
        deployer = deploy.Deployer(session, "dev", project_dir=project, build_dir=tmp_path / "build", log=log.append)

        # A new account has no API Gateway logging role in the Region: a clear stop, not a BadRequestException.
        with pytest.raises(SystemExit, match="the account has no CloudWatch Logs role for API Gateway there"):
            deployer.access_logs(api_id, "dev", group)
        assert "AccessLogSettings" not in apigateway.get_stage(ApiId=api_id, StageName="dev")

        role = f"arn:aws:iam::{ACCOUNT}:role/apigateway-logs"  # set once per Region (docs/deploy.md, "Access logs")
        account = session.client("apigateway")
        account.update_account(patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role}])
        deployer.access_logs(api_id, "dev", group)
        settings = apigateway.get_stage(ApiId=api_id, StageName="dev")["AccessLogSettings"]
        assert settings == {"DestinationArn": group, "Format": template_format["Fn::If"][1]["Format"]}  # the packaged stage's
        log.clear()
        deployer.access_logs(api_id, "dev", group)  # a redeploy changes nothing
        assert log == []

        deployer.access_logs(api_id, "dev", None)  # WebsocketAccessLogging=false: the data stack has no such output
        assert "AccessLogSettings" not in apigateway.get_stage(ApiId=api_id, StageName="dev")
        assert log == ["Turning off the access logs of the WebSocket stage dev ..."]
        deployer.access_logs(api_id, "dev", None)
        assert len(log) == 1


def test_make_deploy_gives_the_data_stack_the_stages_log_retention():
    for stage in ("dev", "prod"):
        values = deploy.gather_parameters(stage, [], {**AGENT, **SIGN_IN, "LOG_RETENTION_IN_DAYS": "1"})
        assert values["LogRetentionInDays"] == str(stack.chalice_config(stage).log_retention_in_days), stage  # not a choice
        assert values["WebsocketAccessLogging"] == "false"
    logging_on = deploy.gather_parameters("dev", [], {**AGENT, **SIGN_IN, "WEBSOCKET_ACCESS_LOGGING": "true"})
    assert logging_on["WebsocketAccessLogging"] == "true"
