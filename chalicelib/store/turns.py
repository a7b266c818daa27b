"""The turns table: every change of a turn's state is a conditional write.

A worker owns a turn through its claim id, so two workers can never both run it, and a worker
that lost its turn (cancelled, taken over, interrupted) finds out on its next write. Attribute
names come from the turn's record (``chalicelib.turns.record``), the one list of its fields.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from chalicelib.store.items import Item, Table, decode, encode, now_ms, placeholders
from chalicelib.turns.outcomes import Failure, Status
from chalicelib.turns.record import ATTRIBUTES, Turn, TurnState, failure_fields, resumer

_FIELDS = {attribute: name for name, attribute in ATTRIBUTES.items()}
BY_SESSION = "BySession"  # the global index: a session's (a user's conversation's) turns by creation
_JSON_FIELDS = {f.name for f in fields(Turn) if f.default_factory is dict}
_UNFINISHED = {f":{status.value}": {"S": status.value} for status in (Status.QUEUED, Status.RUNNING, Status.WAITING)}


class TurnExists(Exception):
    """A turn with that id is already recorded (a repeated request id)."""


def _attributes(values: Mapping[str, Any]) -> Item:
    """Field values under their attribute names; None and empty dicts are not stored."""
    return {ATTRIBUTES[name]: encode(value) for name, value in values.items() if value is not None and not _empty(value)}


def _empty(value: Any) -> bool:
    return isinstance(value, (dict, list)) and not value


def turn_item(turn: Turn) -> Item:
    """The whole record as DynamoDB stores it."""
    return _attributes({f.name: getattr(turn, f.name) for f in fields(Turn)})


def _field_value(name: str, attr: Mapping[str, Any]) -> Any:
    value = decode(attr)
    if name in _JSON_FIELDS:
        return json.loads(value) if value else {}
    if name == "status":
        return Status(value)
    return value


def turn_from_item(item: Item) -> Turn:
    values = {_FIELDS[attr]: _field_value(_FIELDS[attr], value) for attr, value in item.items() if attr in _FIELDS}
    turn = Turn(**values)
    turn.origin_connection_id = turn.origin_connection_id or turn.connection_id
    return turn


def _resumed(resumes: int) -> Tuple[str, Item]:
    """The condition "resumed exactly ``resumes`` times", and its value."""
    if resumes == 0:
        return "attribute_not_exists(#resumers)", {}
    return "size(#resumers) = :resumes", {":resumes": {"N": str(resumes)}}


class TurnStore:
    def __init__(self, dynamodb: Any, table: str, ttl_s: int) -> None:
        self._table = Table(dynamodb, table)
        self._ttl_s = ttl_s

    @staticmethod
    def _key(turn_id: str) -> Item:
        return {"turnId": {"S": turn_id}}

    def _change(
        self,
        turn_id: str,
        condition: str,
        changes: Mapping[str, Any],
        values: Optional[Item] = None,
        also: str = "",
        remove: Sequence[str] = (),
    ) -> Optional[Turn]:
        """Set ``changes`` (field name -> value) if ``condition`` holds: the turn as now stored, or None.

        ``condition`` and ``also`` (more SET clauses) name attributes as ``#attribute``, their
        values come in ``values``; ``remove`` lists fields to delete.
        """
        item = _attributes(changes)
        sets = [f"#{attr} = :{attr}" for attr in item] + ([also] if also else [])
        update = "SET " + ", ".join(sets)
        if remove:
            update += " REMOVE " + ", ".join(f"#{ATTRIBUTES[name]}" for name in remove)
        written = self._table.update(
            self._key(turn_id),
            condition,
            {},
            values={**{f":{attr}": value for attr, value in item.items()}, **(values or {})},
            update=update,
            ReturnValues="ALL_NEW",
        )
        return turn_from_item(written["Attributes"]) if written else None

    # ---- reads

    def get(self, turn_id: str) -> Optional[Turn]:
        item = self._table.get(self._key(turn_id))
        return turn_from_item(item) if item else None

    def in_session(self, session_id: str, limit: int, after: Optional[Dict[str, Any]] = None
                   ) -> Tuple[List[Turn], Optional[Dict[str, Any]]]:
        """A page of a session's turns (a user's conversation), oldest first, through ``BySession``;
        ``after`` (and the page's end) is where a page ends, without the session."""
        start = None
        if after is not None:
            start = {**self._key(str(after["turnId"])), "sessionId": {"S": session_id},
                     "createdAt": {"N": str(int(after["createdAt"]))}}
        items, last = self._table.query("#sessionId = :session", {":session": {"S": session_id}}, limit, start, BY_SESSION)
        end = None if last is None else {"turnId": last["turnId"]["S"], "createdAt": int(last["createdAt"]["N"])}
        return [turn_from_item(item) for item in items], end

    def state(self, turn_id: str) -> Optional[TurnState]:
        """The few attributes a worker polls (a projected read: cheaper than any write of the item)."""
        projection = ", ".join(f"#{ATTRIBUTES[f.name]}" for f in fields(TurnState))
        item = self._table.get(
            self._key(turn_id), ProjectionExpression=projection, ExpressionAttributeNames=placeholders(projection)
        )
        if not item:
            return None
        return TurnState(**{_FIELDS[attr]: _field_value(_FIELDS[attr], value) for attr, value in item.items()})

    # ---- $default's writes

    def create(self, turn: Turn) -> None:
        """Insert a new turn; ``TurnExists`` if its id is taken (the same request id again)."""
        turn.created_at = turn.created_at or now_ms()
        turn.expires_at = turn.expires_at or turn.created_at // 1000 + self._ttl_s
        turn.origin_connection_id = turn.origin_connection_id or turn.connection_id
        if not self._table.put(turn_item(turn), "attribute_not_exists(turnId)"):
            raise TurnExists(turn.turn_id)

    def replace(self, old: Turn, turn: Turn) -> bool:
        """Record ``turn`` in place of ``old``, a turn with its id that will never run (it ended in a
        retryable failure, or its ask died before admitting it) and is asked for again; False if
        the record changed since ``old`` was read."""
        turn.created_at = now_ms()
        turn.expires_at = turn.created_at // 1000 + self._ttl_s
        turn.origin_connection_id = turn.connection_id
        return self._table.put(
            turn_item(turn),
            "#status = :status AND #createdAt = :created AND attribute_not_exists(#admittedAt)"
            if old.admitted_at is None
            else "#status = :status AND #createdAt = :created AND #admittedAt = :admitted",
            values={
                ":status": {"S": old.status.value},
                ":created": {"N": str(old.created_at)},
                **({} if old.admitted_at is None else {":admitted": {"N": str(old.admitted_at)}}),
            },
        )

    def admit(self, turn_id: str) -> Optional[Turn]:
        """The ask passed the rate limits: its duplicates may now be told it is accepted."""
        return self._change(turn_id, "#status = :queued", {"admitted_at": now_ms()}, {":queued": _UNFINISHED[":queued"]})

    def attach(self, turn_id: str, user_id: str, connection_id: str, from_seq: int = 0) -> Optional[Turn]:
        """Send an unfinished turn's events to this connection of its owner from now on (after
        ``from_seq``, which it has); the turn's worker sees the resume and acts on it."""
        return self._change(
            turn_id,
            "#userId = :user AND #status IN (:queued, :running, :waiting)",
            {"connection_id": connection_id},
            {":user": {"S": user_id}, **_UNFINISHED, ":empty": {"L": []},
             ":resumer": {"L": [{"S": resumer(connection_id, from_seq)}]}},
            also="#resumers = list_append(if_not_exists(#resumers, :empty), :resumer)",
        )

    def request_cancel(self, turn_id: str, user_id: str) -> Optional[Turn]:
        """Flag a running turn for its worker to stop."""
        return self._change(
            turn_id,
            "#userId = :user AND #status = :running",
            {"cancel_requested": True},
            {":user": {"S": user_id}, ":running": _UNFINISHED[":running"]},
        )

    def end_unclaimed(self, turn_id: str, user_id: str, failure: Failure) -> Optional[Turn]:
        """End a turn no worker holds (queued or waiting: cancelled, or never queued); workers then skip it."""
        return self._change(
            turn_id,
            "#userId = :user AND #status IN (:queued, :waiting)",
            {"status": Status.ERROR, **failure_fields(failure), "finished_at": now_ms()},
            {":user": {"S": user_id}, ":queued": _UNFINISHED[":queued"], ":waiting": _UNFINISHED[":waiting"]},
        )

    def continue_with(
        self, turn_id: str, user_id: str, invocation_id: str, results: Any, connection_id: str
    ) -> Optional[Turn]:
        """Queue a waiting turn again with the client's tool results, streaming to this connection."""
        return self._change(
            turn_id,
            "#userId = :user AND #status = :waiting AND #controlInvocationId = :invocation",
            {
                "status": Status.QUEUED,
                "control_results": {"invocationId": invocation_id, "results": results},
                "connection_id": connection_id,
            },
            {":user": {"S": user_id}, ":waiting": _UNFINISHED[":waiting"], ":invocation": {"S": invocation_id}},
            remove=["resumers"],  # served by $default while it waited; the next run starts afresh
        )

    # ---- the worker's writes

    def claim(self, turn_id: str) -> Optional[Turn]:
        """Move a queued turn to running under a new claim id; None if it was not queued."""
        now = now_ms()
        return self._change(
            turn_id,
            "#status = :queued",
            {"status": Status.RUNNING, "claim_id": uuid.uuid4().hex, "claimed_at": now, "checkpoint_at": now},
            {":queued": _UNFINISHED[":queued"]},
        )

    def checkpoint(self, turn: Turn, resumes: int, progress: Optional[Mapping[str, Any]] = None) -> Optional[TurnState]:
        """Save the heartbeat (and ``progress``: the answer so far and its numbering) while this
        worker owns the turn and nothing was asked of it since ``resumes`` resumes.

        Returns None when all is as before; otherwise the current state, which says why:
        the client resumed, asked to cancel, or the turn is no longer ours.
        """
        changes: Dict[str, Any] = {"checkpoint_at": now_ms(), **(progress or {})}
        condition, values = self._owned(turn, resumes)
        not_cancelled = " AND (attribute_not_exists(#cancelRequested) OR #cancelRequested = :false)"
        written = self._change(turn.turn_id, condition + not_cancelled, changes, {**values, ":false": {"BOOL": False}})
        return None if written is not None else self.state(turn.turn_id)

    def finish(
        self,
        turn: Turn,
        status: Status,
        stats: Dict[str, Any],
        failure: Optional[Failure] = None,
        resumes: Optional[int] = None,
        progress: Optional[Mapping[str, Any]] = None,
    ) -> bool:
        """Record the outcome (and ``progress``) of a running turn this worker owns, if it was
        resumed exactly ``resumes`` times (None: whatever happened).

        False means the record changed underneath: look at it again.
        """
        changes: Dict[str, Any] = {"status": status, "stats": stats, "finished_at": now_ms(), **(progress or {})}
        if failure is not None:
            changes.update(failure_fields(failure))
        condition, values = self._owned(turn, resumes)
        return self._change(turn.turn_id, condition, changes, values) is not None

    def pause(self, turn: Turn, control: Dict[str, Any], resumes: int, progress: Mapping[str, Any]) -> bool:
        """Park a running turn until its client answers the agent's return-of-control request."""
        changes = {
            "status": Status.WAITING,
            "control": control,
            "control_invocation_id": control["invocationId"],
            "paused_at": now_ms(),
            **progress,
        }
        condition, values = self._owned(turn, resumes)
        return self._change(turn.turn_id, condition, changes, values) is not None

    def interrupt(self, turn_id: str, failure: Failure, stale_before_ms: int) -> Optional[Turn]:
        """End a running turn whose worker died: its heartbeat (``checkpointAt``) went stale.

        A live worker checkpoints every control interval, so a fresh heartbeat means this is a
        duplicate delivery of a turn still being served, and it is left alone (None).
        """
        return self._change(
            turn_id,
            "#status = :running AND #checkpointAt < :stale",
            {"status": Status.ERROR, **failure_fields(failure), "finished_at": now_ms()},
            {":running": _UNFINISHED[":running"], ":stale": {"N": str(stale_before_ms)}},
        )

    @staticmethod
    def _owned(turn: Turn, resumes: Optional[int]) -> Tuple[str, Item]:
        """Running under this worker's claim (and, if given, resumed exactly ``resumes`` times:
        else a client who resumed meanwhile would miss its replay)."""
        condition = "#status = :running AND #claimId = :claim"
        values: Item = {":running": _UNFINISHED[":running"], ":claim": {"S": turn.claim_id or ""}}
        if resumes is not None:
            resumed, resumed_values = _resumed(resumes)
            condition += " AND " + resumed
            values.update(resumed_values)
        return condition, values
