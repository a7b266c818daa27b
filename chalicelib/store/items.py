"""DynamoDB items and conditional writes, shared by the stores (one store per table).

The few attribute types the app uses are marshalled here by hand rather than with boto3's
``TypeSerializer``, which returns ``Decimal`` for every number and costs an import on cold start.
Dicts are stored as JSON strings: they are read and written whole, never queried.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

Item = Dict[str, Dict[str, Any]]


def now_ms() -> int:
    return int(time.time() * 1000)


def encode(value: Any) -> Dict[str, Any]:
    """One attribute value: bool, number, dict (as JSON) or string."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": repr(value)}
    if isinstance(value, dict):
        return {"S": json.dumps(value, separators=(",", ":"))}
    if isinstance(value, list):
        return {"L": [encode(item) for item in value]}
    return {"S": str(value)}


def decode(attr: Mapping[str, Any]) -> Any:
    if "S" in attr:
        return attr["S"]
    if "N" in attr:
        number = attr["N"]
        return float(number) if any(c in number for c in ".eE") else int(number)
    if "BOOL" in attr:
        return attr["BOOL"]
    if "L" in attr:
        return [decode(item) for item in attr["L"]]
    return None


def to_item(**values: Any) -> Item:
    """An item from attribute names and values; None means "no such attribute"."""
    return {name: encode(value) for name, value in values.items() if value is not None}


def from_item(item: Item) -> Dict[str, Any]:
    return {name: decode(attr) for name, attr in item.items()}


_PLACEHOLDER = re.compile(r"#(\w+)")


def placeholders(*expressions: Optional[str]) -> Dict[str, str]:
    """``#name`` -> ``name`` for every attribute an expression names (DynamoDB wants exactly those)."""
    return {f"#{name}": name for expression in expressions if expression for name in _PLACEHOLDER.findall(expression)}


class Table:
    """One table's client calls, with the conditional update every store uses."""

    def __init__(self, dynamodb: Any, name: str) -> None:
        self.db = dynamodb
        self.name = name

    def get(self, key: Item, **kwargs: Any) -> Optional[Item]:
        item: Optional[Item] = self.db.get_item(TableName=self.name, Key=key, ConsistentRead=True, **kwargs).get("Item")
        return item

    def put(self, item: Item, condition: Optional[str] = None, values: Optional[Item] = None) -> bool:
        """Put the item (if ``condition`` holds); False if it did not."""
        params: Dict[str, Any] = {"TableName": self.name, "Item": item}
        if condition:
            params["ConditionExpression"] = condition
        names = placeholders(condition)
        if names:
            params["ExpressionAttributeNames"] = names
        if values:
            params["ExpressionAttributeValues"] = dict(values)
        try:
            self.db.put_item(**params)
        except self.db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def delete(self, key: Item) -> None:
        self.db.delete_item(TableName=self.name, Key=key)

    def query(self, key_condition: str, values: Item, limit: int, start: Optional[Item] = None,
              index: Optional[str] = None, forward: bool = True) -> Tuple[List[Item], Optional[Item]]:
        """One page of a query: its items and where the next page starts (None: no more)."""
        params: Dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeNames": placeholders(key_condition),
            "ExpressionAttributeValues": dict(values),
            "Limit": limit,
            "ScanIndexForward": forward,
        }
        if index:
            params["IndexName"] = index
        if start:
            params["ExclusiveStartKey"] = start
        response = self.db.query(**params)
        return response.get("Items", []), response.get("LastEvaluatedKey")

    def update(
        self,
        key: Item,
        condition: str,
        set_values: Mapping[str, Any],
        values: Optional[Item] = None,
        update: Optional[str] = None,
        **kwargs: Any,
    ) -> Optional[Dict[str, Any]]:
        """SET ``set_values`` (attribute name -> value) if ``condition`` holds (``""``: always); None if it did not.

        ``condition`` and ``update`` name attributes as ``#attribute`` (their names are filled in
        here) and values as ``:value`` (given in ``values``); every set attribute gets
        ``#attr = :attr``. ``update`` replaces the generated SET expression.
        """
        item = to_item(**set_values)
        expression = update or ("SET " + ", ".join(f"#{name} = :{name}" for name in item) if item else "")
        params: Dict[str, Any] = {
            "TableName": self.name,
            "Key": key,
            "ExpressionAttributeNames": placeholders(condition, expression),
            "ExpressionAttributeValues": {**{f":{name}": value for name, value in item.items()}, **(values or {})},
            **kwargs,
        }
        if condition:  # "": unconditional
            params["ConditionExpression"] = condition
        if expression:
            params["UpdateExpression"] = expression
        try:
            response: Dict[str, Any] = self.db.update_item(**params)
        except self.db.exceptions.ConditionalCheckFailedException:
            return None
        return response
