"""``make package``: what ``chalice package`` with the merged templates produces, and what is in it."""
from __future__ import annotations

import importlib.util
import itertools
import json
import marshal
import re
import shutil
import subprocess
import sys
import zipfile
from typing import Any, Dict

import pytest
from chalice.deploy.packager import BaseLambdaDeploymentPackager

from infra import stack
from infra.bytecode import add_bytecode, interpreter_for
from infra.chalice_cli import (
    DEFAULT_RUNTIME,
    DEPRECATED,
    RUNTIMES,
    UnsupportedRuntime,
    check_runtime,
    patch_chalice,
    python_version,
)
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
    resolved_stack,
    resources_of_type,
    statements,
)

FUNCTIONS = {
    "websocket_connect": "WebsocketConnect",
    "websocket_message": "WebsocketMessage",
    "websocket_disconnect": "WebsocketDisconnect",
    "turn_worker": "TurnWorker",
    "api_handler": "APIHandler",  # the REST API's routes (/v1), one function
    "rest_authorizer": "RestAuthorizer",  # the REST API's token authorizer, called before any route
    "document_uploads": "DocumentUploads",  # the uploads queue's consumer: starts the document pipeline
    "document_notices": "DocumentNotices",  # the documents topic's subscriber: tells the owner
    "document_extract": "DocumentExtract",  # the pipeline's Extract step
    "document_analyse": "DocumentAnalyse",  # the pipeline's Analyse step
}
# Roles of the stack's own besides the functions': the state machine's and the knowledge base's (infra/documents.json).
SERVICE_ROLES = ("DocumentPipelineRole", "KnowledgeBaseRole")
ROUTES = {"$connect": "WebsocketConnect", "$default": "WebsocketMessage", "$disconnect": "WebsocketDisconnect"}


def test_package_writes_the_template_the_code_and_the_layer(packaged):
    for stage, out in packaged.items():
        assert sorted(p.name for p in out.iterdir()) == ["deployment.zip", "layer-deployment.zip", "sam.json"], stage


def test_deployment_zip_holds_only_the_app_and_stays_small(packaged):
    with zipfile.ZipFile(packaged["dev"] / "deployment.zip") as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names} - {"__pycache__"}  # app.py's bytecode, when shipped
    assert tops == {"app.py", "chalicelib", "chalice"}, tops  # chalice/: Chalice's own runtime module
    assert (packaged["dev"] / "deployment.zip").stat().st_size < 1_000_000


# ---- the Lambda runtime: a choice (RUNTIME=), not the builder's Python

RUNTIME = DEFAULT_RUNTIME  # what the packaged fixture used: make package without RUNTIME=
XY = python_version(RUNTIME).replace(".", "")
# importlib.util.MAGIC_NUMBER of each version (read from CPython 3.11.7, 3.12.1 and 3.13.0).
MAGIC = {"python3.11": 3495, "python3.12": 3531, "python3.13": 3571}


def test_the_default_runtime_is_supported_and_not_deprecated():
    assert RUNTIME in RUNTIMES and RUNTIME not in DEPRECATED
    assert set(RUNTIMES) <= set(BaseLambdaDeploymentPackager._RUNTIME_TO_ABI)  # Chalice has each one's wheel ABI


def test_the_functions_and_the_layer_declare_the_chosen_runtime_not_the_builders(templates):
    """The builder here is Python 3.11; Chalice alone would have declared python3.11 everywhere."""
    for stage, template in templates.items():
        runtimes = {logical_id: resource["Properties"].get("Runtime") for logical_id, resource in template["Resources"].items()
                    if resource["Type"] == "AWS::Serverless::Function"}
        assert runtimes == {logical_id: RUNTIME for logical_id in FUNCTIONS.values()}, stage
        assert "Runtime" not in template.get("Globals", {}).get("Function", {})
        assert template["Resources"]["ManagedLayer"]["Properties"]["CompatibleRuntimes"] == [RUNTIME], stage


def test_the_layers_compiled_dependencies_are_wheels_for_the_runtime(packaged):
    with zipfile.ZipFile(packaged["dev"] / "layer-deployment.zip") as archive:
        names = archive.namelist()
        wheels = {name.split("/")[4].split("-")[0]: archive.read(name).decode() for name in names
                  if name.endswith(".dist-info/WHEEL")}
    site = f"python/lib/{RUNTIME}/site-packages/"
    assert all(name.startswith(site) for name in names)  # where the runtime looks in /opt
    extensions = [name[len(site):] for name in names if name.endswith(".so")]
    for extension in extensions:
        assert extension.endswith((f".cpython-{XY}-x86_64-linux-gnu.so", ".abi3.so")), extension
    # cffi (for cryptography's bindings) and wrapt compiled for this runtime, cryptography for the stable ABI.
    assert {f"_cffi_backend.cpython-{XY}-x86_64-linux-gnu.so", f"wrapt/_wrappers.cpython-{XY}-x86_64-linux-gnu.so",
            "cryptography/hazmat/bindings/_rust.abi3.so"} <= set(extensions)
    for name in ("cffi", "wrapt"):
        tags = re.findall(r"^Tag: (\S+)$", wheels[name], re.MULTILINE)
        assert tags and all(tag.startswith(f"cp{XY}-cp{XY}-manylinux") for tag in tags), (name, tags)


