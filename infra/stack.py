"""The agentstream stack, offline: compose the templates, package the app, render the deploy project.

One source of truth serves both ways onto AWS:

* ``infra/data.json``: tables, queues, alarms. Merged into the packaged stack, provisioned locally
  by devserver, and the base of the stack that precedes ``chalice deploy`` (``deploy_template``).
* ``infra/page.json``: the chat page on the stage's own URL: a private bucket served by CloudFront
  with origin access control and a response headers policy whose Content-Security-Policy names the
  stage's WebSocket API and sign-in domain (so it refers to ``WebsocketAPI``, which the packaged
  stack's Chalice resources and the deploy stack's parameter both define), and the page's URL added
  to the app client's callback and sign-out URLs. Merged over ``data.json`` into both stacks.
* ``infra/documents.json``: the documents pipeline (docs/documents.md): the uploads bucket and its
  notification queue, the documents table, the topic each status goes to, the state machine whose
  definition is ``infra/documents.asl.json`` (set here, ``stage_resources``: that file alone holds it)
  and the knowledge base (the stack's own on S3 Vectors, or one brought by parameters). Merged over
  ``data.json`` into both stacks, like ``page.json``.
* ``infra/merge.json``: the app's side of the packaged stack: parameters, environment wiring,
  function names, the SQS event source's partial batch failures, API throttling, outputs.
* ``.chalice/policy-<function>.json``: each function's IAM policy, written with CloudFormation
  intrinsics (``Fn::Sub``, ``Fn::GetAtt``, ``Fn::If``). Chalice copies them verbatim into the
  packaged template, where CloudFormation resolves them. For ``chalice deploy`` the same documents
  go verbatim into roles of the stack ``make deploy`` creates first, so CloudFormation resolves
  them there too, and Chalice is handed the roles (``manage_iam_role: false``).

``python -m infra.stack package --stage dev --out build/package`` is what ``make package`` runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from infra.bytecode import add_bytecode, interpreter_for
from infra.chalice_cli import DEFAULT_RUNTIME, UnsupportedRuntime, check_runtime

ROOT = Path(__file__).resolve().parent.parent
DATA_TEMPLATE = ROOT / "infra" / "data.json"
APP_TEMPLATE = ROOT / "infra" / "merge.json"
PAGE_TEMPLATE = ROOT / "infra" / "page.json"
DOCUMENTS_TEMPLATE = ROOT / "infra" / "documents.json"
# The document pipeline's state machine (Amazon States Language), its ${...} filled in by the
# resource's DefinitionSubstitutions; docs/documents.md draws it (infra/asl_diagram.py).
PIPELINE_DEFINITION = ROOT / "infra" / "documents.asl.json"
PIPELINE = "DocumentPipeline"
APP_NAME = "agentstream"
# The packaged stack's first output: what a client connects to.
URL_OUTPUT = "WebsocketConnectEndpointURL"
# Chalice's output for the REST API's URL (https://<id>.execute-api.<region>.amazonaws.com/<stage>/).
REST_URL_OUTPUT = "EndpointURL"
# What a deploy project holds besides .chalice/: exactly what Chalice packages.
APP_SOURCES = ("app.py", "chalicelib", "requirements.txt")


def load_json(path: Path) -> Dict[str, Any]:
    return json.loads(Path(path).read_text())


def serialize(document: Any) -> str:
    """JSON as Chalice writes it (2-space indent, trailing newline), so reviews diff cleanly."""
    return json.dumps(document, indent=2, separators=(",", ": ")) + "\n"


def data_stack_name(stage: str) -> str:
    return f"{APP_NAME}-{stage}-data"


# Chalice's function for the REST API's routes: named after the app and stage alone, ``APIHandler``
# in the packaged template.
API_HANDLER = "api_handler"


def function_name(stage: str, function: str) -> str:
    """The Lambda function's name on AWS, the same on both paths (Chalice's naming)."""
    return f"{APP_NAME}-{stage}" if function == API_HANDLER else f"{APP_NAME}-{stage}-{function}"


# ---------------------------------------------------------------------------------------------
# Chalice configuration


def chalice_config(stage: str, function: Optional[str] = None, project_dir: Path = ROOT) -> Any:
    """Chalice's own view of ``.chalice/config.json`` for a stage (and function)."""
    from chalice.config import Config

    config_from_disk = load_json(Path(project_dir) / ".chalice" / "config.json")
    if stage not in config_from_disk.get("stages", {}):
        raise ValueError(f"stage {stage!r} is not in .chalice/config.json")
    kwargs: Dict[str, Any] = {"chalice_stage": stage, "config_from_disk": config_from_disk}
    if function is not None:
        kwargs["function_name"] = function
    return Config(**kwargs)


