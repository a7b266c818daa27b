"""Each function's environment at its largest, before deploying: Lambda refuses more than 4 KB.

A function's variables are the stage's (``.chalice/config.json``, per-function ones included) and
the app's (``infra/merge.json`` ``Globals``), the same on both deploy paths. Lambda measures them
as one JSON object, ``{"NAME":"value",...}`` (its refusal quotes that "String measured"), against
4,096 bytes. Over it, CloudFormation cannot create or update the function: the stack rolls back.

``make deploy-check`` (and ``make deploy``, before it creates anything) measures them here, offline:

* parameters at the values given;
* references to the stack's resources at their longest possible value (``longest``): a name
  CloudFormation generates is ``<stack>-<logical id>-<13 characters>``, cut to the service's
  limit, with the stack's name at CloudFormation's 128 characters, since the packaged stack's
  name is the operator's choice; ARNs and queue URLs with the longest partition, Region and DNS
  suffix botocore knows, and a 12-digit account; a Cognito user pool's or app client's id at the
  most its API allows (``UserPoolIdType``: 55 characters, ``ClientIdType``: 128);
* each variable as JSON writes it with every non-ASCII character escaped (``\\u00e9``): the most
  any encoding of it can take, so the bound holds however Lambda counts.

Only the shapes ``Globals`` uses are read (``Ref`` to a parameter, ``Ref``/``Fn::GetAtt`` of a
data resource, ``Fn::Sub`` in its string form of those and of ``AWS::Region``, ``AWS::URLSuffix``,
``AWS::Partition`` and ``AWS::AccountId``, at their longest as above, and ``Fn::If`` of all these,
where the larger branch counts); anything else is refused, so a new kind of variable gets a bound
here before it can be deployed unmeasured.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from infra import stack

LIMIT_BYTES = 4096  # Lambda: "the total size of all environment variables doesn't exceed 4 KB"
STACK_NAME_MAX = 128  # CloudFormation's longest stack name
GENERATED_SUFFIX = 13  # the unique part CloudFormation appends to a name it generates
ACCOUNT_ID = "0" * 12
# The longest name each service accepts, for names CloudFormation generates.
NAME_LIMITS = {"AWS::DynamoDB::Table": 255, "AWS::SQS::Queue": 80}
# The longest ids Amazon Cognito's API takes (UserPoolIdType, ClientIdType): what a Ref of each is.
ID_LIMITS = {"AWS::Cognito::UserPool": 55, "AWS::Cognito::UserPoolClient": 128}
# Ids Amazon Bedrock generates, 10 letters and digits (KnowledgeBase.KnowledgeBaseId, DataSource.DataSourceId).
ATTRIBUTE_ID_LIMITS = {("AWS::Bedrock::KnowledgeBase", "KnowledgeBaseId"): 10, ("AWS::Bedrock::DataSource", "DataSourceId"): 10}
API_ID_LENGTH = 10  # an API Gateway API's id (the deploy stack's WebsocketAPI parameter allows no other)
# The first group of the stack's id (a UUID, e.g. STACK_ID_EXAMPLE's 1a2b3c4d): what names of the stack's own end in.
STACK_ID_GROUP = {"Fn::Select": [0, {"Fn::Split": ["-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]}]}
STACK_ID_EXAMPLE = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"


class EnvironmentSizeError(ValueError):
    """A variable this module cannot bound, or an environment over Lambda's limit."""


def size(variables: Mapping[str, str]) -> int:
    """The bytes Lambda counts for these variables, at most (see the module's docstring)."""
    return len(json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=True))


@dataclass(frozen=True)
class Longest:
    """The longest partition, Region and DNS suffix an ARN or a URL may hold."""

    partition: str
    region: str
    dns_suffix: str

    def generated_name(self, logical_id: str, kind: str) -> str:
        return "x" * min(STACK_NAME_MAX + 1 + len(logical_id) + 1 + GENERATED_SUFFIX, NAME_LIMITS[kind])


@functools.lru_cache(maxsize=1)
def longest() -> Longest:
    """From botocore's endpoint data (the pinned botocore's): every partition and Region it knows."""
    from botocore.loaders import create_loader

    loader = create_loader()
    regions, partitions, suffixes = [], [], []
    for partition in loader.load_data("endpoints")["partitions"]:
        partitions.append(partition["partition"])
        suffixes.append(partition["dnsSuffix"])
        regions += list(partition["regions"])
    for partition in loader.load_data("partitions")["partitions"]:
        partitions.append(partition["id"])
        suffixes.append(partition["outputs"]["dnsSuffix"])
        regions += [name for name in partition["regions"] if not name.endswith("-global")]  # aliases, not Regions
    return Longest(max(partitions, key=len), max(regions, key=len), max(suffixes, key=len))