def test_bytecode_in_the_zips_is_the_runtimes_or_none(packaged):
    """A .pyc is only any use to the Python version that wrote it: the runtime's, or none at all."""
    shipped = 0
    for stage, out in packaged.items():
        for archive in ("deployment.zip", "layer-deployment.zip"):
            with zipfile.ZipFile(out / archive) as zipped:
                for name in zipped.namelist():
                    if name.endswith(".pyc"):
                        assert name.endswith(f".cpython-{XY}.pyc"), (stage, name)
                        header = zipped.read(name)[:4]
                        assert header == MAGIC[RUNTIME].to_bytes(2, "little") + b"\r\n", (stage, name)
                        shipped += 1
    # Compiled when an interpreter of the runtime's version is at hand (the builder's, or pythonX.Y on PATH).
    assert bool(shipped) == (interpreter_for(RUNTIME) is not None)


def test_bytecode_is_compiled_by_the_interpreter_given_and_is_what_python_loads(packaged, tmp_path):
    """infra/bytecode.py with this interpreter standing in for the runtime's: same code path."""
    copy = tmp_path / "deployment.zip"
    shutil.copy(packaged["dev"] / "deployment.zip", copy)
    tag = sys.implementation.cache_tag
    assert add_bytecode(copy, sys.executable) > 10
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(copy) as zipped:
        names = set(zipped.namelist())
        for source in ("app.py", "chalicelib/turns/run.py", "chalicelib/turns/ids.py"):
            folder, _, file = source.rpartition("/")
            pyc = f"{folder}/__pycache__/{file[:-3]}.{tag}.pyc".lstrip("/")
            assert source in names and pyc in names, pyc
        data = zipped.read(f"chalicelib/turns/__pycache__/ids.{tag}.pyc")
        zipped.extractall(unpacked)
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, unchecked: no timestamps to compare
    assert marshal.loads(data[16:]).co_filename == "/var/task/chalicelib/turns/ids.py"  # as tracebacks on Lambda show it
    # The bytecode is what Python loads: unpacked, the app imports from it without its sources.
    turns = unpacked / "chalicelib" / "turns"
    (turns / "ids.py").unlink()
    (turns / "__pycache__" / f"ids.{tag}.pyc").rename(turns / "ids.pyc")
    probe = "import chalicelib.turns.ids as s; print(s.memory_id('x'))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=unpacked, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("m-"), result.stderr