def log_retention_days(stage: str, project_dir: Path = ROOT) -> int:
    """The stage's ``log_retention_in_days``: Chalice gives it to the functions' log groups, and both
    deploy paths pass it as ``LogRetentionInDays`` to the stage's other log groups (the access log)."""
    days = chalice_config(stage, project_dir=project_dir).log_retention_in_days
    if not days:
        raise ParameterError(f"stage {stage!r} has no log_retention_in_days in .chalice/config.json: "
                             "its logs would be kept forever")
    return int(days)


def functions(project_dir: Path = ROOT) -> List[str]:
    """The app's Lambda functions, as configured (tests check these are the app's handlers)."""
    return list(load_json(Path(project_dir) / ".chalice" / "config.json")["lambda_functions"])


def policy_documents(stage: str, project_dir: Path = ROOT) -> Dict[str, Tuple[str, Dict[str, Any]]]:
    """``{function: (policy file name, document)}`` as Chalice will read them for ``stage``."""
    documents = {}
    for function in functions(project_dir):
        filename = chalice_config(stage, function, project_dir).iam_policy_file
        if not filename:
            raise ValueError(f"{function} has no iam_policy_file: every function needs its own policy")
        documents[function] = (filename, load_json(Path(project_dir) / ".chalice" / filename))
    return documents


# ---------------------------------------------------------------------------------------------
# Templates


def stage_resources() -> Dict[str, Any]:
    """``data.json`` with ``documents.json`` and ``page.json`` merged over it: every resource of the
    stage but the app's own, the document pipeline's state machine given its ``Definition`` from
    ``documents.asl.json``.

    Chalice's deep merge (dicts merge, lists and scalars of the first replace the second's), as it
    later merges the packaged template into its generated one. ``documents.json``'s own
    ``Description`` (of that file) is not the stack's.
    """
    from chalice.package import TemplateDeepMerger

    merger = TemplateDeepMerger()
    documents = load_json(DOCUMENTS_TEMPLATE)
    documents.pop("Description", None)
    documents["Resources"][PIPELINE]["Properties"]["Definition"] = load_json(PIPELINE_DEFINITION)
    return merger.merge(load_json(PAGE_TEMPLATE), merger.merge(documents, load_json(DATA_TEMPLATE)))


def merge_template(stage: str) -> Dict[str, Any]:
    """``stage_resources`` and ``merge.json`` as one template for ``chalice package --merge-template``.

    ``Stage`` is fixed to the stage being packaged: the template's function names and API stage
    are that stage's.
    """
    from chalice.package import TemplateDeepMerger

    from infra import openapi

    merged = TemplateDeepMerger().merge(load_json(APP_TEMPLATE), stage_resources())
    # The REST API's request validation, generated from the routes and the wire schema (infra/openapi.py),
    # and its integrations and authorizer naming their functions by name, not Fn::GetAtt: otherwise the
    # API depends on the functions, whose environment names the app client, whose callback is the page,
    # whose Content-Security-Policy names the API: a cycle CloudFormation refuses.
    body = openapi.validation()
    for operations in body["paths"].values():
        for operation in operations.values():
            operation["x-amazon-apigateway-integration"] = {"uri": {"Fn::Sub": REST_INTEGRATION_URI}}
    body["securityDefinitions"] = {
        REST_AUTHORIZER: {"x-amazon-apigateway-authorizer": {"authorizerUri": {"Fn::Sub": REST_AUTHORIZER_URI}}}}
    merged["Resources"]["RestAPI"] = {"Properties": {"DefinitionBody": body}}
    merged["Parameters"]["Stage"] = {
        **merged["Parameters"]["Stage"],
        "Default": stage,
        "AllowedValues": [stage],
        "Description": f"The Chalice stage this template was packaged for ({stage}).",
    }
    days = log_retention_days(stage)  # the functions' log groups get it from Chalice: the same for every log group
    merged["Parameters"]["LogRetentionInDays"] = {
        **merged["Parameters"]["LogRetentionInDays"],
        "Default": days,
        "AllowedValues": [days],
        "Description": f"Days the stage's log groups keep their logs: {stage}'s log_retention_in_days in .chalice/config.json.",
    }
    return merged


