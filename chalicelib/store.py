"""DynamoDB records: connections and turns.

Connections live only as long as a WebSocket (plus a TTL for the ones whose $disconnect never
ran); turns outlive them so an answer can be read back after a drop. Every state change of a turn
is a conditional write, so two workers can never both own it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from chalicelib.settings import CONNECTION_TTL_S

# Turn statuses.
QUEUED = "queued"
RUNNING = "running"
DONE = "done"
ERROR = "error"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Connection:
    connection_id: str
    user_id: str
    connected_at: int  # epoch ms
    expires_at: int  # epoch s, the table's TTL attribute


@dataclass
class Turn:
    turn_id: str
    user_id: str
    connection_id: str
    prompt: str
    session_id: str
    status: str = QUEUED
    conversation_id: Optional[str] = None
    request_id: Optional[str] = None
    memory_id: Optional[str] = None
    trace: bool = False
    created_at: int = 0  # epoch ms
    expires_at: int = 0  # epoch s, TTL
    answer: str = ""
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    stats: Dict[str, Any] = field(default_factory=dict)


# ---- marshalling: the few attribute types we use, without boto3's Decimal-returning serializer

def _item(**fields: Any) -> Dict[str, Dict[str, Any]]:
    item: Dict[str, Dict[str, Any]] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            item[name] = {"BOOL": value}
        elif isinstance(value, int):
            item[name] = {"N": str(value)}
        elif isinstance(value, dict):
            item[name] = {"S": json.dumps(value, separators=(",", ":"))}
        else:
            item[name] = {"S": str(value)}
    return item


def _value(attr: Dict[str, Any]) -> Any:
    if "S" in attr:
        return attr["S"]
    if "N" in attr:
        return int(attr["N"])
    if "BOOL" in attr:
        return attr["BOOL"]
    return None


def _fields(item: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    return {name: _value(attr) for name, attr in item.items()}


class Store:
    """Reads and conditional writes of connection and turn records."""

    def __init__(self, dynamodb: Any, connections_table: str, turns_table: str, turn_ttl_s: int) -> None:
        self._db = dynamodb
        self._connections = connections_table
        self._turns = turns_table
        self._turn_ttl_s = turn_ttl_s

    # ---- connections

    def put_connection(self, connection_id: str, user_id: str) -> Connection:
        connected_at = now_ms()
        conn = Connection(connection_id, user_id, connected_at, connected_at // 1000 + CONNECTION_TTL_S)
        self._db.put_item(
            TableName=self._connections,
            Item=_item(
                connectionId=conn.connection_id,
                userId=conn.user_id,
                connectedAt=conn.connected_at,
                expiresAt=conn.expires_at,
            ),
        )
        return conn

    def get_connection(self, connection_id: str) -> Optional[Connection]:
        item = self._db.get_item(
            TableName=self._connections, Key={"connectionId": {"S": connection_id}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        data = _fields(item)
        if data.get("expiresAt", 0) < time.time():
            return None  # TTL deletion lags by up to days; an expired record is no record
        return Connection(data["connectionId"], data["userId"], data["connectedAt"], data["expiresAt"])

    def delete_connection(self, connection_id: str) -> None:
        self._db.delete_item(TableName=self._connections, Key={"connectionId": {"S": connection_id}})

    # ---- turns

    def create_turn(self, turn: Turn) -> None:
        """Insert a new turn; a clash on the id raises rather than overwriting."""
        turn.created_at = turn.created_at or now_ms()
        turn.expires_at = turn.expires_at or turn.created_at // 1000 + self._turn_ttl_s
        self._db.put_item(
            TableName=self._turns,
            Item=_item(
                turnId=turn.turn_id,
                userId=turn.user_id,
                connectionId=turn.connection_id,
                prompt=turn.prompt,
                sessionId=turn.session_id,
                status=turn.status,
                conversationId=turn.conversation_id,
                requestId=turn.request_id,
                memoryId=turn.memory_id,
                trace=turn.trace,
                createdAt=turn.created_at,
                expiresAt=turn.expires_at,
            ),
            ConditionExpression="attribute_not_exists(turnId)",
        )

    def get_turn(self, turn_id: str) -> Optional[Turn]:
        item = self._db.get_item(
            TableName=self._turns, Key={"turnId": {"S": turn_id}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        data = _fields(item)
        return Turn(
            turn_id=data["turnId"],
            user_id=data["userId"],
            connection_id=data["connectionId"],
            prompt=data.get("prompt", ""),
            session_id=data["sessionId"],
            status=data["status"],
            conversation_id=data.get("conversationId"),
            request_id=data.get("requestId"),
            memory_id=data.get("memoryId"),
            trace=bool(data.get("trace", False)),
            created_at=data.get("createdAt", 0),
            expires_at=data.get("expiresAt", 0),
            answer=data.get("answer", ""),
            error_code=data.get("errorCode"),
            error_message=data.get("errorMessage"),
            stats=json.loads(data["stats"]) if data.get("stats") else {},
        )

    def claim_turn(self, turn_id: str) -> bool:
        """Move a queued turn to running; False if someone already did (a redelivery)."""
        return self._transition(turn_id, QUEUED, RUNNING, claimedAt=now_ms())

    def finish_turn(
        self,
        turn_id: str,
        status: str,
        answer: str,
        stats: Dict[str, Any],
        error_code: Optional[str] = None,
        error_message: Optional[str] = None,
    ) -> bool:
        """Record a running turn's outcome; False if it was not running."""
        return self._transition(
            turn_id,
            RUNNING,
            status,
            answer=answer,
            stats=stats,
            errorCode=error_code,
            errorMessage=error_message,
            finishedAt=now_ms(),
        )

    def _transition(self, turn_id: str, expected: str, status: str, **fields: Any) -> bool:
        values = _item(status=status, **fields)
        names = {f"#{name}": name for name in values}
        assignments = ", ".join(f"#{name} = :{name}" for name in values)
        try:
            self._db.update_item(
                TableName=self._turns,
                Key={"turnId": {"S": turn_id}},
                UpdateExpression=f"SET {assignments}",
                ConditionExpression="#status = :expected",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    **{f":{name}": value for name, value in values.items()},
                    ":expected": {"S": expected},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True