def _fake_python(directory, name: str, script: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def test_only_an_interpreter_of_the_runtimes_version_compiles_bytecode(tmp_path, monkeypatch):
    builder = "python%d.%d" % sys.version_info[:2]
    assert interpreter_for(builder) == sys.executable
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    assert interpreter_for("python3.13") is None  # none on PATH
    _fake_python(bin_dir, "python3.13", "exit 127")  # e.g. a pyenv shim for a version not selected
    assert interpreter_for("python3.13") is None
    _fake_python(bin_dir, "python3.13", f'exec "{sys.executable}" "$@"')  # named python3.13, but it is not
    assert interpreter_for("python3.13") is None
    _fake_python(bin_dir, "python3.13", "echo 3.13")
    assert interpreter_for("python3.13") == str(bin_dir / "python3.13")


def test_an_unsupported_runtime_is_refused_with_the_choices_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("kept")
    choices = "choose one of python3.12, python3.13, python3.14 (default python3.13"
    commands = {
        "make package": ["-m", "infra.stack", "package", "--stage", "dev", "--out", str(out), "--runtime", "python3.9"],
        "make deploy": ["-m", "infra.deploy", "deploy", "--stage", "dev", "--runtime", "nodejs22.x"],
        "the wrapper": [str(stack.ROOT / "infra" / "chalice_cli.py"), "--runtime", "python3.10", "package", str(out)],
    }
    for what, command in commands.items():
        result = subprocess.run([sys.executable, *command], cwd=stack.ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (what, result.stdout, result.stderr)
        assert "is not a Lambda runtime agentstream packages for: " + choices in result.stderr, (what, result.stderr)
    assert [p.name for p in out.iterdir()] == ["earlier.txt"]
    with pytest.raises(UnsupportedRuntime, match="'python3.15' is not a Lambda runtime"):
        stack.chalice_command("python3.15")


def test_python311_is_still_accepted_with_its_deprecation_dates():
    assert check_runtime("python3.11") == "python3.11"
    wrapper = [sys.executable, str(stack.ROOT / "infra" / "chalice_cli.py")]
    result = subprocess.run(wrapper + ["--runtime", "python3.11", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("chalice "), result.stderr
    assert "Warning: python3.11 (Amazon Linux 2) is deprecated on Lambda on 2027-06-30" in result.stderr


def test_make_deploy_runs_chalice_for_the_chosen_runtime(monkeypatch, tmp_path):
    import boto3

    from infra import deploy

    commands = []
    monkeypatch.setattr(deploy.subprocess, "run", lambda command, **_: commands.append(command))
    for runtime in (None, "python3.12"):
        kwargs = {} if runtime is None else {"runtime": runtime}
        deployer = deploy.Deployer(boto3.session.Session(region_name=REGION), "dev", build_dir=tmp_path, **kwargs)
        deployer.chalice("deploy", "--stage", "dev")
    wrapper = [sys.executable, str(stack.ROOT / "infra" / "chalice_cli.py"), "--runtime"]
    assert commands == [wrapper + [RUNTIME, "--project-dir", str(tmp_path / "dev"), "deploy", "--stage", "dev"],
                        wrapper + ["python3.12", "--project-dir", str(tmp_path / "dev"), "deploy", "--stage", "dev"]]


@pytest.fixture
def chalice_restored(monkeypatch):
    """Chalice's internals as they were after the test, whatever ``patch_chalice`` replaced."""
    from chalice.config import Config
    from chalice.deploy import packager, validate

    monkeypatch.setattr(Config, "lambda_python_version", Config.__dict__["lambda_python_version"])
    monkeypatch.setattr(validate, "validate_python_version", validate.validate_python_version)
    monkeypatch.setattr(packager.PipRunner, "_execute", packager.PipRunner._execute)
    monkeypatch.setattr(BaseLambdaDeploymentPackager, "_build_python_dependencies",
                        BaseLambdaDeploymentPackager._build_python_dependencies)


def test_the_wrapper_asks_pip_for_the_runtimes_wheels_and_stops_on_a_missing_one(chalice_restored):
    from chalice.config import Config
    from chalice.deploy import packager

    patch_chalice("python3.13")
    assert Config(chalice_stage="dev").lambda_python_version == "python3.13"
    calls = []

    class Pip:
        def main(self, args, env_vars=None, shim=None):
            calls.append(args)
            return 0, b"", b""

    runner = packager.PipRunner(Pip())
    runner.download_manylinux_wheels("cp313", ["cffi==2.1.1"], "/tmp/wheels", ["manylinux2014_x86_64"])
    # Without --python-version pip matches the builder's version: no cp313-cp313 wheel, and cffi left out.
    assert calls[-1][:3] == ["download", "--python-version", "3.13"] and calls[-1][-4:] == ["cp313", "--dest", "/tmp/wheels",
                                                                                          "cffi==2.1.1"]
    runner.download_sdists(["cffi==2.1.1"], "/tmp/sdists")
    assert "--python-version" not in calls[-1]  # only downloads by ABI name a Python version

    class Builder:
        def build_site_packages(self, abi, requirements, directory):
            raise packager.MissingDependencyError({packager.Package(directory, "cffi-2.1.1-cp311-cp311-manylinux2014_x86_64.whl")})

    layer = packager.LayerDeploymentPackager(None, Builder(), None)
    with pytest.raises(SystemExit, match=r"No python3.13 \(cp313\) wheel for: cffi==2.1.1"):
        layer._build_python_dependencies("python3.13", "requirements.txt", "/tmp/site")


def test_the_runtimes_resolve_the_pinned_closure_as_the_builder_does():
    """pip resolves requirements.txt's environment markers for the builder's Python, not the runtime's:
    safe only while no marker in the closure tells them apart."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    def environment(version: str) -> Dict[str, str]:
        return {"python_version": version, "python_full_version": f"{version}.0"}

    builder = "%d.%d" % sys.version_info[:2]
    todo = [Requirement(line) for line in (stack.ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    seen = set()
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower()
        if name in seen:
            continue
        seen.add(name)
        for spec in distribution(requirement.name).requires or []:
            child = Requirement(spec)
            if child.marker is None:
                todo.append(child)
                continue
            for extra in {""} | set(requirement.extras):
                wanted = child.marker.evaluate({**environment(builder), "extra": extra})
                for runtime in RUNTIMES:
                    assert child.marker.evaluate({**environment(python_version(runtime)), "extra": extra}) == wanted, (
                        f"{requirement.name} requires {spec}: pip resolves it for Python {builder}, not {runtime}"
                    )
                if wanted:
                    todo.append(child)
    assert {"cffi", "wrapt", "cryptography", "botocore"} <= seen


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


@pytest.mark.parametrize("stage", STAGES)
def test_cfn_lint_passes_the_stack_make_deploy_creates(stage, tmp_path):
    """data.json with the functions' roles and the environment as outputs, no unused parameter left in."""
    path = tmp_path / f"deploy-{stage}.json"
    path.write_text(json.dumps(stack.deploy_template(stage)))
    result = cfn_lint(path)
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
        assert len(permissions) == 5
        rest = permissions.pop("APIHandlerInvokePermission")["Properties"]  # the REST API's routes, one function
        assert rest["FunctionName"] == {"Ref": "APIHandler"} and rest["Principal"] == "apigateway.amazonaws.com"
        assert rest["SourceArn"] == {"Fn::Sub": ["arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestAPIId}/*",
                                                 {"RestAPIId": {"Ref": "RestAPI"}}]}
        authorizer = permissions.pop("RestAuthorizerInvokePermission")["Properties"]  # the REST API only
        assert authorizer["FunctionName"] == {"Fn::GetAtt": ["RestAuthorizer", "Arn"]}
        assert authorizer["Principal"] == "apigateway.amazonaws.com" and authorizer["SourceArn"] == rest["SourceArn"]
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
            name = stack.function_name(stage, function).replace(f"-{stage}", "-${Stage}", 1)
            assert properties["FunctionName"] == {"Fn::Sub": name}
            assert properties["Timeout"] == config.lambda_timeout
            assert properties["MemorySize"] == config.lambda_memory_size
            assert properties["Layers"] == [{"Ref": "ManagedLayer"}]
            log_group = template["Resources"][f"{stack.resource_prefix(function)}LogGroup"]["Properties"]
            assert log_group["RetentionInDays"] > 0
            assert log_group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"}  # the function's own
        assert template["Parameters"]["Stage"]["AllowedValues"] == [stage]


def test_websocket_handlers_answer_within_the_integration_timeout_and_the_worker_within_lambdas():
    for stage in STAGES:
        for function in ("websocket_connect", "websocket_message", "websocket_disconnect", "api_handler", "rest_authorizer"):
            assert stack.chalice_config(stage, function).lambda_timeout < 29  # API Gateway's limit
        assert 60 <= stack.chalice_config(stage, "turn_worker").lambda_timeout <= 900
        # The uploads queue outlasts its consumer six times over (AWS's advice for an SQS event source).
        queue = stack.stage_resources()["Resources"]["UploadsQueue"]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * stack.chalice_config(stage, "document_uploads").lambda_timeout


def test_only_the_worker_is_traced_actively(templates):
    """The worker's turns are what X-Ray should show (its subsegments: chalicelib/tracing.py); the
    WebSocket and REST handlers only pass an incoming trace header through."""
    for template in templates.values():
        tracing = {logical_id: resource["Properties"].get("Tracing") for logical_id, resource in template["Resources"].items()
                   if resource["Type"] == "AWS::Serverless::Function"}
        assert tracing == {**{logical_id: "PassThrough" for logical_id in FUNCTIONS.values()}, "TurnWorker": "Active"}


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


def test_the_document_functions_listen_to_the_stacks_own_queue_and_topic(templates):
    """Chalice names a placeholder queue and topic (app.py's defaults); the packaged stack's are its own."""
    for stage, template in templates.items():
        (uploads,) = template["Resources"]["DocumentUploads"]["Properties"]["Events"].values()
        assert uploads["Type"] == "SQS"
        assert uploads["Properties"]["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
        assert uploads["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # pipeline.handle_batch's answer
        (notices,) = template["Resources"]["DocumentNotices"]["Properties"]["Events"].values()
        assert notices == {"Type": "SNS", "Properties": {"Topic": {"Fn::Sub": "${DocumentsTopic}"}}}  # the topic's ARN
        for logical_id in ("DocumentExtract", "DocumentAnalyse"):  # the state machine invokes them: no event of their own
            assert "Events" not in template["Resources"][logical_id]["Properties"]
        assert "agentstream-documents" not in json.dumps(template) and "agentstream-uploads" not in json.dumps(template)


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
    # The prompt's SSM parameter, not the prompt: it may take 8 KB, and the whole environment 4 KB.
    "SYSTEM_PROMPT_PARAMETER": {"Fn::If": ["UsesSystemPrompt", {"Ref": "SystemPromptParameter"}, ""]},
    "MAX_TOKENS": {"Ref": "MaxTokens"},
    "LATENCY": {"Ref": "Latency"},
    "AGENT_RUNTIME_ARN": {"Ref": "AgentRuntimeArn"},
    "AGENT_RUNTIME_QUALIFIER": {"Ref": "AgentRuntimeQualifier"},
    # Sign-in: the stack's own user pool (CreateUserPool=true, the default), else the issuer given.
    "JWT_ISSUER": {"Fn::If": ["CreatesUserPool", {"Fn::Sub": "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${UserPool}"},
                              {"Ref": "JwtIssuer"}]},
    "JWT_AUDIENCE": {"Ref": "JwtAudience"},
    "JWT_JWKS_URL": {"Fn::If": ["CreatesUserPool",
                                {"Fn::Sub": "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${UserPool}/.well-known/jwks.json"},
                                {"Ref": "JwtJwksUrl"}]},
    "JWT_CLIENT_ID": {"Fn::If": ["CreatesUserPool", {"Ref": "UserPoolClient"}, {"Ref": "JwtClientId"}]},
    "JWT_TOKEN_USE": {"Fn::If": ["CreatesUserPool", "access", {"Ref": "JwtTokenUse"}]},
    "JWT_REQUIRED_GROUP": {"Ref": "JwtRequiredGroup"},
    "JWT_SECRET_PARAMETER": {"Ref": "JwtSecretParameter"},
    "TURN_EVENT_BUS": {"Ref": "TurnEventBus"},
}
KNOWLEDGE_BASE = {"Fn::If": ["CreatesKnowledgeBase", {"Fn::GetAtt": ["DocumentsKnowledgeBase", "KnowledgeBaseId"]}, {"Ref": "KnowledgeBaseId"}]}
MODEL = {"Fn::If": ["HasInferenceProfile", {"Ref": "InferenceProfile"}, {"Ref": "ModelId"}]}


# What only some functions get: each variable counts against every function's 4 KB (infra/envsize.py).
OWN_WIRING = {
    # What it invokes, and the knowledge base the converse backend retrieves the asker's passages from.
    "TurnWorker": {"MODEL_ID": MODEL, "KNOWLEDGE_BASE_ID": KNOWLEDGE_BASE},
    # An ask in a conversation lists it; the documents actions (upload, documents, delete).
    "WebsocketMessage": {"CONVERSATIONS_TABLE": {"Ref": "ConversationsTable"}, "DOCUMENTS_BUCKET": {"Ref": "DocumentsBucket"},
                         "DOCUMENTS_TABLE": {"Ref": "DocumentsTable"}, "DOCUMENT_PIPELINE_ARN": {"Ref": "DocumentPipeline"}},
    "APIHandler": {"CONVERSATIONS_TABLE": {"Ref": "ConversationsTable"}, "WEBSOCKET_API_ID": {"Ref": "WebsocketAPI"}},
    # Only its bucket's notices start a pipeline (pipeline.start_for), which it then tells where the upload is.
    "DocumentUploads": {"DOCUMENTS_BUCKET": {"Ref": "DocumentsBucket"}, "DOCUMENTS_TABLE": {"Ref": "DocumentsTable"},
                        "DOCUMENT_PIPELINE_ARN": {"Ref": "DocumentPipeline"}},
    "DocumentNotices": {"DOCUMENTS_TABLE": {"Ref": "DocumentsTable"}, "WEBSOCKET_API_ID": {"Ref": "WebsocketAPI"}},
    "DocumentExtract": {"DOCUMENTS_BUCKET": {"Ref": "DocumentsBucket"}},
    "DocumentAnalyse": {"MODEL_ID": MODEL, "KNOWLEDGE_BASE_ID": KNOWLEDGE_BASE},  # the stage's backend, as the worker's
}


def test_every_function_is_wired_to_the_stacks_resources_and_parameters(templates):
    others = {variable for wiring in OWN_WIRING.values() for variable in wiring}
    for stage, template in templates.items():
        for logical_id in FUNCTIONS.values():
            env = _environment(template, logical_id)
            assert {k: env[k] for k in WIRING} == WIRING
            own = OWN_WIRING.get(logical_id, {})
            assert {k: env[k] for k in own} == own and not (others - set(own)) & set(env), logical_id
            assert env["STAGE"] == stage  # BACKEND follows the Backend parameter, not the stage's config
            assert env["LOG_CONTENT"] == "false"
            # Never a plain-text secret; the management endpoint is derived from the event on AWS.
            assert "JWT_SECRET" not in env and "MANAGEMENT_ENDPOINT_URL" not in env
            # What only Chalice reads, deploying (the event sources' names): never a function's 4 KB.
            assert not set(stack.EVENT_SOURCE_OUTPUTS) & set(env), logical_id


def test_every_table_and_queue_the_settings_read_is_wired(templates):
    from dataclasses import fields

    from chalicelib.settings import Settings

    variables = {name for setting in fields(Settings) for name in setting.metadata["env"]}
    resource_settings = {name for name in variables if name.endswith(("_TABLE", "_QUEUE_URL"))}
    assert {"CONNECTIONS_TABLE", "TURNS_TABLE", "TURN_QUEUE_URL"} <= resource_settings
    env = {k: v for logical_id in FUNCTIONS.values() for k, v in _environment(templates["dev"], logical_id).items()}
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
    for name in ("Backend", "AgentId", "AgentAliasId", "AgentMemory", "ModelId", "InferenceProfile", "InferenceProfileModelArns",
                 "SystemPrompt", "MaxTokens", "Latency", "AgentRuntimeArn", "AgentRuntimeQualifier",
                 "JwtIssuer", "JwtAudience", "JwtJwksUrl", "JwtSecretParameter"):
        assert name in parameters
    from chalicelib.settings import BACKENDS as APP_BACKENDS

    assert parameters["Backend"]["AllowedValues"] == list(APP_BACKENDS)
    # No default: a deployer must choose, since Agents Classic (agent) is closed to new AWS customers.
    assert "Default" not in parameters["Backend"] and "closed to new AWS customers" in parameters["Backend"]["Description"]
    assert parameters["AgentMemory"]["AllowedValues"] == ["true", "false"]
    assert parameters["Latency"]["AllowedValues"] == ["", "standard", "optimized"]  # what the settings accept
    # Each backend's target is optional in the template and required by a Rule when that backend is chosen.
    for name in ("AgentId", "AgentAliasId", "ModelId", "InferenceProfile", "AgentRuntimeArn"):
        assert parameters[name]["Default"] == "" and re.fullmatch(parameters[name]["AllowedPattern"], ""), name
    # The HS256 secret is referenced by name, never passed in.
    assert not [n for n in parameters if "Secret" in n and n not in ("JwtSecretParameter", "JwtSecretKmsKeyArn")]


# ---- least privilege


ALLOWED_WILDCARD_SUFFIXES = (
    "/<Stage>/POST/@connections/*",  # a connection id: known only at run time
    "/<Stage>/DELETE/@connections/*",  # ... (the worker closes a connection that refuses its posts)
    ":*",  # a log group's log streams
)
# The documents bucket's objects: an upload's key and its chunks' are made at run time, under these prefixes.
BUCKET_PREFIXES = ("uploads/*", "kb/*")


def _identity_policies(template: Dict[str, Any]):
    for name, role in resources_of_type(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for policy in role["Properties"]["Policies"]:
            yield name, policy["PolicyDocument"]


def test_each_function_has_its_own_role_and_no_other_iam(templates):
    for template in templates.values():
        iam = {name for name, r in template["Resources"].items() if r["Type"].startswith("AWS::IAM::")}
        assert iam == {stack.role_id(function) for function in FUNCTIONS} | set(SERVICE_ROLES)
        for function, logical_id in FUNCTIONS.items():
            assert template["Resources"][logical_id]["Properties"]["Role"] == {"Fn::GetAtt": [stack.role_id(function), "Arn"]}


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
        if re.fullmatch(r"<[A-Za-z]+\.(Arn|IndexArn)>(/index/[A-Za-z]+)?", resource):
            continue  # a resource of this stack (or a table's index)
        if re.fullmatch(r"<DocumentsBucket\.Arn>/(%s)" % "|".join(re.escape(p) for p in BUCKET_PREFIXES), resource):
            continue  # the documents bucket's objects under one prefix
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
    documents = {function: document for function, (_, document) in stack.policy_documents("dev").items()}
    for role in SERVICE_ROLES:
        (policy,) = stack.stage_resources()["Resources"][role]["Properties"]["Policies"]
        documents[role] = policy["PolicyDocument"]
    assert "DocumentPipelineRole" in documents
    for function, document in documents.items():
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


def test_only_the_answerers_invoke_bedrock_and_read_the_prompt_only_the_token_checkers_read_the_secret(templates):
    actions: Dict[str, set] = {}
    for role, document in _identity_policies(templates["dev"]):
        actions[role] = {a for s in statements(document) for a in as_list(s["Action"])}
    # The stage's backend answers turns (the worker) and analyses documents (the pipeline's Analyse step).
    answerers = ["DocumentAnalyseRole", "TurnWorkerRole"]
    for bedrock in ("bedrock:InvokeAgent", "bedrock:InvokeModelWithResponseStream", "bedrock-agentcore:InvokeAgentRuntime"):
        assert sorted(r for r, a in actions.items() if bedrock in a) == answerers, bedrock
    assert sorted(r for r, a in actions.items() if "bedrock:Retrieve" in a) == answerers  # converse: the asker's passages
    # The knowledge base embeds with its model; the pipeline syncs it; nobody else touches Bedrock.
    assert sorted(r for r, a in actions.items() if any(a.startswith(("bedrock:", "bedrock-agentcore:")) for a in a)) == sorted(
        answerers + list(SERVICE_ROLES))
    assert {a for a in actions["KnowledgeBaseRole"] if a.startswith("bedrock:")} == {"bedrock:InvokeModel"}
    assert {a for a in actions["DocumentPipelineRole"] if a.startswith("bedrock:")} == {"bedrock:StartIngestionJob",
                                                                                          "bedrock:GetIngestionJob"}
    # SSM: the sign-in secret for the token checkers ($connect and the REST API's authorizer), the
    # system prompt for the answerers (each its own parameter); the REST routes trust the authorizer.
    assert sorted(r for r, a in actions.items() if "ssm:GetParameter" in a) == ["DocumentAnalyseRole", "RestAuthorizerRole",
                                                                                 "TurnWorkerRole", "WebsocketConnectRole"]
    assert sorted(r for r, a in actions.items() if "sqs:SendMessage" in a) == ["ApiHandlerRole", "WebsocketMessageRole"]
    assert sorted(r for r, a in actions.items() if "sqs:ReceiveMessage" in a) == ["DocumentUploadsRole", "TurnWorkerRole"]
    # Only the uploads' consumer and the $default route (a deletion re-syncs) start the pipeline.
    assert sorted(r for r, a in actions.items() if "states:StartExecution" in a) == ["DocumentUploadsRole", "WebsocketMessageRole"]
    assert actions["WebsocketDisconnectRole"] == {"logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:DeleteItem"}


def test_the_documents_bucket_is_reached_only_under_its_prefixes(templates):
    """Uploads are signed, read and deleted under uploads/; chunks written, read, listed and deleted under kb/."""
    expected = {
        "WebsocketMessageRole": {("s3:PutObject", "uploads/*"), ("s3:DeleteObject", "uploads/*"), ("s3:DeleteObject", "kb/*"),
                                 ("s3:ListBucket", "uploads/*"), ("s3:ListBucket", "kb/*")},
        "DocumentExtractRole": {("s3:GetObject", "uploads/*"), ("s3:PutObject", "kb/*"), ("s3:DeleteObject", "kb/*"),
                                ("s3:ListBucket", "kb/*")},
        "DocumentAnalyseRole": {("s3:GetObject", "kb/*"), ("s3:ListBucket", "kb/*")},
        "KnowledgeBaseRole": {("s3:GetObject", "kb/*"), ("s3:ListBucket", "kb/*")},
    }
    for template in templates.values():
        found: Dict[str, set] = {}
        for role, document in _identity_policies(template):
            for statement in statements(document):
                for action in as_list(statement["Action"]):
                    if not action.startswith("s3:"):
                        continue
                    for resource in as_list(statement["Resource"]):
                        if action == "s3:ListBucket":  # the bucket, listed only under its prefixes
                            assert resource == {"Fn::GetAtt": ["DocumentsBucket", "Arn"]}, role
                            prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
                        else:
                            prefixes = [resource["Fn::Sub"].split("${DocumentsBucket.Arn}/", 1)[1]]
                        found.setdefault(role, set()).update((action, prefix) for prefix in prefixes)
        assert found == expected


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
    on = _resolved_policies("dev", {**BACKENDS["agent"], "TurnEventBus": "billing"})["TurnWorkerRole"]
    (put,) = [s for s in on["Statement"] if s["Sid"] == "PublishTurnEvents"]
    assert put["Resource"] == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/billing"
    off = _resolved_policies("dev", {**BACKENDS["agent"], "TurnEventBus": ""})["TurnWorkerRole"]
    assert not [s for s in off["Statement"] if "events:PutEvents" in as_list(s["Action"])]


def test_make_package_runs_this_packaging(tmp_path):
    result = subprocess.run(
        ["make", "-n", "package", "STAGE=prod", f"STAMP={tmp_path}/stamp"],
        cwd=stack.ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "-m infra.stack package --stage prod --out build/package" in result.stdout
    assert "--runtime" not in result.stdout  # the default: infra/chalice_cli.py's DEFAULT_RUNTIME


def test_make_package_and_make_deploy_pass_the_runtime_chosen(tmp_path):
    for target, command in (("package", "-m infra.stack package --stage dev --out build/package --runtime python3.12"),
                            ("deploy", "-m infra.deploy deploy --stage dev --runtime python3.12")):
        result = subprocess.run(["make", "-n", target, "RUNTIME=python3.12", f"STAMP={tmp_path}/stamp"],
                                cwd=stack.ROOT, capture_output=True, text=True)
        assert result.returncode == 0 and command in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_the_merge_template_only_adds_to_what_chalice_generates(stage, templates):
    """Every resource merge.json touches must be one Chalice generated, or a misspelt id adds a stub."""
    merge = stack.load_json(stack.APP_TEMPLATE)["Resources"]
    for logical_id in merge:
        assert "Type" in templates[stage]["Resources"][logical_id], logical_id


def test_the_packaged_stack_carries_the_data_stack_unchanged(templates):
    """Tables (TTL, recovery), queues (redrive), alarms, the page and outputs: as tests/deploy/test_data_stack.py
    and test_page.py check them."""
    data = stack.stage_resources()  # data.json with page.json merged over it
    for template in templates.values():
        for section in ("Resources", "Outputs", "Conditions"):
            for name, value in data[section].items():
                assert template[section][name] == value, f"{section}.{name}"
        for name, value in data["Parameters"].items():
            if name not in ("Stage", "LogRetentionInDays"):  # both fixed to the packaged stage's
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

    # Chalice serves every route (view) with one function, api_handler, whose handler is the app itself.
    views = {entry.view_name for methods in app.app.routes.values() for entry in methods.values()}
    assert views == {"create_turn", "get_turn", "cancel_turn", "answer", "list_conversations", "get_conversation"}
    assert sorted(stack.functions()) == sorted(set(app.app.handler_map) - views | {stack.API_HANDLER}) == sorted(FUNCTIONS)
    assert [auth.name for auth in app.app.builtin_auth_handlers] == [stack.REST_AUTHORIZER]
    for template in templates.values():
        functions = {r["Properties"]["Handler"] for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"}
        assert functions == {"app.app" if name == stack.API_HANDLER else f"app.{name}" for name in FUNCTIONS}


# ---- each backend: only its own grants


def _resolved_policies(stage: str, parameters: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """Each role's policy as CloudFormation (moto's) resolves it for these parameter values, on the
    stack ``make deploy`` creates: its roles hold the same documents as the packaged template's
    (test_both_paths_give_each_function_its_policy_file_verbatim). This stack's tables and queues
    show as markers (``<HistoryTable.Arn>``), as they are named only once deployed, and so does its
    knowledge base's id (``<KnowledgeBase>``).
    """
    values = stack.resolve_parameters(stage, parameters)  # sign-in: the stack's own user pool, the default
    outputs, policies = resolved_stack(values, stage=stage)
    text = json.dumps(policies).replace(f"knowledge-base/{outputs['DocumentsKnowledgeBaseId']}", "knowledge-base/<KnowledgeBase>")
    text = text.replace(f"arn:aws:s3:::{outputs['DocumentsBucketName']}", "<DocumentsBucket.Arn>")  # named after its stack's id
    for resource in stack.stage_resources()["Resources"]:
        if f"{resource}Arn" in outputs:
            text = text.replace(f'"{outputs[f"{resource}Arn"]}"', f'"<{resource}.Arn>"')
            text = text.replace(f'"{outputs[f"{resource}Arn"]}/index/', f'"<{resource}.Arn>/index/')  # its indexes
    return json.loads(text)


def test_both_paths_give_each_function_its_policy_file_verbatim(templates):
    for stage, template in templates.items():
        deploy_path = stack.deploy_template(stage)
        for function, (_, document) in stack.policy_documents(stage).items():
            role = stack.role_id(function)
            for path in (template, deploy_path):
                (policy,) = path["Resources"][role]["Properties"]["Policies"]
                assert policy["PolicyDocument"] == document, (stage, role)


PROFILE_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{US_SONNET_PROFILE}"
ENDPOINT = f"{RUNTIME_ARN}/runtime-endpoint"
KNOWLEDGE_BASE_ARN = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:knowledge-base/<KnowledgeBase>"
RETRIEVE = (["bedrock:Retrieve"], [KNOWLEDGE_BASE_ARN], None)  # converse: the asker's passages, before the prompt
BACKEND_GRANTS = {  # Sid: (actions, resources, condition)
    "agent": {
        "InvokeTheAgent": (["bedrock:InvokeAgent"], [f"arn:aws:bedrock:{REGION}:{ACCOUNT}:agent-alias/AGENT12345/ALIAS12345"], None),
    },
    "converse-model": {
        "ReadSystemPrompt": (["ssm:GetParameter"], [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/agentstream/<Stage>/system-prompt"], None),
        "InvokeTheModel": (["bedrock:InvokeModelWithResponseStream"],
                           [f"arn:aws:bedrock:{REGION}::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"], None),
        "KeepConversations": (["dynamodb:GetItem", "dynamodb:PutItem"], ["<HistoryTable.Arn>"], None),
        "RetrieveDocuments": RETRIEVE,
    },
    "converse-profile": {
        "InvokeTheModel": (["bedrock:InvokeModelWithResponseStream"], [PROFILE_ARN], None),
        "InvokeTheProfilesModels": (["bedrock:InvokeModelWithResponseStream"], list(US_SONNET_MODELS),
                                    {"StringEquals": {"bedrock:InferenceProfileArn": PROFILE_ARN}}),
        "KeepConversations": (["dynamodb:GetItem", "dynamodb:PutItem"], ["<HistoryTable.Arn>"], None),
        "RetrieveDocuments": RETRIEVE,
    },
    "converse-application-profile": {
        "ReadSystemPrompt": (["ssm:GetParameter"], [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/agentstream/<Stage>/system-prompt"], None),
        "InvokeTheModel": (["bedrock:InvokeModelWithResponseStream"], [APPLICATION_PROFILE], None),
        "InvokeTheProfilesModels": (["bedrock:InvokeModelWithResponseStream"], list(US_SONNET_MODELS),
                                    {"StringEquals": {"bedrock:InferenceProfileArn": APPLICATION_PROFILE}}),
        "KeepConversations": (["dynamodb:GetItem", "dynamodb:PutItem"], ["<HistoryTable.Arn>"], None),
        "RetrieveDocuments": RETRIEVE,
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
# The pipeline's Analyse step asks the same backend (runtime.backend): the same grants as the worker's.
SHARED_ANALYSER_SIDS = {"WriteOwnLogs", "ReadTheChunks", "ListTheChunks"}
ANSWERERS = {"TurnWorkerRole": SHARED_WORKER_SIDS, "DocumentAnalyseRole": SHARED_ANALYSER_SIDS}


def test_every_backend_scenario_is_checked():
    assert set(BACKEND_GRANTS) == set(BACKENDS)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_each_backend_gets_only_its_own_grants(backend, templates):
    """The roles' policies, resolved by CloudFormation for each Backend: the worker and the Analyse step get
    that backend's grants and no other's."""
    for stage in templates:
        policies = _resolved_policies(stage, BACKENDS[backend])
        for role, shared in ANSWERERS.items():
            granted = {s["Sid"]: s for s in policies[role]["Statement"]}
            own = {sid: statement for sid, statement in granted.items() if sid not in shared}
            assert sorted(own) == sorted(BACKEND_GRANTS[backend]), (stage, backend, role)
            for sid, (actions, resources, condition) in BACKEND_GRANTS[backend].items():
                assert as_list(own[sid]["Action"]) == actions, sid
                assert as_list(own[sid]["Resource"]) == [r.replace("<Stage>", stage) for r in resources], sid
                assert own[sid].get("Condition") == condition, sid
        # Nothing else moves with the backend: the other roles are the same under every backend.
        assert {role: p for role, p in policies.items() if role not in ANSWERERS} == {
            role: p for role, p in _resolved_policies(stage, BACKENDS["agent"]).items() if role not in ANSWERERS
        }


# ---- the WebSocket stage's access log (docs/deploy.md, "Access logs")

# $context variables API Gateway supports in a WebSocket API's access log format (Developer Guide,
# "Configure logging for WebSocket APIs in API Gateway"); requestId must be among them ("Set up CloudWatch logging").
WEBSOCKET_LOG_VARIABLES = {
    "apiId", "connectedAt", "connectionId", "domainName", "error.message", "error.messageString", "error.responseType",
    "eventType", "extendedRequestId", "identity.sourceIp", "identity.userAgent", "integration.error",
    "integration.integrationStatus", "integration.latency", "integration.requestId", "integration.status",
    "integrationLatency", "messageId", "requestId", "requestTime", "requestTimeEpoch", "routeKey", "stage", "status",
}


@pytest.mark.parametrize("logging", ["true", "false"])
def test_the_websocket_stage_logs_access_only_when_asked(logging, templates):
    """AccessLogSettings resolved both ways: with WebsocketAccessLogging=true the stage logs one JSON line per
    event to the data stack's log group; with false (the default) it has no AccessLogSettings at all."""
    for stage, template in templates.items():
        assert template["Parameters"]["WebsocketAccessLogging"]["Default"] == "false"
        condition, when_true, when_false = template["Resources"]["WebsocketAPIStage"]["Properties"]["AccessLogSettings"]["Fn::If"]
        # The log group and its output exist under the very same condition.
        assert template["Resources"]["WebsocketAccessLogGroup"]["Condition"] == condition
        assert template["Outputs"]["WebsocketAccessLogGroupArn"]["Condition"] == condition
        holds = stack.rule_holds(template["Conditions"][condition], {"WebsocketAccessLogging": logging})
        settings = when_true if holds else when_false
        if logging == "false":
            assert settings == {"Ref": "AWS::NoValue"}, stage
            continue
        assert settings["DestinationArn"] == {"Fn::GetAtt": ["WebsocketAccessLogGroup", "Arn"]}
        variables = re.findall(r"\$context\.([A-Za-z.]+)", settings["Format"])
        assert "requestId" in variables and set(variables) <= WEBSOCKET_LOG_VARIABLES, set(variables) - WEBSOCKET_LOG_VARIABLES
        line = json.loads(re.sub(r"\$context\.[A-Za-z.]+", "value", settings["Format"]))  # one JSON object per event
        assert {"requestId", "connectionId", "eventType", "routeKey", "status", "error", "ip"} <= set(line)
        assert "\n" not in settings["Format"] and "$input" not in settings["Format"]  # only $context; never message content


def test_every_log_group_of_the_packaged_stage_keeps_the_stages_retention(templates):
    for stage, template in templates.items():
        days = stack.chalice_config(stage).log_retention_in_days
        spec = template["Parameters"]["LogRetentionInDays"]
        assert (spec["Default"], spec["AllowedValues"]) == (days, [days]), stage  # not a choice: the stage's
        for name, group in resources_of_type(template, "AWS::Logs::LogGroup").items():
            assert group["Properties"]["RetentionInDays"] in (days, {"Ref": "LogRetentionInDays"}), name


def _zipped_size(path, within: str = "") -> int:
    """Bytes a zip's entries take compressed, bytecode left out (it ships only when a Python of the
    runtime's version built it), optionally only the entries whose path contains ``within``."""
    with zipfile.ZipFile(path) as archive:
        return sum(i.compress_size for i in archive.infolist() if not i.filename.endswith(".pyc") and within in i.filename)


def _unpacked_size(path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(i.file_size for i in archive.infolist() if not i.filename.endswith(".pyc"))


def test_the_sizes_docs_deploy_md_quotes_are_the_measured_ones(packaged):
    """An "about" in docs/deploy.md's Path 1 is within 20% of what make package writes."""
    text = (stack.ROOT / "docs" / "deploy.md").read_text()
    quoted = {
        "app": int(re.search(r"`deployment.zip`: the app's code only, about (\d+) KB", text)[1]) * 1024,
        "layer": int(re.search(r"fastjsonschema\), about (\d+) MB before bytecode", text)[1]) * 2**20,
        "unpacked": int(re.search(r"MB before bytecode \((\d+) MB unpacked\)", text)[1]) * 2**20,
        "sdk": int(re.search(r"the SDK \(boto3, botocore, s3transfer, jmespath\) is about (\d+) MB", text)[1]) * 2**20,
    }
    app, layer = packaged["dev"] / "deployment.zip", packaged["dev"] / "layer-deployment.zip"
    sdk = sum(_zipped_size(layer, f"site-packages/{name}/") for name in ("boto3", "botocore", "s3transfer", "jmespath"))
    measured = {"app": _zipped_size(app), "layer": _zipped_size(layer), "unpacked": _unpacked_size(layer), "sdk": sdk}
    for what, size in measured.items():
        assert abs(quoted[what] - size) <= 0.2 * size, f"docs/deploy.md says {quoted[what]:,} bytes for the {what}; it is {size:,}"