def parameter_specs() -> Dict[str, Dict[str, Any]]:
    """Every parameter of the packaged stack (the data stack's are a subset)."""
    return {**stage_resources().get("Parameters", {}), **load_json(APP_TEMPLATE).get("Parameters", {})}


class ParameterError(ValueError):
    """Deployment parameters that CloudFormation would reject."""


def resolve_parameters(stage: str, given: Mapping[str, str]) -> Dict[str, str]:
    """Defaults filled in and every value checked as CloudFormation checks it (patterns, Rules)."""
    specs = parameter_specs()
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ParameterError(f"unknown parameters: {', '.join(unknown)}")
    values: Dict[str, str] = {}
    problems: List[str] = []
    for name, spec in specs.items():
        value = str(stage) if name == "Stage" else given.get(name, spec.get("Default"))
        if value is None:
            problems.append(f"{name} is required: {spec.get('Description', '')}")
            continue
        value = str(value)
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"{name}={value!r} is not one of {spec['AllowedValues']}")
        # CloudFormation matches a CommaDelimitedList's pattern against each of its values.
        items = value.split(",") if spec.get("Type") == "CommaDelimitedList" else [value]
        for item in items:
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], item):
                # As CloudFormation: the parameter's ConstraintDescription, where it has one, says what to pass.
                problems.append(f"{name}={item!r} does not match: {spec.get('ConstraintDescription') or spec['AllowedPattern']}")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            problems.append(f"{name} is longer than {spec['MaxLength']} characters")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"{name}={value!r} is not a number")
            else:
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    problems.append(f"{name}={value} is below {spec['MinValue']}")
                if "MaxValue" in spec and number > float(spec["MaxValue"]):
                    problems.append(f"{name}={value} is above {spec['MaxValue']}")
        values[name] = value
    if not problems:
        rules = {**stage_resources().get("Rules", {}), **load_json(APP_TEMPLATE).get("Rules", {})}
        for rule in rules.values():
            for assertion in rule.get("Assertions", []):
                if not rule_holds(assertion["Assert"], values):
                    problems.append(assertion["AssertDescription"])
    if problems:
        raise ParameterError("; ".join(problems))
    return values


def rule_holds(assertion: Any, parameters: Mapping[str, str]) -> bool:
    """One of the templates' Rule assertions, for ``make deploy-check`` to refuse offline what
    CloudFormation refuses before creating anything.

    Rules may only use these functions, on parameters (CloudFormation's "Rule functions"), so this is
    all there is to read; both deploy paths still let CloudFormation itself enforce them.
    """

    def value(node: Any) -> Any:
        if isinstance(node, dict):
            ((function, argument),) = node.items()
            if function == "Ref":
                text = str(parameters[argument])
                return text.split(",") if is_list_parameter(argument) else text
            if function == "Fn::Equals":
                return value(argument[0]) == value(argument[1])
            if function == "Fn::Not":
                return not value(argument[0])
            if function == "Fn::And":
                return all(value(item) for item in argument)
            if function == "Fn::Or":
                return any(value(item) for item in argument)
            if function == "Fn::Contains":
                return value(argument[1]) in value(argument[0])
            raise ValueError(f"{function} is not a Rule function CloudFormation allows")
        return node

    return bool(value(assertion))


def is_list_parameter(parameter: str) -> bool:
    """A ``CommaDelimitedList`` parameter: its ``Ref`` is a list (``""`` is ``[""]``)."""
    return parameter_specs().get(parameter, {}).get("Type") == "CommaDelimitedList"


# ---------------------------------------------------------------------------------------------
# The chalice deploy path: CloudFormation resolves what Chalice's config can only take literally

# The API's id, a parameter of the deploy path's stack: the packaged stack's Chalice resource of the
# same name is what the policies' ``Ref``/``${WebsocketAPI}`` mean there. Empty until the API exists.
WEBSOCKET_API = "WebsocketAPI"
# The REST API's, likewise (what infra/page.json's Content-Security-Policy names).
REST_API = "RestAPI"
# How the packaged REST API invokes its functions, by name (as merge.json and Chalice name them).
_INVOCATIONS = ("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:%s/invocations")
REST_INTEGRATION_URI = _INVOCATIONS % "agentstream-${Stage}"
# The REST API's authorizer (``app.rest_authorizer``): its own function, which the API calls first.
REST_AUTHORIZER = "rest_authorizer"
REST_AUTHORIZER_URI = _INVOCATIONS % f"agentstream-${{Stage}}-{REST_AUTHORIZER}"
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def logical_id(function: str) -> str:
    """Chalice's logical id for a function (``turn_worker`` -> ``TurnWorker``), as in ``merge.json``."""
    if function == API_HANDLER:
        return "APIHandler"
    return "".join(part.capitalize() for part in function.split("_"))