def _reference(logical_id: str, attribute: Optional[str], parameters: Mapping[str, str]) -> str:
    """The longest value of ``Ref`` (``attribute`` None) or ``Fn::GetAtt`` of one of the stage's resources
    (``stack.stage_resources``: data.json, documents.json and page.json)."""
    if logical_id == stack.WEBSOCKET_API and attribute is None:  # Chalice's (the deploy stack's parameter)
        return "x" * API_ID_LENGTH
    resources = stack.stage_resources()["Resources"]
    if logical_id not in resources:
        raise EnvironmentSizeError(f"{logical_id} is not a resource of infra/data.json (nor of documents.json, page.json): "
                                   "no bound for it")
    kind, properties = resources[logical_id]["Type"], resources[logical_id].get("Properties", {})
    bounds, what = longest(), f"{'Ref' if attribute is None else 'Fn::GetAtt ' + attribute} of {logical_id} ({kind})"
    if kind == "AWS::DynamoDB::Table" and "TableName" not in properties:
        name = bounds.generated_name(logical_id, kind)
        if attribute is None:
            return name
        if attribute == "Arn":
            return f"arn:{bounds.partition}:dynamodb:{bounds.region}:{ACCOUNT_ID}:table/{name}"
    elif kind == "AWS::SQS::Queue" and "QueueName" not in properties and not properties.get("FifoQueue"):
        name = bounds.generated_name(logical_id, kind)
        if attribute is None:  # the queue's URL; the older form, <region>.queue.<suffix>, is the longer
            return f"https://{bounds.region}.queue.{bounds.dns_suffix}/{ACCOUNT_ID}/{name}"
        if attribute == "Arn":
            return f"arn:{bounds.partition}:sqs:{bounds.region}:{ACCOUNT_ID}:{name}"
        if attribute == "QueueName":
            return name
    elif kind == "AWS::SSM::Parameter" and attribute is None:  # its name, which the template sets
        return _substitute(properties.get("Name"), parameters, what)
    elif kind in ID_LIMITS and attribute is None:  # an id Cognito generates
        return "x" * ID_LIMITS[kind]
    elif attribute is not None and (kind, attribute) in ATTRIBUTE_ID_LIMITS:  # an id Bedrock generates
        return "x" * ATTRIBUTE_ID_LIMITS[(kind, attribute)]
    elif kind == "AWS::S3::Bucket" and attribute is None and "BucketName" in properties:  # its name, which the template sets
        return _named(properties["BucketName"], parameters, what)
    elif kind == "AWS::StepFunctions::StateMachine" and attribute is None and "StateMachineName" in properties:  # its ARN
        name = _named(properties["StateMachineName"], parameters, what)
        return f"arn:{bounds.partition}:states:{bounds.region}:{ACCOUNT_ID}:stateMachine:{name}"
    raise EnvironmentSizeError(f"no bound for {what}: teach infra/envsize.py its longest value")


def _substitute(template: Any, parameters: Mapping[str, str], what: str) -> str:
    """A literal name, or an ``Fn::Sub`` of parameters only."""
    if isinstance(template, str):
        return template
    if isinstance(template, dict) and set(template) == {"Fn::Sub"} and isinstance(template["Fn::Sub"], str):
        def value(match: "re.Match[str]") -> str:
            if match.group(1) not in parameters:
                raise EnvironmentSizeError(f"no bound for {what}: ${{{match.group(1)}}} is not a parameter")
            return parameters[match.group(1)]

        return re.sub(r"\$\{([^}!]+)\}", value, template["Fn::Sub"])
    raise EnvironmentSizeError(f"no bound for {what}: its name is neither a literal nor an Fn::Sub of parameters")


def _named(name: Any, parameters: Mapping[str, str], what: str) -> str:
    """A name the template gives: a literal, or an ``Fn::Sub`` of parameters, pseudo parameters and the
    stack id's first group (``STACK_ID_GROUP``, as infra/page.json and infra/documents.json name resources)."""
    if isinstance(name, dict) and set(name) == {"Fn::Sub"}:
        template, variables = (name["Fn::Sub"], {}) if isinstance(name["Fn::Sub"], str) else name["Fn::Sub"]
        if re.search(r"\$\{[^}!]*\.", template):
            raise EnvironmentSizeError(f"no bound for {what}: its name names another resource's attribute")
        for variable, value in variables.items():
            if value != STACK_ID_GROUP:
                raise EnvironmentSizeError(f"no bound for {what}: ${{{variable}}} is not the stack id's group")
            template = template.replace("${" + variable + "}", "x" * len(STACK_ID_EXAMPLE.split("-")[0]))
        return _sub(template, parameters, what)
    return _substitute(name, parameters, what)


