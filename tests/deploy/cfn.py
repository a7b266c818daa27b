"""Reading template fragments in tests, where no CloudFormation can build them.

The deploy code evaluates nothing: CloudFormation resolves both paths' templates, and the tests
resolve policies and the app's environment through moto's CloudFormation (``support.deploy_stack``).
Some resources moto does not build (CloudWatch alarms) or branches a test wants to walk one by one
(every ``Fn::If`` of a policy) are read here instead: ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
``Fn::If`` and the condition functions, against values the test gives.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from infra import stack


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
        if name in self.parameters and stack.is_list_parameter(name):
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
