"""Bedrock's ``RetrievalFilter``: which chunks a retrieval may see, decided by their metadata.

The app keeps users apart with a filter such as ``{"equals": {"key": "owner", "value": <user>}}``,
so the emulator must honour filters exactly as the service does, or a leak would pass every test.
Pure: a filter (the request's JSON) and a chunk's metadata in, a yes or no out.

Semantics, as Bedrock documents them (string comparisons are case-sensitive):

* ``equals`` / ``notEquals``: the attribute is (is not) the value; a chunk without the key is
  never ``equals`` and always ``notEquals`` (OpenSearch's ``must_not``).
* ``greaterThan``, ``greaterThanOrEquals``, ``lessThan``, ``lessThanOrEquals``: numbers only.
* ``in`` / ``notIn``: the value is a list; the attribute is (is not) one of its members.
* ``startsWith``: a string attribute starting with the value.
* ``listContains``: a list attribute with the value as a member.
* ``stringContains``: a string attribute containing the value, or a list attribute with a member
  that does.
* ``andAll`` / ``orAll``: at least two filters, all (any) of which admit the chunk.

A filter names exactly one operator (the shape is a union); anything else is a
``ValidationException``, as the service answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from devserver.bedrock.errors import validation

__all__ = ["OPERATORS", "admits", "check"]

Metadata = Mapping[str, Any]
_MISSING = object()


def _same(left: Any, right: Any) -> bool:
    """Equal as JSON values: ``True`` is not ``1`` and ``3`` is ``3.0``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return bool(left == right)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(test: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    return lambda attribute, value: _number(attribute) and _number(value) and test(attribute, value)


def _contains_string(attribute: Any, value: Any) -> bool:
    if isinstance(attribute, str):
        return value in attribute
    return isinstance(attribute, list) and any(isinstance(item, str) and value in item for item in attribute)


#: Attribute operators: (attribute or _MISSING, value) -> admitted.
_ATTRIBUTE_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": lambda attribute, value: attribute is not _MISSING and _same(attribute, value),
    "notEquals": lambda attribute, value: attribute is _MISSING or not _same(attribute, value),
    "greaterThan": _compare(lambda a, v: a > v),
    "greaterThanOrEquals": _compare(lambda a, v: a >= v),
    "lessThan": _compare(lambda a, v: a < v),
    "lessThanOrEquals": _compare(lambda a, v: a <= v),
    "in": lambda attribute, value: attribute is not _MISSING and any(_same(attribute, v) for v in value),
    "notIn": lambda attribute, value: attribute is _MISSING or not any(_same(attribute, v) for v in value),
    "startsWith": lambda attribute, value: isinstance(attribute, str) and attribute.startswith(value),
    "listContains": lambda attribute, value: isinstance(attribute, list) and any(_same(a, value) for a in attribute),
    "stringContains": _contains_string,
}
_LOGICAL = ("andAll", "orAll")
OPERATORS = frozenset(_ATTRIBUTE_TESTS) | frozenset(_LOGICAL)
#: What each attribute operator's value must be.
_VALUE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{op: (_number, "a number") for op in ("greaterThan", "greaterThanOrEquals", "lessThan", "lessThanOrEquals")},
    "in": (lambda v: isinstance(v, list), "a list"),
    "notIn": (lambda v: isinstance(v, list), "a list"),
    "startsWith": (lambda v: isinstance(v, str), "a string"),
    "stringContains": (lambda v: isinstance(v, str), "a string"),
}


def check(retrieval_filter: Any, where: str = "filter") -> None:
    """Refuse (``ValidationException``) a filter the service would refuse."""
    if not isinstance(retrieval_filter, dict) or len(retrieval_filter) != 1:
        raise validation(f"{where} must set exactly one of: {', '.join(sorted(OPERATORS))}")
    ((operator, operand),) = retrieval_filter.items()
    if operator not in OPERATORS:
        raise validation(f"{where}: unknown filter operator {operator!r}")
    if operator in _LOGICAL:
        if not isinstance(operand, list) or len(operand) < 2:
            raise validation(f"{where}.{operator} must be a list of at least 2 filters")
        for i, inner in enumerate(operand):
            check(inner, f"{where}.{operator}[{i}]")
        return
    if not isinstance(operand, dict) or set(operand) != {"key", "value"}:
        raise validation(f"{where}.{operator} must have exactly 'key' and 'value'")
    key = operand["key"]
    if not isinstance(key, str) or not 1 <= len(key) <= 100:
        raise validation(f"{where}.{operator}.key must be a string of 1 to 100 characters")
    if operator in _VALUE_CHECKS:
        ok, expected = _VALUE_CHECKS[operator]
        if not ok(operand["value"]):
            raise validation(f"{where}.{operator}.value must be {expected}")


def admits(retrieval_filter: Mapping[str, Any] | None, metadata: Metadata) -> bool:
    """Whether a chunk with this metadata passes the filter (``None``: no filter, every chunk does).

    The filter must have passed ``check``.
    """
    if retrieval_filter is None:
        return True
    ((operator, operand),) = retrieval_filter.items()
    if operator == "andAll":
        return all(admits(inner, metadata) for inner in operand)
    if operator == "orAll":
        return any(admits(inner, metadata) for inner in operand)
    return _ATTRIBUTE_TESTS[operator](metadata.get(operand["key"], _MISSING), operand["value"])
