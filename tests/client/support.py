"""What the client tests (CLI and browser) need from a local stack beyond a token.

A client never learns its connection id, so to cut one client's connection a test looks the id up
in the connections table by user (each test uses a user of its own), then asks the stack's fault
switchboard (devserver/control.py) to drop it without a close frame.
"""
from __future__ import annotations

import json
import time
import urllib.request
import uuid
from functools import lru_cache
from typing import Any, Dict, List

import jsonschema

from chalicelib import protocol


def unique_user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dynamodb(stack: Any) -> Any:
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=stack.info["dynamodb"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def connection_ids(stack: Any, user: str) -> List[str]:
    """The ids of the user's open connections, from the connections table."""
    db = dynamodb(stack)
    (table,) = [name for name in db.list_tables()["TableNames"] if "connection" in name.lower()]
    items = db.scan(
        TableName=table,
        FilterExpression="userId = :user",
        ExpressionAttributeValues={":user": {"S": user}},
        ConsistentRead=True,
    )["Items"]
    return [item["connectionId"]["S"] for item in items]


def wait_for_connection(stack: Any, user: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = connection_ids(stack, user)
        if len(ids) == 1:
            return ids[0]
        time.sleep(0.05)
    raise AssertionError(f"{user} has no single open connection: {connection_ids(stack, user)}")


def inject(stack: Any, **faults: Any) -> Dict[str, Any]:
    request = urllib.request.Request(
        stack.info["control_url"] + "/faults",
        data=json.dumps(faults).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def drop(stack: Any, user: str) -> str:
    """Cut the user's only connection abruptly (no close frame); returns its id."""
    connection_id = wait_for_connection(stack, user)
    inject(stack, drop=connection_id)
    return connection_id


@lru_cache(maxsize=None)
def frame_validator() -> jsonschema.Draft7Validator:
    """Validates anything a client can receive (ServerFrame), with the reference validator."""
    schema = protocol.schema_for("ServerFrame")
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def assert_valid_frame(frame: Dict[str, Any]) -> None:
    errors = sorted(frame_validator().iter_errors(frame), key=lambda e: list(e.path))
    assert not errors, f"{frame} breaks the schema: {[e.message for e in errors]}"


def assert_documented(frame: Dict[str, Any]) -> None:
    """A server event carries only the fields its schema definition names (clients may rely on them)."""
    if "type" not in frame:
        return
    definitions = protocol.schema()["definitions"]
    (definition,) = [
        d for d in definitions.values() if d.get("properties", {}).get("type", {}).get("const") == frame["type"]
    ]
    undocumented = set(frame) - set(definition["properties"])
    assert not undocumented, f"{frame['type']} has fields the schema does not document: {undocumented}"
    stats = frame.get("stats")
    if isinstance(stats, dict):
        assert not set(stats) - set(definitions["Stats"]["properties"]), stats


def check_frame(raw: Any) -> Dict[str, Any]:
    """Parse one received frame and check it against the schema both ways (reference + server's)."""
    frame = json.loads(raw)
    assert_valid_frame(frame)
    protocol.validator("ServerFrame")(frame)
    assert_documented(frame)
    return frame
