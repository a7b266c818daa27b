"""``make deploy``: parameters, the rendered Chalice project, and the whole path against moto.

The end-to-end test runs the real thing (the data stack through CloudFormation, ``chalice deploy``
twice, the event source and stage fixes, a redeploy, ``make destroy``) against a moto server. Three
API calls moto does not implement are filled in below, each with the smallest stand-in.
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

from infra import deploy, stack
from tests.deploy.support import ACCOUNT, BACKENDS, REGION, RUNTIME_ARN, US_SONNET_MODELS, US_SONNET_PROFILE, data_outputs

SIGN_IN = {"JWT_ISSUER": "https://issuer.example", "JWT_JWKS_URL": "https://issuer.example/.well-known/jwks.json"}
AGENT = {"BACKEND": "agent", "AGENT_ID": "AGENT12345", "AGENT_ALIAS_ID": "ALIAS12345"}


def test_parameter_names_follow_the_apps_environment():
    assert deploy.env_name("AgentAliasId") == "AGENT_ALIAS_ID"
    assert deploy.env_name("JwtJwksUrl") == "JWT_JWKS_URL"
    assert deploy.env_name("TurnQueueAgeAlarmSeconds") == "TURN_QUEUE_AGE_ALARM_SECONDS"
    assert deploy.env_name("InferenceProfileModelArns") == "INFERENCE_PROFILE_MODEL_ARNS"
    # A parameter the app reads is named as the app's own variable: BACKEND=converse make run / make deploy.
    variables = stack.load_json(stack.APP_TEMPLATE)["Globals"]["Function"]["Environment"]["Variables"]
    for variable, value in variables.items():
        if set(value) == {"Ref"} and value["Ref"] in stack.parameter_specs():
            assert deploy.env_name(value["Ref"]) == variable, variable


def test_each_backend_needs_only_its_own_parameters():
    converse = deploy.gather_parameters("dev", [], {**SIGN_IN, "BACKEND": "converse", "MODEL_ID": US_SONNET_PROFILE,
                                                    "INFERENCE_PROFILE_MODEL_ARNS": ",".join(US_SONNET_MODELS)})
    assert (converse["Backend"], converse["AgentId"], converse["ModelId"]) == ("converse", "", US_SONNET_PROFILE)
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
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": US_SONNET_PROFILE,
          "INFERENCE_PROFILE_MODEL_ARNS": f"{US_SONNET_MODELS[0]},arn:aws:bedrock:*::foundation-model/{US_SONNET_PROFILE[3:]}"},
         "InferenceProfileModelArns='arn:aws:bedrock:*::"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": "amazon.nova-lite-v1:0", "LATENCY": "fast"}, "Latency='fast' is not one of"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": "amazon.nova-lite-v1:0", "MAX_TOKENS": "0"}, "MaxTokens='0' does not match"),
        ({**SIGN_IN, "BACKEND": "converse", "MODEL_ID": "amazon.nova-lite-v1:0", "SYSTEM_PROMPT": "x" * 2001},
         "SystemPrompt is longer than 2000"),
        ({**SIGN_IN, "BACKEND": "agentcore"}, "Backend=agentcore needs AgentRuntimeArn"),
        ({**SIGN_IN, "BACKEND": "agentcore", "AGENT_RUNTIME_ARN": RUNTIME_ARN.replace("A1b2C3d4E5", "*")}, "AgentRuntimeArn='arn"),
        ({**SIGN_IN, "BACKEND": "agentcore", "AGENT_RUNTIME_ARN": RUNTIME_ARN, "AGENT_RUNTIME_QUALIFIER": "DEFAULT*"},
         "AgentRuntimeQualifier='DEFAULT*' does not match"),
        ({**AGENT}, "Set JwtJwksUrl (with JwtIssuer) or JwtSecretParameter"),
        ({**AGENT, "JWT_JWKS_URL": "https://issuer.example/jwks"}, "JwtJwksUrl needs JwtIssuer"),
        ({**AGENT, "JWT_JWKS_URL": "http://issuer.example/jwks", "JWT_ISSUER": "x"}, "JwtJwksUrl='http"),
        ({**AGENT, "JWT_SECRET_PARAMETER": "jwt-secret"}, "JwtSecretParameter='jwt-secret' does not match"),
        ({**AGENT, **SIGN_IN, "AGENT_MEMORY": "yes"}, "AgentMemory='yes' is not one of"),
        ({**AGENT, **SIGN_IN, "API_THROTTLING_RATE_LIMIT": "0"}, "ApiThrottlingRateLimit=0 is below 1"),
    ],
)
def test_parameters_are_refused_as_cloudformation_would(environ, problem):
    with pytest.raises(stack.ParameterError, match=re.escape(problem)):
        deploy.gather_parameters("dev", [], environ)


def test_unknown_parameters_are_refused():
    with pytest.raises(stack.ParameterError, match="unknown parameters: JwtSecret"):
        deploy.gather_parameters("dev", ["JwtSecret=hunter2"], {**AGENT, **SIGN_IN})


def _outputs() -> Dict[str, str]:
    data = stack.load_json(stack.DATA_TEMPLATE)["Resources"]
    return data_outputs({name: f"dev-{name}" for name, r in data.items() if r["Type"] in ("AWS::DynamoDB::Table", "AWS::SQS::Queue")})


def test_the_first_render_leaves_out_only_what_needs_the_api_id(project, tmp_path):
    parameters = deploy.gather_parameters("dev", [], {**AGENT, **SIGN_IN})
    context = stack.context_from_outputs(parameters, _outputs())
    deferred = stack.render_project("dev", context, tmp_path / "p", project, defer={"WebsocketAPI"})
    assert sorted(deferred) == ["turn_worker:StreamToClients", "websocket_message:ReplyToClients"]

    context = stack.context_from_outputs(parameters, _outputs(), websocket_api_id="a1b2c3d4e5")
    assert stack.render_project("dev", context, tmp_path / "p", project) == []
    chalice_dir = tmp_path / "p" / ".chalice"
    for path in chalice_dir.glob("policy-*.json"):
        text = path.read_text()
        assert "Fn::" not in text and "${" not in text and '"Ref"' not in text, path.name
    worker = json.loads((chalice_dir / "policy-turn_worker.json").read_text())
    by_sid = {s["Sid"]: s for s in worker["Statement"]}
    assert by_sid["StreamToClients"]["Resource"] == [  # post the answer; close a connection that refuses it
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:a1b2c3d4e5/dev/{method}/@connections/*" for method in ("POST", "DELETE")
    ]
    assert by_sid["InvokeTheAgent"]["Resource"] == f"arn:aws:bedrock:{REGION}:{ACCOUNT}:agent-alias/AGENT12345/ALIAS12345"
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["dev"]["environment_variables"]
    assert env["TURN_QUEUE_URL"] == _outputs()["TurnQueueUrl"] and env["TURN_QUEUE_ARN"] == _outputs()["TurnQueueArn"]
    assert env["CONNECTIONS_TABLE"] == "dev-ConnectionsTable" and env["JWT_ISSUER"] == SIGN_IN["JWT_ISSUER"]
    assert env["STAGE"] == "dev" and env["BACKEND"] == "agent" and "JWT_SECRET" not in env
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [".chalice", "app.py", "chalicelib", "requirements.txt"]
    assert (chalice_dir / "deployed").resolve() == (project / ".chalice" / "deployed").resolve()


@pytest.mark.parametrize("scenario", ["converse-profile", "agentcore"])
def test_the_stage_runs_the_backend_its_parameters_choose(scenario, project, tmp_path):
    """BACKEND in the rendered config.json and the worker's grants both follow the Backend parameter."""
    given = [f"{name}={value}" for name, value in BACKENDS[scenario].items()]
    parameters = deploy.gather_parameters("dev", given, SIGN_IN)
    context = stack.context_from_outputs(parameters, _outputs(), websocket_api_id="a1b2c3d4e5")
    stack.render_project("dev", context, tmp_path / "p", project)
    chalice_dir = tmp_path / "p" / ".chalice"
    env = json.loads((chalice_dir / "config.json").read_text())["stages"]["dev"]["environment_variables"]
    worker = json.loads((chalice_dir / "policy-turn_worker.json").read_text())
    bedrock = {a for s in worker["Statement"] for a in s["Action"] if a.startswith(("bedrock:", "bedrock-agentcore:"))}
    if scenario == "converse-profile":
        assert (env["BACKEND"], env["MODEL_ID"], env["AGENT_ID"]) == ("converse", US_SONNET_PROFILE, "")
        assert bedrock == {"bedrock:InvokeModelWithResponseStream"}
        (models,) = [s for s in worker["Statement"] if s["Sid"] == "InvokeTheProfilesModels"]
        assert models["Resource"] == list(US_SONNET_MODELS)
        history = [s for s in worker["Statement"] if s["Sid"] == "KeepConversations"]
        assert history and history[0]["Resource"] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/dev-HistoryTable"
    else:
        assert (env["BACKEND"], env["AGENT_RUNTIME_ARN"], env["AGENT_RUNTIME_QUALIFIER"]) == ("agentcore", RUNTIME_ARN, "")
        assert bedrock == {"bedrock-agentcore:InvokeAgentRuntime"}
        assert "KeepConversations" not in {s["Sid"] for s in worker["Statement"]}