def resource_prefix(function: str) -> str:
    """How Chalice names a function's other resources (``TurnWorkerRole``, ``TurnWorkerLogGroup``): its
    name in CamelCase, ``ApiHandler`` for the REST API's function (whose own logical id is ``APIHandler``)."""
    return "".join(part.capitalize() for part in function.split("_"))


def role_id(function: str) -> str:
    """Chalice's logical id for a function's role, which the deploy stack's role of it takes too."""
    return resource_prefix(function) + "Role"


def role_output(function: str) -> str:
    return f"{role_id(function)}Arn"


def environment_output(variable: str) -> str:
    """``TURN_QUEUE_URL`` -> ``EnvTurnQueueUrl``: an output's id may only hold letters and digits."""
    return "Env" + "".join(part.capitalize() for part in variable.split("_"))


# What app.py's event source decorators read when Chalice loads it to deploy it (make deploy's path:
# document_uploads' queue, document_notices' topic), from the deploy stack's outputs; on the packaged
# stack merge.json's Events name them. Only chalice deploy's own environment holds them, never a
# function's: every variable there counts against each function's 4 KB (infra/envsize.py).
EVENT_SOURCE_OUTPUTS = {"UPLOADS_QUEUE_ARN": "UploadsQueueArn", "DOCUMENTS_TOPIC": "DocumentsTopicName"}


def event_source_environment(outputs: Mapping[str, str]) -> Dict[str, str]:
    """``chalice deploy``'s environment for the event sources it wires (``EVENT_SOURCE_OUTPUTS``)."""
    return {variable: outputs[output] for variable, output in EVENT_SOURCE_OUTPUTS.items() if outputs.get(output)}


def app_environment_expressions() -> Dict[str, Any]:
    """The environment ``merge.json`` gives every function, as written (intrinsics unresolved)."""
    return dict(load_json(APP_TEMPLATE)["Globals"]["Function"]["Environment"]["Variables"])


def function_environment_expressions(function: str) -> Dict[str, Any]:
    """What ``merge.json`` gives one function besides (a variable only it needs, e.g. the REST API's
    ``WEBSOCKET_API_ID``): every byte counts against each function's 4 KB (infra/envsize.py)."""
    resource = load_json(APP_TEMPLATE)["Resources"].get(logical_id(function), {})
    return dict(resource.get("Properties", {}).get("Environment", {}).get("Variables", {}))


def all_environment_expressions(project_dir: Path = ROOT) -> Dict[str, Any]:
    """Every variable ``merge.json`` gives any function: what one process running all of them needs."""
    variables = app_environment_expressions()
    for function in functions(project_dir):
        for variable, value in function_environment_expressions(function).items():
            if variables.setdefault(variable, value) != value:
                raise ValueError(f"{variable} is given different values in infra/merge.json")
    return variables


def deploy_template(stage: str, project_dir: Path = ROOT) -> Dict[str, Any]:
    """The stack ``make deploy`` creates before ``chalice deploy``: ``data.json`` plus what Chalice's
    config cannot express, for CloudFormation to resolve rather than this project.

    Composed, never rewritten: one role per function holding its ``.chalice`` policy document
    verbatim, the app's parameters, conditions and Rules from ``merge.json``, and as outputs each
    role's ARN and each of the app's environment variables (``merge.json`` Globals, verbatim).
    """
    data, app = stage_resources(), load_json(APP_TEMPLATE)
    template = json.loads(json.dumps(data))
    template["Description"] = f"agentstream {stage}: data, sign-in, the page and the functions' roles (make deploy)"
    template["Parameters"] = {
        **app["Parameters"],
        **data["Parameters"],
        WEBSOCKET_API: {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^[a-z0-9]{10}$",
            "Description": "The WebSocket API's id once chalice deploy created it; empty before (the functions' "
            "@connections grants then match no API).",
        },
        REST_API: {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^[a-z0-9]{10}$",
            "Description": "The REST API's id once chalice deploy created it; empty before (the page may not "
            "call it until then).",
        },
    }
    template["Conditions"] = {**data.get("Conditions", {}), **app.get("Conditions", {})}
    template["Rules"] = {**data.get("Rules", {}), **app.get("Rules", {})}
    for function, (_, document) in policy_documents(stage, project_dir).items():
        role = role_id(function)
        template["Resources"][role] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": LAMBDA_TRUST,
                "Policies": [{"PolicyName": function, "PolicyDocument": document}],
            },
        }
        template["Outputs"][role_output(function)] = {"Value": {"Fn::GetAtt": [role, "Arn"]}}
    for variable, value in all_environment_expressions(project_dir).items():
        template["Outputs"][environment_output(variable)] = {"Description": variable, "Value": value}
    return _without_unused(template)


