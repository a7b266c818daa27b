"""What tests of a running local stack need beyond a token: its tables, and its fault switchboard.

A client never learns its connection id, so to cut one client's connection a test looks the id up
in the connections table by user (each test uses a user of its own), then asks the stack's fault
switchboard (devserver/control.py) to drop it without a close frame. A fault that must strike
mid-turn strikes at a point in the turn the test has seen (``kill_worker`` once a chunk arrived),
never after a delay.
"""
from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any, Dict, List, Optional

from tests.support.timing import wait_until


def unique_user(prefix: str) -> str:
    """A user name no other test uses (connections and rate limits are per user)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dynamodb(stack: Any) -> Any:
    """A DynamoDB client for the stack's moto server."""
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
    items = db.scan(
        TableName=table_named(db, "connections"),
        FilterExpression="userId = :user",
        ExpressionAttributeValues={":user": {"S": user}},
        ConsistentRead=True,
    )["Items"]
    return [item["connectionId"]["S"] for item in items]


def table_named(db: Any, kind: str) -> str:
    """The stack's table of this kind (``connections``, ``turns``): devserver/resources.py names it ``<prefix>-<kind>``."""
    (table,) = [name for name in db.list_tables()["TableNames"] if name.endswith("-" + kind)]
    return table


def wait_for_connection(stack: Any, user: str, timeout: float = 10.0) -> str:
    """The id of the user's only open connection, once there is exactly one."""

    def single() -> Optional[str]:
        ids = connection_ids(stack, user)
        return ids[0] if len(ids) == 1 else None

    connection_id = wait_until(single, timeout, f"{user} has no single open connection")
    assert connection_id is not None
    return connection_id


def wait_for_no_connection(stack: Any, user: str, timeout: float = 10.0) -> None:
    """Until the user's connections are all gone from the table (their $disconnect ran)."""
    wait_until(lambda: not connection_ids(stack, user), timeout, f"{user} still has open connections")


def turn_status(stack: Any, turn_id: str) -> Optional[str]:
    """The turn's status in the turns table (queued, running, waiting, done, error), or None."""
    db = dynamodb(stack)
    item = db.get_item(TableName=table_named(db, "turns"), Key={"turnId": {"S": turn_id}}, ConsistentRead=True).get("Item")
    return item["status"]["S"] if item else None


def wait_for_turn_status(stack: Any, turn_id: str, *statuses: str, timeout: float = 20.0) -> str:
    """Until the turn's recorded status is one of these; returns it."""

    def reached() -> Optional[str]:
        status = turn_status(stack, turn_id)
        return status if status in statuses else None

    status = wait_until(reached, timeout, f"turn {turn_id} never reached {statuses}")
    assert status is not None
    return status


def inject(stack: Any, **faults: Any) -> Dict[str, Any]:
    """POST these faults to the stack's switchboard (devserver/control.py); returns its answer."""
    request = urllib.request.Request(
        stack.info["control_url"] + "/faults",
        data=json.dumps(faults).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def worker_stats(stack: Any) -> Dict[str, int]:
    """What the stack's SQS event source has done so far (devserver/control.py, ``GET /stats``)."""
    with urllib.request.urlopen(stack.info["control_url"] + "/stats", timeout=5) as response:
        return json.loads(response.read())


def drop(stack: Any, user: str) -> str:
    """Cut the user's only connection abruptly (no close frame); returns its id."""
    connection_id = wait_for_connection(stack, user)
    inject(stack, drop=connection_id)
    return connection_id


def arm_worker_kill(stack: Any, user: str, request_id: str) -> None:
    """Run the worker invocation of that user's ask (by its requestId) in a process of its own that
    ``kill_worker`` can kill. Naming the turn matters: the next invocation may be a redelivery of
    another test's message."""
    from chalicelib.turns import ids

    inject(stack, kill_worker_after_s=ARMED_FOR_S, kill_turn=ids.turn_id(user, request_id))


def kill_worker(stack: Any) -> None:
    """SIGKILL the armed worker now: call it at the point of the turn the fault must strike."""
    killed = inject(stack, kill_worker=True)["killed"]
    assert killed == 1, f"no armed worker was running to kill ({killed})"


ARMED_FOR_S = 120.0  # longer than any test: the armed worker dies when the test says, not before
