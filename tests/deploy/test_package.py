"""``make package``: what ``chalice package`` with the merged templates produces, and what is in it."""
from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import zipfile
from typing import Any, Dict

import pytest

from infra import stack
from tests.deploy.support import (
    ACCOUNT,
    APPLICATION_PROFILE,
    BACKENDS,
    REGION,
    RUNTIME_ARN,
    STAGES,
    US_SONNET_MODELS,
    US_SONNET_PROFILE,
    Placeholders,
    as_list,
    cfn_lint,
    conditions_in,
    resources_of_type,
    statements,
)

FUNCTIONS = {
    "websocket_connect": "WebsocketConnect",
    "websocket_message": "WebsocketMessage",
    "websocket_disconnect": "WebsocketDisconnect",
    "turn_worker": "TurnWorker",
}
ROUTES = {"$connect": "WebsocketConnect", "$default": "WebsocketMessage", "$disconnect": "WebsocketDisconnect"}


def test_package_writes_the_template_the_code_and_the_layer(packaged):
    for stage, out in packaged.items():
        assert sorted(p.name for p in out.iterdir()) == ["deployment.zip", "layer-deployment.zip", "sam.json"], stage


def test_deployment_zip_holds_only_the_app_and_stays_small(packaged):
    with zipfile.ZipFile(packaged["dev"] / "deployment.zip") as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"app.py", "__pycache__", "chalicelib", "chalice"}, tops  # chalice/: Chalice's own runtime module
    assert (packaged["dev"] / "deployment.zip").stat().st_size < 1_000_000


def test_both_zips_carry_bytecode_lambda_could_not_write_itself(packaged, tmp_path):
    tag = sys.implementation.cache_tag
    for archive, expected in (
        ("deployment.zip", ["app.py", "chalicelib/turns/run.py"]),
        ("layer-deployment.zip", ["python/lib/{py}/site-packages/botocore/client.py"]),
    ):
        with zipfile.ZipFile(packaged["dev"] / archive) as zipped:
            names = set(zipped.namelist())
            for source in expected:
                source = source.format(py=f"python{sys.version_info.major}.{sys.version_info.minor}")
                folder, _, file = source.rpartition("/")
                pyc = f"{folder}/__pycache__/{file[:-3]}.{tag}.pyc".lstrip("/")
                assert source in names and pyc in names, (archive, pyc)
    # The bytecode is what Python loads: unpacked, the app imports from it without its sources.
    with zipfile.ZipFile(packaged["dev"] / "deployment.zip") as zipped:
        zipped.extractall(tmp_path)
    turns = tmp_path / "chalicelib" / "turns"
    (turns / "ids.py").unlink()
    (turns / "__pycache__" / f"ids.{tag}.pyc").rename(turns / "ids.pyc")
    probe = "import chalicelib.turns.ids as s; print(s.memory_id('x'))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("m-"), result.stderr


def test_the_layer_holds_the_pinned_dependencies_and_sdk(packaged):
    with zipfile.ZipFile(packaged["dev"] / "layer-deployment.zip") as archive:
        packages = {name.split("/")[4] for name in archive.namelist() if name.count("/") >= 4}
    assert {"jwt", "cryptography", "aws_lambda_powertools"} <= packages
    # boto3/botocore are pinned and shipped on purpose, not the runtime's (docs/deploy.md says why).
    pins = dict(re.findall(r"^(boto3|botocore)==(\S+)$", (stack.ROOT / "requirements.txt").read_text(), re.MULTILINE))
    assert set(pins) == {"boto3", "botocore"}
    for name, version in pins.items():
        assert {name, f"{name}-{version}.dist-info"} <= packages, name


def test_cfn_lint_passes_the_packaged_templates(packaged):
    for stage, out in packaged.items():
        result = cfn_lint(out / "sam.json")
        assert result.returncode == 0, f"{stage}:\n{result.stdout}{result.stderr}"