def _sub(template: str, parameters: Mapping[str, str], variable: str) -> str:
    """An ``Fn::Sub`` string at its longest: parameters at their values, pseudo parameters and the data
    resources' ``Ref``/``Fn::GetAtt`` at their longest (``${!x}`` is the literal ``${x}``)."""
    bounds = longest()
    pseudo = {"AWS::Region": bounds.region, "AWS::URLSuffix": bounds.dns_suffix, "AWS::Partition": bounds.partition,
              "AWS::AccountId": ACCOUNT_ID}

    def value(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in pseudo:
            return pseudo[name]
        if name in parameters:
            return longest_value({"Ref": name}, parameters, variable) or ""
        if name.startswith("AWS::"):
            raise EnvironmentSizeError(
                f"{variable}: no bound for ${{{name}}} in an Fn::Sub: teach infra/envsize.py its longest value")
        logical_id, _, attribute = name.partition(".")
        return _reference(logical_id, attribute or None, parameters)

    return re.sub(r"\$\{([^}]+)\}", value, template)


def longest_value(node: Any, parameters: Mapping[str, str], variable: str = "?") -> Optional[str]:
    """A variable's value as written in ``Globals``, at its longest; None when it may be left out."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref" and argument == "AWS::NoValue":
            return None
        if function == "Ref" and argument in parameters:
            if stack.is_list_parameter(argument):
                raise EnvironmentSizeError(f"{variable}: a list parameter ({argument}) is no variable's value")
            return str(parameters[argument])
        if function == "Ref" and isinstance(argument, str):
            return _reference(argument, None, parameters)
        if function == "Fn::GetAtt" and isinstance(argument, list) and len(argument) == 2:
            return _reference(argument[0], argument[1], parameters)
        if function == "Fn::Sub" and isinstance(argument, str):
            return _sub(argument, parameters, variable)
        if function == "Fn::If" and isinstance(argument, list) and len(argument) == 3:
            branches = [longest_value(branch, parameters, variable) for branch in argument[1:]]
            return max(branches, key=lambda value: -1 if value is None else size({variable: value}))
    raise EnvironmentSizeError(
        f"{variable}: no bound for {json.dumps(node)}: infra/envsize.py reads Ref, Fn::GetAtt, Fn::Sub (a string) and Fn::If only"
    )


def environments(stage: str, parameters: Mapping[str, str], project_dir: Path = stack.ROOT) -> Dict[str, Dict[str, str]]:
    """Each function's variables, at their longest: the stage's (Chalice), the app's (``Globals``) and
    its own (``merge.json``'s resource of it)."""
    app: Dict[str, str] = {}
    for variable, node in stack.app_environment_expressions().items():
        value = longest_value(node, parameters, variable)
        if value is not None:
            app[variable] = value
    result = {}
    for function in stack.functions(project_dir):
        variables = dict(stack.chalice_config(stage, function, project_dir).environment_variables)
        own = {variable: longest_value(node, parameters, variable)
               for variable, node in stack.function_environment_expressions(function).items()}
        for variable, value in {**app, **{k: v for k, v in own.items() if v is not None}}.items():
            # on both paths one overrides the other: count the larger
            if size({variable: value}) >= size({variable: variables.get(variable, "")}):
                variables[variable] = value
        result[function] = variables
    return result


def largest(variables: Mapping[str, str], count: int = 3) -> List[Tuple[str, int]]:
    """The ``count`` variables whose values take the most bytes, with those bytes (as ``size`` counts them)."""
    sizes = [(name, len(json.dumps(value, ensure_ascii=True)) - 2) for name, value in variables.items()]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def check(stage: str, parameters: Mapping[str, str], project_dir: Path = stack.ROOT) -> List[str]:
    """One line per function with its environment's size; EnvironmentSizeError when one is over the limit."""
    measured = {
        function: (size(variables), variables) for function, variables in environments(stage, parameters, project_dir).items()
    }
    width = max(len(function) for function in measured)
    lines = [f"Environment of each function at its longest (Lambda allows {LIMIT_BYTES:,} bytes):"]
    lines += [f"  {function:<{width}}  {total:>5,} bytes" for function, (total, _) in measured.items()]
    over = [
        f"{function}: {total:,} bytes, over Lambda's {LIMIT_BYTES:,}; the largest variables: "
        + ", ".join(f"{name} ({bytes_:,} bytes)" for name, bytes_ in largest(variables))
        for function, (total, variables) in measured.items()
        if total > LIMIT_BYTES
    ]
    if over:
        raise EnvironmentSizeError(
            "\n".join(lines + over)
            + "\nLambda would refuse these functions: shorten those values, or keep large settings out of the "
            "environment (as the system prompt is, in SSM)."
        )
    return lines
