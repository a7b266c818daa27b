"""The agentstream stack, offline: compose the templates, package the app, render the deploy project.

One source of truth serves both ways onto AWS:

* ``infra/data.json``: tables, queues, alarms. Deployed on its own (the data stack that precedes
  ``chalice deploy``), merged into the packaged stack, and provisioned locally by devserver.
* ``infra/merge.json``: the app's side of the packaged stack: parameters, environment wiring,
  function names, the SQS event source's partial batch failures, API throttling, outputs.
* ``.chalice/policy-<function>.json``: each function's IAM policy, written with CloudFormation
  intrinsics (``Fn::Sub``, ``Fn::GetAtt``, ``Fn::If``). Chalice copies them verbatim into the
  packaged template, where CloudFormation resolves them; for ``chalice deploy`` this module
  resolves the very same documents against the data stack's outputs.

``python -m infra.stack package --stage dev --out build/package`` is what ``make package`` runs.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from infra.bytecode import add_bytecode

ROOT = Path(__file__).resolve().parent.parent
DATA_TEMPLATE = ROOT / "infra" / "data.json"
APP_TEMPLATE = ROOT / "infra" / "merge.json"
APP_NAME = "agentstream"
# The packaged stack's first output: what a client connects to.
URL_OUTPUT = "WebsocketConnectEndpointURL"
# What a deploy project holds besides .chalice/: exactly what Chalice packages.
APP_SOURCES = ("app.py", "chalicelib", "requirements.txt")


def load_json(path: Path) -> Dict[str, Any]:
    return json.loads(Path(path).read_text())


def serialize(document: Any) -> str:
    """JSON as Chalice writes it (2-space indent, trailing newline), so reviews diff cleanly."""
    return json.dumps(document, indent=2, separators=(",", ": ")) + "\n"


def data_stack_name(stage: str) -> str:
    return f"{APP_NAME}-{stage}-data"


def function_name(stage: str, function: str) -> str:
    """The Lambda function's name on AWS, the same on both paths (Chalice's naming)."""
    return f"{APP_NAME}-{stage}-{function}"


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


def merge_template(stage: str) -> Dict[str, Any]:
    """``data.json`` and ``merge.json`` as one template for ``chalice package --merge-template``.

    Chalice's own deep merge combines them (dicts merge, lists and scalars of the second replace
    the first's), as it later merges the result into its generated template. ``Stage`` is fixed
    to the stage being packaged: the template's function names and API stage are that stage's.
    """
    from chalice.package import TemplateDeepMerger

    merged = TemplateDeepMerger().merge(load_json(APP_TEMPLATE), load_json(DATA_TEMPLATE))
    merged["Parameters"]["Stage"] = {
        **merged["Parameters"]["Stage"],
        "Default": stage,
        "AllowedValues": [stage],
        "Description": f"The Chalice stage this template was packaged for ({stage}).",
    }
    return merged


def parameter_specs() -> Dict[str, Dict[str, Any]]:
    """Every parameter of the packaged stack (the data stack's are a subset)."""
    return {**load_json(DATA_TEMPLATE).get("Parameters", {}), **load_json(APP_TEMPLATE).get("Parameters", {})}


@functools.lru_cache(maxsize=1)
def list_parameters() -> frozenset:
    """Parameters whose ``Ref`` is a list (``CommaDelimitedList``); their values travel as ``a,b,c``."""
    return frozenset(name for name, spec in parameter_specs().items() if spec.get("Type") == "CommaDelimitedList")


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
                problems.append(f"{name}={item!r} does not match {spec['AllowedPattern']}")
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
        context = Context(parameters=values)
        for rule in load_json(APP_TEMPLATE).get("Rules", {}).values():
            for assertion in rule.get("Assertions", []):
                if not context.evaluate(assertion["Assert"]):
                    problems.append(assertion["AssertDescription"])
    if problems:
        raise ParameterError("; ".join(problems))
    return values


# ---------------------------------------------------------------------------------------------
# A small CloudFormation evaluator: enough to resolve this project's policies and wiring.


class Unresolved(KeyError):
    """A reference this context cannot resolve (yet)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


NO_VALUE = object()
_SUB = re.compile(r"\$\{([^}]+)\}")


@dataclass
class Context:
    """Values for ``Ref``/``Fn::GetAtt`` and the templates' ``Conditions``."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, str] = field(default_factory=dict)  # logical id -> Ref value
    attributes: Mapping[str, str] = field(default_factory=dict)  # "LogicalId.Attribute" -> value
    pseudo: Mapping[str, str] = field(default_factory=dict)  # "AWS::Region" -> value
    conditions: Mapping[str, Any] = field(default_factory=dict)  # name -> condition expression

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters and name in list_parameters():
            return str(self.parameters[name]).split(",")  # as CloudFormation: "" is [""]
        for table in (self.pseudo, self.parameters, self.resources):
            if name in table:
                return table[name]
        raise Unresolved(name)

    def attribute(self, resource: str, attribute: str) -> str:
        key = f"{resource}.{attribute}"
        if key not in self.attributes:
            raise Unresolved(key)
        return self.attributes[key]

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise Unresolved(f"Condition {name}")
        return bool(self.evaluate(self.conditions[name]))

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, list):
            return [value for value in (self.evaluate(item) for item in node) if value is not NO_VALUE]
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, argument),) = node.items()
                function = _FUNCTIONS.get(key)
                if function is not None:
                    return function(self, argument)
            return {key: value for key, value in ((k, self.evaluate(v)) for k, v in node.items()) if value is not NO_VALUE}
        return node

    def sub(self, argument: Any) -> str:
        template, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.evaluate(value) for name, value in variables.items()}

        def replace(match: "re.Match[str]") -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.attribute(*name.split(".", 1)))
            return str(self.ref(name))

        return _SUB.sub(replace, template)


