"""DynamoDB records: connections, turns and rate-limit buckets.

Connections live only as long as a WebSocket (plus a TTL for the ones whose $disconnect never
ran); turns outlive them so an answer can be read back after a drop. Every change of a turn's
state is a conditional write: a worker owns a turn through its claim id, so two workers can never
both run it, and a worker that lost its turn (cancelled, taken over) finds out on its next write.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from chalicelib.ratelimit import Bucket, Decision, decide
from chalicelib.settings import CONNECTION_TTL_S

# Turn statuses.
QUEUED = "queued"
RUNNING = "running"
WAITING = "waiting"  # paused: the agent asked the client to run a tool (return of control)
DONE = "done"
ERROR = "error"


def now_ms() -> int:
    return int(time.time() * 1000)


class TurnExists(Exception):
    """A turn with that id is already recorded (a repeated request id)."""


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
    connection_id: str  # where the turn's events go; changes when a client resumes elsewhere
    prompt: str
    session_id: str
    status: str = QUEUED
    origin_connection_id: str = ""  # the connection that asked (its in-flight count)
    conversation_id: Optional[str] = None
    request_id: Optional[str] = None
    memory_id: Optional[str] = None
    trace: bool = False
    created_at: int = 0  # epoch ms
    expires_at: int = 0  # epoch s, TTL
    claim_id: Optional[str] = None
    cancel_requested: bool = False
    resumed_at: Optional[int] = None  # the last resume (epoch ms): its client wants the turn from seq 1
    answer: str = ""
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    error_retryable: bool = False
    stats: Dict[str, Any] = field(default_factory=dict)
    control: Dict[str, Any] = field(default_factory=dict)  # the agent's request: invocationId, inputs
    control_results: Dict[str, Any] = field(default_factory=dict)  # the client's answer: invocationId, results

    @property
    def finished(self) -> bool:
        return self.status in (DONE, ERROR)


@dataclass(frozen=True)
class TurnState:
    """What a running turn's worker watches: who owns it, where its events go, whether to stop."""

    status: str
    claim_id: Optional[str]
    connection_id: str
    cancel_requested: bool
    resumed_at: Optional[int] = None

    def still(self, claim_id: Optional[str], connection_id: str, resumed_at: Optional[int]) -> bool:
        """Running, owned by that claim, streaming to that connection as last resumed, not cancelled."""
        return (
            self.status == RUNNING
            and self.claim_id == claim_id
            and self.connection_id == connection_id
            and self.resumed_at == resumed_at
            and not self.cancel_requested
        )


# ---- marshalling: the few attribute types we use, without boto3's Decimal-returning serializer

def _item(**fields: Any) -> Dict[str, Dict[str, Any]]:
    item: Dict[str, Dict[str, Any]] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            item[name] = {"BOOL": value}
        elif isinstance(value, (int, float)):
            item[name] = {"N": repr(value)}
        elif isinstance(value, dict):
            item[name] = {"S": json.dumps(value, separators=(",", ":"))}
        else:
            item[name] = {"S": str(value)}
    return item


def _value(attr: Dict[str, Any]) -> Any:
    if "S" in attr:
        return attr["S"]
    if "N" in attr:
        number = attr["N"]
        return float(number) if any(c in number for c in ".eE") else int(number)
    if "BOOL" in attr:
        return attr["BOOL"]
    return None