# ---- the whole path against moto


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch):
    """A moto server (a separate process talks to it: chalice), with the three calls moto lacks."""
    import moto.apigatewayv2.urls
    from moto.apigatewayv2.responses import ApiGatewayV2Response
    from moto.awslambda.responses import LambdaResponse
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
    assert any(line.startswith("Scoping websocket_message:ReplyToClients, turn_worker:StreamToClients to the API") for line in log)

    iam, awslambda = session.client("iam"), session.client("lambda")
    for function in stack.functions():
        name = stack.function_name("dev", function)
        policy = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
        text = json.dumps(policy)
        assert "${" not in text and "Fn::" not in text
        for statement in policy["Statement"]:
            for resource in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
                if statement["Sid"] == "WriteTraces":  # X-Ray's write actions take no resource ARN
                    assert (statement["Action"], resource) == (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*")
                    continue
                assert f":{ACCOUNT}:" in resource, resource
                if "execute-api" in resource:
                    allowed = ("POST",) if function == "websocket_message" else ("POST", "DELETE")
                    assert resource in [f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/dev/{m}/@connections/*" for m in allowed]
        variables = awslambda.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        assert variables["CONNECTIONS_TABLE"] == result["ConnectionsTableName"]
        assert variables["TURN_QUEUE_URL"] == result["TurnQueueUrl"] and variables["STAGE"] == "dev"
        assert variables["AGENT_ALIAS_ID"] == "ALIAS12345" and "JWT_SECRET" not in variables

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
    policy = iam.get_role_policy(RoleName=worker, PolicyName=worker)["PolicyDocument"]
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
    assert session.client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])["StackSummaries"] == []


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