def _get_att(context: Context, argument: Any) -> str:
    resource, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
    return context.attribute(resource, attribute)


def _if(context: Context, argument: Sequence[Any]) -> Any:
    condition, when_true, when_false = argument
    return context.evaluate(when_true if context.condition(condition) else when_false)


_FUNCTIONS = {
    "Ref": lambda context, name: context.ref(name),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": Context.sub,
    "Fn::If": _if,
    "Fn::Equals": lambda context, args: str(context.evaluate(args[0])) == str(context.evaluate(args[1])),
    "Fn::Not": lambda context, args: not context.evaluate(args[0]),
    "Fn::And": lambda context, args: all(context.evaluate(arg) for arg in args),
    "Fn::Or": lambda context, args: any(context.evaluate(arg) for arg in args),
    "Fn::Join": lambda context, args: args[0].join(str(v) for v in context.evaluate(args[1])),
    "Fn::Split": lambda context, args: str(context.evaluate(args[1])).split(args[0]),
    "Fn::Select": lambda context, args: context.evaluate(args[1])[int(context.evaluate(args[0]))],
    "Condition": lambda context, name: context.condition(name),
}


def all_conditions() -> Dict[str, Any]:
    return {**load_json(DATA_TEMPLATE).get("Conditions", {}), **load_json(APP_TEMPLATE).get("Conditions", {})}


def context_from_outputs(
    parameters: Mapping[str, str], outputs: Mapping[str, str], websocket_api_id: Optional[str] = None
) -> Context:
    """Resolve references the way the data stack's outputs name them.

    Each output of ``data.json`` is a ``Ref`` or ``Fn::GetAtt`` of one resource, so its value is
    that reference's value; account, Region and partition come from the turn queue's ARN.
    """
    resources: Dict[str, str] = {}
    attributes: Dict[str, str] = {}
    for name, output in load_json(DATA_TEMPLATE).get("Outputs", {}).items():
        value = output["Value"]
        if name not in outputs:
            raise ValueError(f"the data stack has no output {name}: deploy infra/data.json first")
        if "Ref" in value:
            resources[value["Ref"]] = outputs[name]
        elif "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            attributes[f"{resource}.{attribute}"] = outputs[name]
    if websocket_api_id:
        resources["WebsocketAPI"] = websocket_api_id
    _, partition, _, region, account, _ = attributes["TurnQueue.Arn"].split(":", 5)
    pseudo = {
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
    }
    return Context(parameters, resources, attributes, pseudo, all_conditions())


def render_policy(document: Dict[str, Any], context: Context, defer: Iterable[str] = ()) -> Tuple[Dict[str, Any], List[str]]:
    """A policy with every intrinsic resolved; statements naming a deferred reference are left out.

    Returns the policy and the Sids left out (e.g. those needing the API id before it exists).
    """
    defer = set(defer)
    statements: List[Any] = []
    deferred: List[str] = []
    for statement in document["Statement"]:
        try:
            value = context.evaluate(statement)
        except Unresolved as exc:
            if exc.name not in defer:
                raise
            deferred.append(_sid(statement))
            continue
        if value is not NO_VALUE:
            statements.append(value)
    return {**document, "Statement": statements}, deferred