def _fields(item: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    return {name: _value(attr) for name, attr in item.items()}


def _turn(item: Dict[str, Dict[str, Any]]) -> Turn:
    data = _fields(item)
    return Turn(
        turn_id=data["turnId"],
        user_id=data["userId"],
        connection_id=data["connectionId"],
        prompt=data.get("prompt", ""),
        session_id=data["sessionId"],
        status=data["status"],
        origin_connection_id=data.get("originConnectionId", data["connectionId"]),
        conversation_id=data.get("conversationId"),
        request_id=data.get("requestId"),
        memory_id=data.get("memoryId"),
        trace=bool(data.get("trace", False)),
        created_at=data.get("createdAt", 0),
        expires_at=data.get("expiresAt", 0),
        claim_id=data.get("claimId"),
        cancel_requested=bool(data.get("cancelRequested", False)),
        resumed_at=data.get("resumedAt"),
        answer=data.get("answer", ""),
        error_code=data.get("errorCode"),
        error_message=data.get("errorMessage"),
        error_retryable=bool(data.get("errorRetryable", False)),
        stats=json.loads(data["stats"]) if data.get("stats") else {},
        control=json.loads(data["control"]) if data.get("control") else {},
        control_results=json.loads(data["controlResults"]) if data.get("controlResults") else {},
    )


def _resumed_condition(resumed_at: Optional[int]) -> str:
    return "attribute_not_exists(resumedAt)" if resumed_at is None else "resumedAt = :resumed"


def _resumed_values(resumed_at: Optional[int]) -> Dict[str, Any]:
    return {} if resumed_at is None else {":resumed": {"N": str(resumed_at)}}


class Store:
    """Reads and conditional writes of connection, turn and rate-limit records."""

    def __init__(
        self,
        dynamodb: Any,
        connections_table: str,
        turns_table: str,
        turn_ttl_s: int,
        rate_limits_table: str = "",
    ) -> None:
        self._db = dynamodb
        self._connections = connections_table
        self._turns = turns_table
        self._turn_ttl_s = turn_ttl_s
        self._rate_limits = rate_limits_table

    def _update(self, table: str, key: Dict[str, Any], condition: str, set_fields: Dict[str, Any], **kwargs: Any) -> Any:
        """SET ``set_fields`` if ``condition`` holds (``#name``/``:name`` placeholders); None if not."""
        values = _item(**set_fields)
        names = {f"#{name}": name for name in values}
        names.update(kwargs.pop("names", {}))
        params: Dict[str, Any] = {
            "TableName": table,
            "Key": key,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {**{f":{n}": v for n, v in values.items()}, **kwargs.pop("values", {})},
            **kwargs,
        }
        if values:
            params["UpdateExpression"] = "SET " + ", ".join(f"#{name} = :{name}" for name in values)
        try:
            return self._db.update_item(**params)
        except self._db.exceptions.ConditionalCheckFailedException:
            return None

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
                inFlight=0,
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

    def enter_flight(self, connection_id: str, cap: int) -> bool:
        """Count one more turn in flight on the connection, unless it already has ``cap``."""
        return (
            self._add_in_flight(connection_id, 1, "attribute_exists(connectionId) AND #inFlight < :cap", cap)
            is not None
        )

    def leave_flight(self, connection_id: str) -> None:
        """The turn ended: one fewer in flight (nothing to do if the connection is gone)."""
        self._add_in_flight(connection_id, -1, "attribute_exists(connectionId) AND #inFlight > :cap", 0)

    def _add_in_flight(self, connection_id: str, delta: int, condition: str, cap: int) -> Any:
        try:
            return self._db.update_item(
                TableName=self._connections,
                Key={"connectionId": {"S": connection_id}},
                UpdateExpression="ADD #inFlight :delta",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#inFlight": "inFlight"},
                ExpressionAttributeValues={":delta": {"N": str(delta)}, ":cap": {"N": str(cap)}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return None

    # ---- rate limits

    def take_token(self, user_id: str, rate_per_s: float, burst: int, attempts: int = 3) -> Decision:
        """Take one token from the user's bucket, with optimistic concurrency on its timestamp."""
        key = {"userId": {"S": user_id}}
        decision = decide(None, now_ms(), rate_per_s, burst)
        for _ in range(attempts):
            item = self._db.get_item(TableName=self._rate_limits, Key=key, ConsistentRead=True).get("Item")
            current = _fields(item) if item else None
            bucket = Bucket(float(current["tokens"]), int(current["updatedMs"])) if current else None
            decision = decide(bucket, now_ms(), rate_per_s, burst)
            if not decision.allowed:
                return decision
            condition = "attribute_not_exists(userId)" if bucket is None else "#updatedMs = :previous"
            written = self._update(
                self._rate_limits,
                key,
                condition,
                {
                    "tokens": decision.bucket.tokens,
                    "updatedMs": decision.bucket.updated_ms,
                    "expiresAt": decision.bucket.updated_ms // 1000 + 86_400,
                },
                values={":previous": {"N": str(bucket.updated_ms)}} if bucket else {},
            )
            if written is not None:
                return decision
        return Decision(False, decision.bucket, 100)  # heavy contention on one user's bucket

    # ---- turns

    def create_turn(self, turn: Turn) -> None:
        """Insert a new turn; ``TurnExists`` if its id is taken (the same request id again)."""
        turn.created_at = turn.created_at or now_ms()
        turn.expires_at = turn.expires_at or turn.created_at // 1000 + self._turn_ttl_s
        turn.origin_connection_id = turn.origin_connection_id or turn.connection_id
        try:
            self._db.put_item(
                TableName=self._turns,
                Item=_item(
                    turnId=turn.turn_id,
                    userId=turn.user_id,
                    connectionId=turn.connection_id,
                    originConnectionId=turn.origin_connection_id,
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
        except self._db.exceptions.ConditionalCheckFailedException:
            raise TurnExists(turn.turn_id) from None

    def get_turn(self, turn_id: str) -> Optional[Turn]:
        item = self._db.get_item(TableName=self._turns, Key={"turnId": {"S": turn_id}}, ConsistentRead=True).get("Item")
        return _turn(item) if item else None

    def _update_turn(self, turn_id: str, condition: str, set_fields: Dict[str, Any], **kwargs: Any) -> Optional[Turn]:
        response = self._update(
            self._turns, {"turnId": {"S": turn_id}}, condition, set_fields, ReturnValues="ALL_NEW", **kwargs
        )
        return _turn(response["Attributes"]) if response else None

    def claim_turn(self, turn_id: str) -> Optional[Turn]:
        """Move a queued turn to running under a new claim id; None if it was not queued."""
        return self._update_turn(
            turn_id,
            "#status = :queued",
            {"status": RUNNING, "claimId": uuid.uuid4().hex, "claimedAt": now_ms(), "checkpointAt": now_ms()},
            values={":queued": {"S": QUEUED}},
        )

    def turn_state(self, turn_id: str) -> Optional[TurnState]:
        """The few attributes a worker polls (a read: cheaper than any write of the item)."""
        item = self._db.get_item(
            TableName=self._turns,
            Key={"turnId": {"S": turn_id}},
            ConsistentRead=True,
            ProjectionExpression="#status, claimId, connectionId, cancelRequested, resumedAt",
            ExpressionAttributeNames={"#status": "status"},
        ).get("Item")
        if not item:
            return None
        data = _fields(item)
        return TurnState(
            data["status"], data.get("claimId"), data["connectionId"], bool(data.get("cancelRequested")), data.get("resumedAt")
        )

    def checkpoint(
        self, turn: Turn, connection_id: str, resumed_at: Optional[int], answer: Optional[str]
    ) -> Optional[TurnState]:
        """Save progress (and the heartbeat) while this worker still owns the turn and nothing was asked of it.

        Returns None when all is as before; otherwise the current state, which says why:
        the client resumed on another connection, asked to cancel, or the turn is no longer ours.
        """
        set_fields: Dict[str, Any] = {"checkpointAt": now_ms()}
        if answer is not None:
            set_fields["answer"] = answer
        written = self._update(
            self._turns,
            {"turnId": {"S": turn.turn_id}},
            "#status = :running AND #claimId = :claim AND #connectionId = :connection "
            "AND attribute_not_exists(cancelRequested) AND " + _resumed_condition(resumed_at),
            set_fields,
            names={"#status": "status", "#claimId": "claimId", "#connectionId": "connectionId"},
            values={
                ":running": {"S": RUNNING},
                ":claim": {"S": turn.claim_id or ""},
                ":connection": {"S": connection_id},
                **_resumed_values(resumed_at),
            },
        )
        return None if written is not None else self.turn_state(turn.turn_id)

    def finish_turn(
        self,
        turn: Turn,
        status: str,
        answer: str,
        stats: Dict[str, Any],
        error: Optional[Any] = None,
        connection_id: Optional[str] = None,
        resumed_at: Optional[int] = None,
    ) -> bool:
        """Record the outcome of a running turn this worker owns (and, if given, on this connection).

        ``error`` is anything with ``code``, ``message`` and ``retryable``. False means the record
        changed underneath: look at it again.
        """
        fields: Dict[str, Any] = {"status": status, "answer": answer, "stats": stats, "finishedAt": now_ms()}
        if error is not None:
            fields.update(errorCode=error.code, errorMessage=error.message, errorRetryable=error.retryable)
        return self._end_run(turn, connection_id, resumed_at, fields)

    def pause_turn(
        self, turn: Turn, answer: str, control: Dict[str, Any], connection_id: str, resumed_at: Optional[int]
    ) -> bool:
        """Park a running turn until its client answers the agent's return-of-control request."""
        fields = {
            "status": WAITING,
            "answer": answer,
            "control": control,
            "controlInvocationId": control["invocationId"],
            "pausedAt": now_ms(),
        }
        return self._end_run(turn, connection_id, resumed_at, fields)

    def _end_run(
        self, turn: Turn, connection_id: Optional[str], resumed_at: Optional[int], fields: Dict[str, Any]
    ) -> bool:
        condition = "#status = :running AND #claimId = :claim"
        values = {":running": {"S": RUNNING}, ":claim": {"S": turn.claim_id or ""}}
        names = {"#claimId": "claimId"}
        if connection_id is not None:  # and as last resumed: else the client would miss the replay
            condition += " AND #connectionId = :connection AND " + _resumed_condition(resumed_at)
            values.update({":connection": {"S": connection_id}, **_resumed_values(resumed_at)})
            names["#connectionId"] = "connectionId"
        return self._update(self._turns, {"turnId": {"S": turn.turn_id}}, condition, fields, names=names, values=values) is not None

    def continue_turn(
        self, turn_id: str, user_id: str, invocation_id: str, results: Any, connection_id: str
    ) -> Optional[Turn]:
        """Queue a waiting turn again with the client's tool results, streaming to this connection."""
        return self._update_turn(
            turn_id,
            "#userId = :user AND #status = :waiting AND #controlInvocationId = :invocation",
            {
                "status": QUEUED,
                "controlResults": {"invocationId": invocation_id, "results": results},
                "connectionId": connection_id,
            },
            names={"#userId": "userId", "#controlInvocationId": "controlInvocationId"},
            values={":user": {"S": user_id}, ":waiting": {"S": WAITING}, ":invocation": {"S": invocation_id}},
        )

    def attach(self, turn_id: str, user_id: str, connection_id: str) -> Optional[Turn]:
        """Send an unfinished turn's events to another of its owner's connections from now on."""
        return self._update_turn(
            turn_id,
            "#userId = :user AND #status IN (:queued, :running, :waiting)",
            {"connectionId": connection_id, "resumedAt": now_ms()},
            names={"#userId": "userId", "#status": "status"},
            values={
                ":user": {"S": user_id},
                ":queued": {"S": QUEUED},
                ":running": {"S": RUNNING},
                ":waiting": {"S": WAITING},
            },
        )

    def request_cancel(self, turn_id: str, user_id: str) -> Optional[Turn]:
        """Flag a running turn for its worker to stop."""
        return self._update_turn(
            turn_id,
            "#userId = :user AND #status = :running",
            {"cancelRequested": True},
            names={"#userId": "userId", "#status": "status"},
            values={":user": {"S": user_id}, ":running": {"S": RUNNING}},
        )

    def end_queued(self, turn_id: str, user_id: str, error: Any) -> Optional[Turn]:
        """End a turn no worker holds (queued or waiting: cancelled, or never queued); workers then skip it."""
        return self._update_turn(
            turn_id,
            "#userId = :user AND #status IN (:queued, :waiting)",
            {
                "status": ERROR,
                "errorCode": error.code,
                "errorMessage": error.message,
                "errorRetryable": error.retryable,
                "finishedAt": now_ms(),
            },
            names={"#userId": "userId"},
            values={":user": {"S": user_id}, ":queued": {"S": QUEUED}, ":waiting": {"S": WAITING}},
        )

    def interrupt(self, turn_id: str, error: Any, stale_before_ms: int) -> Optional[Turn]:
        """End a running turn whose worker died: its heartbeat (``checkpointAt``) went stale.

        A live worker checkpoints every control interval, so a fresh heartbeat means this is a
        duplicate delivery of a turn still being served, and it is left alone (None).
        """
        return self._update_turn(
            turn_id,
            "#status = :running AND #checkpointAt < :stale",
            {
                "status": ERROR,
                "errorCode": error.code,
                "errorMessage": error.message,
                "errorRetryable": error.retryable,
                "finishedAt": now_ms(),
            },
            names={"#checkpointAt": "checkpointAt"},
            values={":running": {"S": RUNNING}, ":stale": {"N": str(stale_before_ms)}},
        )