def test_cfn_lint_passes_the_data_stack():
    result = cfn_lint(stack.DATA_TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_connect_url_is_the_first_output(templates):
    for template in templates.values():
        name, output = next(iter(template["Outputs"].items()))
        assert name == stack.URL_OUTPUT
        assert output["Value"]["Fn::Sub"].startswith("wss://${WebsocketAPI}.execute-api.")
        for needed in ("ConnectionsTableName", "TurnsTableName", "TurnQueueUrl", "TurnDeadLetterQueueUrl", "TurnWorkerName"):
            assert needed in template["Outputs"]


def test_three_websocket_routes_each_to_its_function(templates):
    for template in templates.values():
        routes = resources_of_type(template, "AWS::ApiGatewayV2::Route")
        by_key = {r["Properties"]["RouteKey"]: r["Properties"]["Target"]["Fn::Join"][1][1]["Ref"] for r in routes.values()}
        integrations = template["Resources"]
        targets = {
            key: integrations[integration]["Properties"]["IntegrationUri"]["Fn::Sub"][1]["WebsocketHandler"]["Ref"]
            for key, integration in by_key.items()
        }
        assert targets == ROUTES


def test_the_api_invokes_each_function_only_from_its_own_route(templates):
    for stage, template in templates.items():
        permissions = resources_of_type(template, "AWS::Lambda::Permission")
        assert len(permissions) == 3
        for permission in permissions.values():
            function = permission["Properties"]["FunctionName"]["Ref"]
            (route,) = [key for key, fn in ROUTES.items() if fn == function]
            source = permission["Properties"]["SourceArn"]["Fn::Sub"]
            assert source.endswith(f":${{WebsocketAPI}}/${{Stage}}/{route}"), source


def test_functions_are_named_and_sized_per_stage(templates):
    for stage, template in templates.items():
        for function, logical_id in FUNCTIONS.items():
            properties = template["Resources"][logical_id]["Properties"]
            config = stack.chalice_config(stage, function)
            assert properties["FunctionName"] == {"Fn::Sub": f"agentstream-${{Stage}}-{function}"}
            assert properties["Timeout"] == config.lambda_timeout
            assert properties["MemorySize"] == config.lambda_memory_size
            assert properties["Layers"] == [{"Ref": "ManagedLayer"}]
            assert template["Resources"][f"{logical_id}LogGroup"]["Properties"]["RetentionInDays"] > 0
        assert template["Parameters"]["Stage"]["AllowedValues"] == [stage]


def test_websocket_handlers_answer_within_the_integration_timeout_and_the_worker_within_lambdas():
    for stage in STAGES:
        for function in ("websocket_connect", "websocket_message", "websocket_disconnect"):
            assert stack.chalice_config(stage, function).lambda_timeout < 29  # API Gateway's limit
        assert 60 <= stack.chalice_config(stage, "turn_worker").lambda_timeout <= 900


def test_only_the_worker_is_traced_actively(templates):
    """The worker's turns are what X-Ray should show (its subsegments: chalicelib/tracing.py); the
    WebSocket handlers only pass an incoming trace header through."""
    for template in templates.values():
        tracing = {logical_id: resource["Properties"].get("Tracing") for logical_id, resource in template["Resources"].items()
                   if resource["Type"] == "AWS::Serverless::Function"}
        assert tracing == {"WebsocketConnect": "PassThrough", "WebsocketMessage": "PassThrough",
                           "WebsocketDisconnect": "PassThrough", "TurnWorker": "Active"}


def test_the_worker_reports_partial_batch_failures_from_its_own_queue(templates):
    for stage, template in templates.items():
        (event,) = template["Resources"]["TurnWorker"]["Properties"]["Events"].values()
        env = stack.chalice_config(stage).environment_variables
        assert event["Type"] == "SQS"
        assert event["Properties"] == {
            "Queue": {"Fn::GetAtt": ["TurnQueue", "Arn"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": int(env["TURN_WORKER_BATCH_SIZE"]),
            "MaximumBatchingWindowInSeconds": 0,
            "ScalingConfig": {"MaximumConcurrency": int(env["TURN_WORKER_MAX_CONCURRENCY"])},
        }
        assert 2 <= int(env["TURN_WORKER_MAX_CONCURRENCY"]) <= 1000  # what Lambda accepts
        assert "000000000000" not in json.dumps(template)  # app.py's placeholder queue ARN is gone


def test_websocket_handlers_can_be_given_concurrency_workers_cannot_take(templates):
    for template in templates.values():
        parameter = template["Parameters"]["WebsocketReservedConcurrency"]
        assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 0, 0)  # off: new accounts cannot reserve
        assert template["Conditions"]["ReservesWebsocketConcurrency"] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": "WebsocketReservedConcurrency"}, "0"]}]
        }
        for logical_id in ("WebsocketConnect", "WebsocketMessage"):
            assert template["Resources"][logical_id]["Properties"]["ReservedConcurrentExecutions"] == {
                "Fn::If": ["ReservesWebsocketConcurrency", {"Ref": "WebsocketReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
            }
        # The workers are bounded by their event source instead (TURN_WORKER_MAX_CONCURRENCY).
        assert "ReservedConcurrentExecutions" not in template["Resources"]["TurnWorker"]["Properties"]


def _environment(template: Dict[str, Any], logical_id: str) -> Dict[str, Any]:
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    assert not set(shared) & set(own), "a variable set twice: which one wins is SAM's choice"
    return {**shared, **own}


WIRING = {
    "CONNECTIONS_TABLE": {"Ref": "ConnectionsTable"},
    "TURNS_TABLE": {"Ref": "TurnsTable"},
    "RATE_LIMITS_TABLE": {"Ref": "RateLimitsTable"},
    "HISTORY_TABLE": {"Ref": "HistoryTable"},
    "TURN_QUEUE_URL": {"Ref": "TurnQueue"},
    "TURN_QUEUE_ARN": {"Fn::GetAtt": ["TurnQueue", "Arn"]},
    "BACKEND": {"Ref": "Backend"},
    "AGENT_ID": {"Ref": "AgentId"},
    "AGENT_ALIAS_ID": {"Ref": "AgentAliasId"},
    "AGENT_MEMORY": {"Ref": "AgentMemory"},
    "MODEL_ID": {"Ref": "ModelId"},
    "SYSTEM_PROMPT": {"Ref": "SystemPrompt"},
    "MAX_TOKENS": {"Ref": "MaxTokens"},
    "LATENCY": {"Ref": "Latency"},
    "AGENT_RUNTIME_ARN": {"Ref": "AgentRuntimeArn"},
    "AGENT_RUNTIME_QUALIFIER": {"Ref": "AgentRuntimeQualifier"},
    "JWT_ISSUER": {"Ref": "JwtIssuer"},
    "JWT_AUDIENCE": {"Ref": "JwtAudience"},
    "JWT_JWKS_URL": {"Ref": "JwtJwksUrl"},
    "JWT_SECRET_PARAMETER": {"Ref": "JwtSecretParameter"},
    "TURN_EVENT_BUS": {"Ref": "TurnEventBus"},
}


def test_every_function_is_wired_to_the_stacks_resources_and_parameters(templates):
    for stage, template in templates.items():
        for logical_id in FUNCTIONS.values():
            env = _environment(template, logical_id)
            assert {k: env[k] for k in WIRING} == WIRING
            assert env["STAGE"] == stage  # BACKEND follows the Backend parameter, not the stage's config
            assert env["LOG_CONTENT"] == "false"
            # Never a plain-text secret; the management endpoint is derived from the event on AWS.
            assert "JWT_SECRET" not in env and "MANAGEMENT_ENDPOINT_URL" not in env


def test_every_table_and_queue_the_settings_read_is_wired(templates):
    from dataclasses import fields

    from chalicelib.settings import Settings

    variables = {name for setting in fields(Settings) for name in setting.metadata["env"]}
    resource_settings = {name for name in variables if name.endswith(("_TABLE", "_QUEUE_URL"))}
    assert {"CONNECTIONS_TABLE", "TURNS_TABLE", "TURN_QUEUE_URL"} <= resource_settings
    env = _environment(templates["dev"], "TurnWorker")
    for name in sorted(resource_settings):
        assert name in env and set(env[name]) <= {"Ref", "Fn::GetAtt"}, (
            f"chalicelib/settings.py reads {name} but no deployed function gets it: add the resource to "
            "infra/data.json, the variable to Globals in infra/merge.json and the grants to .chalice/policy-*.json "
            "(docs/deploy.md, 'Adding to it')"
        )


def test_every_variable_set_is_read_by_someone(templates):
    """A misspelt name would be silently ignored by the app."""
    readers = "".join((stack.ROOT / path).read_text() for path in ("chalicelib/settings.py", "app.py"))
    for logical_id in FUNCTIONS.values():
        for name in _environment(templates["dev"], logical_id):
            assert f'"{name}"' in readers or name == "POWERTOOLS_LOG_LEVEL", name  # Powertools reads its own


def test_parameters_cover_every_backend_and_sign_in_and_hold_no_secret(templates):
    parameters = templates["dev"]["Parameters"]
    for name in ("Backend", "AgentId", "AgentAliasId", "AgentMemory", "ModelId", "InferenceProfileModelArns", "SystemPrompt",
                 "MaxTokens", "Latency", "AgentRuntimeArn", "AgentRuntimeQualifier",
                 "JwtIssuer", "JwtAudience", "JwtJwksUrl", "JwtSecretParameter"):
        assert name in parameters
    from chalicelib.settings import BACKENDS as APP_BACKENDS

    assert parameters["Backend"]["AllowedValues"] == list(APP_BACKENDS)
    # No default: a deployer must choose, since Agents Classic (agent) is closed to new AWS customers.
    assert "Default" not in parameters["Backend"] and "closed to new AWS customers" in parameters["Backend"]["Description"]
    assert parameters["AgentMemory"]["AllowedValues"] == ["true", "false"]
    assert parameters["Latency"]["AllowedValues"] == ["", "standard", "optimized"]  # what the settings accept
    # Each backend's target is optional in the template and required by a Rule when that backend is chosen.
    for name in ("AgentId", "AgentAliasId", "ModelId", "AgentRuntimeArn"):
        assert parameters[name]["Default"] == "" and re.fullmatch(parameters[name]["AllowedPattern"], ""), name
    # The HS256 secret is referenced by name, never passed in.
    assert not [n for n in parameters if "Secret" in n and n not in ("JwtSecretParameter", "JwtSecretKmsKeyArn")]


# ---- least privilege


ALLOWED_WILDCARD_SUFFIXES = (
    "/<Stage>/POST/@connections/*",  # a connection id: known only at run time
    "/<Stage>/DELETE/@connections/*",  # ... (the worker closes a connection that refuses its posts)
    ":*",  # a log group's log streams
)


def _identity_policies(template: Dict[str, Any]):
    for name, role in resources_of_type(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for policy in role["Properties"]["Policies"]:
            yield name, policy["PolicyDocument"]


def test_each_function_has_its_own_role_and_no_other_iam(templates):
    for template in templates.values():
        iam = {name for name, r in template["Resources"].items() if r["Type"].startswith("AWS::IAM::")}
        assert iam == {f"{logical_id}Role" for logical_id in FUNCTIONS.values()}
        for logical_id in FUNCTIONS.values():
            assert template["Resources"][logical_id]["Properties"]["Role"] == {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}


def _every_branch(statement: Dict[str, Any]):
    """``statement`` resolved with placeholders under every combination of the conditions it tests."""
    names = sorted(conditions_in(statement))
    for values in itertools.product((True, False), repeat=len(names)):
        yield Placeholders(dict(zip(names, values))).evaluate(statement)


def test_no_wildcard_action_and_no_unscoped_resource(templates):
    for stage, template in templates.items():
        for role, document in _identity_policies(template):
            for branch in statements(document):
                for statement in _every_branch(branch):
                    _check_scoped(f"{stage} {role} {statement.get('Sid')}", statement)


# The only statement whose resource is "*": X-Ray's write actions support no resource ARN (Service
# Authorization Reference, "Actions defined by AWS X-Ray": PutTraceSegments and PutTelemetryRecords
# list no resource type), and active tracing needs them.
UNSCOPABLE = {"WriteTraces": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]}


def _check_scoped(where: str, statement: Dict[str, Any]) -> None:
    assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
    if statement.get("Sid") in UNSCOPABLE:
        assert (statement["Action"], statement["Resource"]) == (UNSCOPABLE[statement["Sid"]], "*"), where
        return
    for action in as_list(statement["Action"]):
        assert "*" not in action and re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), where
    for resource in as_list(statement["Resource"]):
        assert resource != "*", where
        if re.fullmatch(r"<[A-Za-z]+\.Arn>", resource):
            continue  # a resource of this stack
        if re.fullmatch(r"<([A-Za-z]+)>", resource):
            continue  # a parameter: test_parameters_in_arns_cannot_widen_them
        if resource.startswith("<AgentRuntimeArn>/"):
            resource = resource.replace("<AgentRuntimeArn>", "arn:<Partition>:bedrock-agentcore:<Region>:<AccountId>:runtime/<id>", 1)
        parts = resource.split(":", 5)
        assert parts[:2] == ["arn", "<Partition>"], where
        # Foundation models belong to no account: their ARNs leave it empty.
        account = "" if parts[2:3] == ["bedrock"] and parts[5].startswith("foundation-model/") else "<AccountId>"
        assert parts[3:5] == ["<Region>", account], where
        scoped = resource
        for suffix in ALLOWED_WILDCARD_SUFFIXES:
            if scoped.endswith(suffix):
                scoped = scoped[: -len(suffix)]
                break
        assert "*" not in scoped, f"{where}: {resource}"


def test_parameters_in_arns_cannot_widen_them():
    """A parameter spliced into an ARN must not be able to hold a wildcard."""
    specs = stack.parameter_specs()
    for function, (_, document) in stack.policy_documents("dev").items():
        for statement in statements(document):
            text = str(statement.get("Resource")) + str(statement.get("Condition"))
            for name in set(re.findall(r"\$\{([A-Za-z]+)\}", text)) | set(re.findall(r"'Ref': '([A-Za-z]+)'", text)):
                if name in specs:
                    spec = specs[name]
                    pattern = spec.get("AllowedPattern")
                    assert "AllowedValues" in spec or (pattern and not any(re.fullmatch(pattern, wild) for wild in ("*", "a*", "a?"))
                                                       ), f"{function}: {name}"


def test_the_agent_and_the_api_are_named_exactly(templates):
    template = templates["dev"]
    policies = {role: document for role, document in _identity_policies(template)}
    by_sid = {s["Sid"]: s for document in policies.values() for s in statements(document)}
    assert by_sid["InvokeTheAgent"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:agent-alias/${AgentId}/${AgentAliasId}"
    }
    connections = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebsocketAPI}/${Stage}/%s/@connections/*"
    # The worker posts and closes (a connection that keeps refusing posts); $default only replies.
    assert by_sid["StreamToClients"]["Resource"] == [{"Fn::Sub": connections % "POST"}, {"Fn::Sub": connections % "DELETE"}]
    assert by_sid["ReplyToClients"]["Resource"] == {"Fn::Sub": connections % "POST"}
    # The API stage those ARNs name is the Chalice stage (the Stage parameter).
    for stage in STAGES:
        assert stack.chalice_config(stage).api_gateway_stage == stage


def test_only_the_worker_invokes_bedrock_and_only_connect_reads_the_secret(templates):
    actions: Dict[str, set] = {}
    for role, document in _identity_policies(templates["dev"]):
        actions[role] = {a for s in statements(document) for a in as_list(s["Action"])}
    for bedrock in ("bedrock:InvokeAgent", "bedrock:InvokeModelWithResponseStream", "bedrock-agentcore:InvokeAgentRuntime"):
        assert [r for r, a in actions.items() if bedrock in a] == ["TurnWorkerRole"], bedrock
    assert [r for r, a in actions.items() if any(a.startswith(("bedrock:", "bedrock-agentcore:")) for a in a)] == ["TurnWorkerRole"]
    assert [r for r, a in actions.items() if "ssm:GetParameter" in a] == ["WebsocketConnectRole"]
    assert [r for r, a in actions.items() if "sqs:SendMessage" in a] == ["WebsocketMessageRole"]
    assert [r for r, a in actions.items() if "sqs:ReceiveMessage" in a] == ["TurnWorkerRole"]
    assert actions["WebsocketDisconnectRole"] == {"logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:DeleteItem"}


def test_turn_events_go_to_the_bus_a_parameter_names_and_only_the_worker_may_put_them(templates):
    for stage, template in templates.items():
        parameter = template["Parameters"]["TurnEventBus"]
        assert (parameter["Type"], parameter["Default"]) == ("String", "default")  # the account's default bus
        assert re.fullmatch(parameter["AllowedPattern"], "")  # empty: no events
        assert not any(re.fullmatch(parameter["AllowedPattern"], name) for name in ("*", "a*", "bus?", "arn:aws:events:x"))
        assert template["Conditions"]["PublishesTurnEvents"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TurnEventBus"}, ""]}]}
        for logical_id in FUNCTIONS.values():
            assert _environment(template, logical_id)["TURN_EVENT_BUS"] == {"Ref": "TurnEventBus"}
        # Only the worker puts events: on that one bus, as agentstream, of the two types it sends.
        granted = {role: [s for s in statements(document) if "events:PutEvents" in as_list(s["Action"])]
                   for role, document in _identity_policies(template)}
        assert {role for role, found in granted.items() if found} == {"TurnWorkerRole"}, stage
        (statement,) = granted["TurnWorkerRole"]
        assert as_list(statement["Action"]) == ["events:PutEvents"]
        assert statement["Resource"] == {
            "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${TurnEventBus}"
        }
        from chalicelib.turns.eventbus import COMPLETED, FAILED, SOURCE

        assert statement["Condition"] == {"StringEquals": {"events:source": SOURCE, "events:detail-type": [COMPLETED, FAILED]}}
        (wrapped,) = [s for s in template["Resources"]["TurnWorkerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                      if "Fn::If" in s and s["Fn::If"][1] == statement]
        assert wrapped["Fn::If"][0] == "PublishesTurnEvents" and wrapped["Fn::If"][2] == {"Ref": "AWS::NoValue"}

    # Resolved: the grant names the bus given, and is gone when the parameter is empty.
    on = _resolved_policies(templates["dev"], {**BACKENDS["agent"], "TurnEventBus": "billing"})["TurnWorkerRole"]
    (put,) = [s for s in on["Statement"] if s["Sid"] == "PublishTurnEvents"]
    assert put["Resource"] == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/billing"
    off = _resolved_policies(templates["dev"], {**BACKENDS["agent"], "TurnEventBus": ""})["TurnWorkerRole"]
    assert not [s for s in off["Statement"] if "events:PutEvents" in as_list(s["Action"])]


def test_make_package_runs_this_packaging(tmp_path):
    result = subprocess.run(
        ["make", "-n", "package", "STAGE=prod", f"STAMP={tmp_path}/stamp"],
        cwd=stack.ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "-m infra.stack package --stage prod --out build/package" in result.stdout


@pytest.mark.parametrize("stage", STAGES)
def test_the_merge_template_only_adds_to_what_chalice_generates(stage, templates):
    """Every resource merge.json touches must be one Chalice generated, or a misspelt id adds a stub."""
    merge = stack.load_json(stack.APP_TEMPLATE)["Resources"]
    for logical_id in merge:
        assert "Type" in templates[stage]["Resources"][logical_id], logical_id


def test_the_packaged_stack_carries_the_data_stack_unchanged(templates):
    """Tables (TTL, recovery), queues (redrive), alarms and outputs: as tests/deploy/test_data_stack.py checks them."""
    data = stack.load_json(stack.DATA_TEMPLATE)
    for template in templates.values():
        for section in ("Resources", "Outputs", "Conditions"):
            for name, value in data[section].items():
                assert template[section][name] == value, f"{section}.{name}"
        for name, value in data["Parameters"].items():
            if name != "Stage":
                assert template["Parameters"][name] == value, name


def test_the_packaged_stack_has_the_dashboard_and_quota_alarms_in_one_parameter_group_each(templates):
    """The dashboard and the quota alarms come with the data stack (both paths); the console shows every parameter grouped."""
    for stage, template in templates.items():
        assert template["Resources"]["StageDashboard"]["Type"] == "AWS::CloudWatch::Dashboard"
        alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
        assert {"LambdaConcurrencyQuotaAlarm", "AgentModelThrottlesAlarm", "ModelThrottlesAlarm"} <= set(alarms), stage
        groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        grouped = [name for group in groups for name in group["Parameters"]]
        assert sorted(grouped) == sorted(template["Parameters"]), stage


def test_every_handler_of_the_app_is_configured_and_packaged(templates):
    import app

    assert sorted(stack.functions()) == sorted(app.app.handler_map) == sorted(FUNCTIONS)
    for template in templates.values():
        functions = {r["Properties"]["Handler"] for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"}
        assert functions == {f"app.{name}" for name in FUNCTIONS}


# ---- each backend: only its own grants


def _resolved_policies(template: Dict[str, Any], parameters: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """Each role's policy in ``template`` as CloudFormation resolves it for these parameter values.

    The template's own Conditions decide every ``Fn::If``; this stack's resources stay placeholders.
    """

    class Resolver(stack.Context):
        def attribute(self, resource: str, attribute: str) -> str:
            return f"<{resource}.{attribute}>"

        def ref(self, name: str) -> Any:
            if name in self.parameters or name in self.pseudo or name == "AWS::NoValue":
                return super().ref(name)
            return f"<{name}>"

    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(stack.resolve_parameters("dev", {"JwtSecretParameter": "/agentstream/dev/jwt", **parameters}))
    context = Resolver(parameters=values, pseudo={"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                                                 "AWS::URLSuffix": "amazonaws.com"}, conditions=template["Conditions"])
    return {role: context.evaluate(document) for role, document in _identity_policies(template)}


PROFILE_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{US_SONNET_PROFILE}"
ENDPOINT = f"{RUNTIME_ARN}/runtime-endpoint"
BACKEND_GRANTS = {  # Sid: (actions, resources, condition)
    "agent": {
        "InvokeTheAgent": (["bedrock:InvokeAgent"], [f"arn:aws:bedrock:{REGION}:{ACCOUNT}:agent-alias/AGENT12345/ALIAS12345"], None),
    },
    "converse-model": {
        "InvokeTheModel": (["bedrock:InvokeModelWithResponseStream"],
                           [f"arn:aws:bedrock:{REGION}::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"], None),
        "KeepConversations": (["dynamodb:GetItem", "dynamodb:PutItem"], ["<HistoryTable.Arn>"], None),
    },
    "converse-profile": {
        "InvokeTheModel": (["bedrock:InvokeModelWithResponseStream"], [PROFILE_ARN], None),
        "InvokeTheProfilesModels": (["bedrock:InvokeModelWithResponseStream"], list(US_SONNET_MODELS),
                                    {"StringEquals": {"bedrock:InferenceProfileArn": PROFILE_ARN}}),
        "KeepConversations": (["dynamodb:GetItem", "dynamodb:PutItem"], ["<HistoryTable.Arn>"], None),
    },
    "converse-application-profile": {
        "InvokeTheModel": (["bedrock:InvokeModelWithResponseStream"], [APPLICATION_PROFILE], None),
        "InvokeTheProfilesModels": (["bedrock:InvokeModelWithResponseStream"], list(US_SONNET_MODELS),
                                    {"StringEquals": {"bedrock:InferenceProfileArn": APPLICATION_PROFILE}}),
        "KeepConversations": (["dynamodb:GetItem", "dynamodb:PutItem"], ["<HistoryTable.Arn>"], None),
    },
    "agentcore": {
        "InvokeTheAgentRuntime": (["bedrock-agentcore:InvokeAgentRuntime"], [RUNTIME_ARN, f"{ENDPOINT}/DEFAULT"], None),
    },
    "agentcore-endpoint": {
        "InvokeTheAgentRuntime": (["bedrock-agentcore:InvokeAgentRuntime"], [RUNTIME_ARN, f"{ENDPOINT}/production"], None),
    },
}
SHARED_WORKER_SIDS = {"WriteOwnLogs", "ConsumeTurnQueue", "RunTurns", "ReleaseConnections", "ReleaseTurnsInFlightAndMeterUsage", "StreamToClients",
                      "PublishTurnEvents", "WriteTraces"}


def test_every_backend_scenario_is_checked():
    assert set(BACKEND_GRANTS) == set(BACKENDS)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_each_backend_gets_only_its_own_grants(backend, templates):
    """The packaged template, resolved for each Backend: the worker gets that backend's grants and no other's."""
    for stage, template in templates.items():
        policies = _resolved_policies(template, BACKENDS[backend])
        worker = {s["Sid"]: s for s in policies["TurnWorkerRole"]["Statement"]}
        own = {sid: statement for sid, statement in worker.items() if sid not in SHARED_WORKER_SIDS}
        assert sorted(own) == sorted(BACKEND_GRANTS[backend]), (stage, backend)
        for sid, (actions, resources, condition) in BACKEND_GRANTS[backend].items():
            assert as_list(own[sid]["Action"]) == actions, sid
            assert as_list(own[sid]["Resource"]) == resources, sid
            assert own[sid].get("Condition") == condition, sid
        # Nothing else moves with the backend: the other roles are the same under every backend.
        assert {role: p for role, p in policies.items() if role != "TurnWorkerRole"} == {
            role: p for role, p in _resolved_policies(template, BACKENDS["agent"]).items() if role != "TurnWorkerRole"
        }