def _without_unused(template: Dict[str, Any]) -> Dict[str, Any]:
    """``template`` less the app's parameters and conditions nothing in it uses (those only
    ``chalice deploy`` or ``finish`` apply, e.g. the API's throttling), so CloudFormation and cfn-lint
    see no dead input."""
    def names(node: Any) -> set:
        found: set = set()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and isinstance(value, str):
                    found.add(value)
                elif key == "Fn::Sub":
                    text = value if isinstance(value, str) else value[0]
                    found |= set(re.findall(r"\$\{([A-Za-z0-9:]+)", text))
                elif key == "Condition" and isinstance(value, str):
                    found.add(value)
                elif key == "Fn::If":
                    found.add(value[0])
                found |= names(value)
        elif isinstance(node, list):
            for item in node:
                found |= names(item)
        return found

    used = names([template["Resources"], template["Outputs"], template["Rules"]])
    conditions = template["Conditions"]
    while True:  # conditions use conditions and parameters
        reached = used | names([conditions[name] for name in used if name in conditions])
        if reached == used:
            break
        used = reached
    template["Conditions"] = {name: body for name, body in conditions.items() if name in used}
    template["Parameters"] = {name: spec for name, spec in template["Parameters"].items() if name in used}
    return template


def prepare_project(stage: str, dest: Path, project_dir: Path = ROOT) -> Path:
    """A Chalice project at ``dest`` with the app's sources and this repository's ``config.json``.

    Deployed state (``.chalice/deployed``) and Chalice's package cache stay in the real project,
    linked from ``dest``, so ``chalice deploy`` and ``chalice delete`` keep track of what exists
    however often ``dest`` is rewritten (or ``build/`` removed).
    """
    project_dir, dest = Path(project_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in APP_SOURCES:
        source, target = project_dir / name, dest / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    chalice_dir = dest / ".chalice"
    chalice_dir.mkdir(exist_ok=True)
    for child in chalice_dir.iterdir():
        if child.name not in ("deployed", "deployments"):
            child.unlink()
    for shared in ("deployed", "deployments"):
        target = (project_dir / ".chalice" / shared).resolve()
        target.mkdir(parents=True, exist_ok=True)
        link = chalice_dir / shared
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    shutil.copy2(project_dir / ".chalice" / "config.json", chalice_dir / "config.json")
    return dest


def render_project(
    stage: str, outputs: Mapping[str, str], dest: Path, project_dir: Path = ROOT,
    reserved: Optional[Mapping[str, int]] = None,
) -> Path:
    """A project for ``chalice deploy`` wired by the deploy stack's ``outputs``: each function runs
    with the role that stack made for it (``manage_iam_role: false``) and the environment it
    resolved; ``reserved`` gives functions reserved concurrency (the others get none).
    """
    chalice_dir = prepare_project(stage, dest, project_dir) / ".chalice"
    config = load_json(chalice_dir / "config.json")
    stage_config = config["stages"][stage]
    shared = {variable: outputs.get(environment_output(variable), "") for variable in app_environment_expressions()}
    stage_config["environment_variables"] = {**stage_config.get("environment_variables", {}), **shared}
    stage_config["manage_iam_role"] = False
    # Chalice wants a stage-wide role too; every function names its own, so none runs with this one.
    stage_config["iam_role_arn"] = outputs[role_output(functions(project_dir)[0])]
    per_function = stage_config.setdefault("lambda_functions", {})
    for function in functions(project_dir):
        settings = per_function.setdefault(function, {})
        settings["iam_role_arn"] = outputs[role_output(function)]
        own = {variable: outputs.get(environment_output(variable), "") for variable in function_environment_expressions(function)}
        if own:
            settings["environment_variables"] = {**settings.get("environment_variables", {}), **own}
        if reserved and function in reserved:
            settings["reserved_concurrency"] = reserved[function]
    (chalice_dir / "config.json").write_text(serialize(config))
    return dest


def environment_from_outputs(outputs: Mapping[str, str]) -> Dict[str, str]:
    """The app's whole environment as the deploy stack resolved it, every function's variables (an
    empty value has no ``OutputValue``): for one process that runs them all."""
    return {variable: outputs.get(environment_output(variable), "") for variable in all_environment_expressions()}


def deployed_websocket_api_id(stage: str, project_dir: Path = ROOT) -> Optional[str]:
    """The WebSocket API id ``chalice deploy`` recorded for ``stage``, if it deployed one."""
    return _deployed_id(stage, "websocket_api", project_dir)


def deployed_rest_api_id(stage: str, project_dir: Path = ROOT) -> Optional[str]:
    """The REST API id ``chalice deploy`` recorded for ``stage``, if it deployed one."""
    return _deployed_id(stage, "rest_api", project_dir)


def _deployed_id(stage: str, kind: str, project_dir: Path) -> Optional[str]:
    path = Path(project_dir) / ".chalice" / "deployed" / f"{stage}.json"
    if not path.exists():
        return None
    for resource in load_json(path).get("resources", []):
        if resource.get("resource_type") == kind:
            return resource.get(f"{kind}_id")
    return None


# ---------------------------------------------------------------------------------------------
# Packaging


def chalice_command(runtime: str = DEFAULT_RUNTIME) -> List[str]:
    """The chalice CLI of the Python running this (the project's virtualenv), fixed to a Lambda runtime.

    Through ``infra/chalice_cli.py``: Chalice alone would pick the runtime of the Python running it.
    Run as a file, so it works from any directory. UnsupportedRuntime for a runtime not packaged for.
    """
    return [sys.executable, str(ROOT / "infra" / "chalice_cli.py"), "--runtime", check_runtime(runtime)]


def chalice_env(region: Optional[str] = None) -> Dict[str, str]:
    env = dict(os.environ)
    # Packaging only needs a Region to name the Lambda service principal (partition-wide).
    env["AWS_DEFAULT_REGION"] = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return env


def package(
    stage: str, out_dir: Path, project_dir: Path = ROOT, region: Optional[str] = None, runtime: str = DEFAULT_RUNTIME
) -> Path:
    """``chalice package`` for ``runtime`` with the merged templates, plus that runtime's bytecode.

    Returns the path of ``sam.json``. An unsupported runtime is refused before anything is written.
    """
    command = chalice_command(runtime)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        merge_path = Path(scratch) / f"merge-{stage}.json"
        merge_path.write_text(serialize(merge_template(stage)))
        command += [
            "--project-dir", str(project_dir),
            "package", "--stage", stage, "--merge-template", str(merge_path), str(out_dir),
        ]
        subprocess.run(command, check=True, env=chalice_env(region))
    python = interpreter_for(runtime)  # bytecode is version-specific: compiled by the runtime's Python or not at all
    if python:
        for archive in sorted(out_dir.glob("*.zip")):
            add_bytecode(archive, python)
    else:
        print(f"No {runtime} interpreter (this is Python {sys.version_info.major}.{sys.version_info.minor}, and no "
              f"working {runtime} on PATH): the zips carry no bytecode, so each cold start compiles what it imports.",
              file=sys.stderr)
    sam = out_dir / "sam.json"
    template = load_json(sam)
    outputs = template.get("Outputs", {})
    if URL_OUTPUT in outputs:
        template["Outputs"] = {URL_OUTPUT: outputs[URL_OUTPUT], **outputs}
        template["Outputs"][URL_OUTPUT]["Description"] = "Connect here: wss://.../<stage>/?token=<JWT>"
    sam.write_text(serialize(template))
    return sam


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pkg = commands.add_parser("package", help="chalice package with the merged templates")
    pkg.add_argument("--stage", required=True)
    pkg.add_argument("--out", required=True, type=Path)
    pkg.add_argument("--region")
    pkg.add_argument("--runtime", default=DEFAULT_RUNTIME, help=f"the Lambda runtime (default {DEFAULT_RUNTIME})")
    merge = commands.add_parser("merge-template", help="print the template chalice package merges")
    merge.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    if args.command == "package":
        try:
            sam = package(args.stage, args.out, region=args.region, runtime=args.runtime)
        except UnsupportedRuntime as exc:
            print(exc, file=sys.stderr)
            return 2
        for path in sorted(sam.parent.iterdir()):
            print(f"{path}  {path.stat().st_size:,} bytes")
    else:
        sys.stdout.write(serialize(merge_template(args.stage)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