def _sid(statement: Dict[str, Any]) -> str:
    if "Fn::If" in statement:
        return _sid(statement["Fn::If"][1])
    return statement.get("Sid", "?")


def app_environment(context: Context) -> Dict[str, str]:
    """The environment ``merge.json`` gives every function, resolved."""
    variables = load_json(APP_TEMPLATE)["Globals"]["Function"]["Environment"]["Variables"]
    return {name: str(value) for name, value in context.evaluate(variables).items()}


def app_resource_properties(logical_id: str, context: Context) -> Dict[str, Any]:
    """What ``merge.json`` sets on one of Chalice's resources, resolved (for the deploy path)."""
    return context.evaluate(load_json(APP_TEMPLATE)["Resources"][logical_id]["Properties"])


# ---------------------------------------------------------------------------------------------
# The chalice deploy path: a project directory whose .chalice/ holds literal values


def prepare_project(stage: str, dest: Path, project_dir: Path = ROOT) -> Path:
    """A Chalice project at ``dest`` with the app's sources and this repository's ``.chalice`` files.

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
    for filename, _ in policy_documents(stage, project_dir).values():
        shutil.copy2(project_dir / ".chalice" / filename, chalice_dir / filename)
    return dest


def render_project(
    stage: str, context: Context, dest: Path, project_dir: Path = ROOT, defer: Iterable[str] = ()
) -> List[str]:
    """A project for ``chalice deploy`` whose config and policies hold resolved, literal values.

    Returns the Sids of statements left out because they name a reference in ``defer``.
    """
    chalice_dir = prepare_project(stage, dest, project_dir) / ".chalice"
    config = load_json(chalice_dir / "config.json")
    stage_config = config["stages"][stage]
    stage_config["environment_variables"] = {**stage_config.get("environment_variables", {}), **app_environment(context)}
    (chalice_dir / "config.json").write_text(serialize(config))
    deferred: List[str] = []
    for function, (filename, document) in policy_documents(stage, project_dir).items():
        policy, left_out = render_policy(document, context, defer)
        deferred += [f"{function}:{sid}" for sid in left_out]
        (chalice_dir / filename).write_text(serialize(policy))
    return deferred


def deployed_websocket_api_id(stage: str, project_dir: Path = ROOT) -> Optional[str]:
    """The WebSocket API id ``chalice deploy`` recorded for ``stage``, if it deployed one."""
    path = Path(project_dir) / ".chalice" / "deployed" / f"{stage}.json"
    if not path.exists():
        return None
    for resource in load_json(path).get("resources", []):
        if resource.get("resource_type") == "websocket_api":
            return resource.get("websocket_api_id")
    return None


# ---------------------------------------------------------------------------------------------
# Packaging


def chalice_command() -> List[str]:
    """The chalice CLI of the Python running this (the project's virtualenv)."""
    return [str(Path(sys.executable).parent / "chalice")]


def chalice_env(region: Optional[str] = None) -> Dict[str, str]:
    env = dict(os.environ)
    # Packaging only needs a Region to name the Lambda service principal (partition-wide).
    env["AWS_DEFAULT_REGION"] = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return env


def package(stage: str, out_dir: Path, project_dir: Path = ROOT, region: Optional[str] = None) -> Path:
    """``chalice package`` with the merged templates, plus bytecode; returns the path of ``sam.json``."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        merge_path = Path(scratch) / f"merge-{stage}.json"
        merge_path.write_text(serialize(merge_template(stage)))
        command = chalice_command() + [
            "--project-dir", str(project_dir),
            "package", "--stage", stage, "--merge-template", str(merge_path), str(out_dir),
        ]
        subprocess.run(command, check=True, env=chalice_env(region))
    for archive in sorted(out_dir.glob("*.zip")):
        add_bytecode(archive)
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
    merge = commands.add_parser("merge-template", help="print the template chalice package merges")
    merge.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    if args.command == "package":
        sam = package(args.stage, args.out, region=args.region)
        for path in sorted(sam.parent.iterdir()):
            print(f"{path}  {path.stat().st_size:,} bytes")
    else:
        sys.stdout.write(serialize(merge_template(args.stage)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
