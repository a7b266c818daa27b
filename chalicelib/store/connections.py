"""The connections table: who is on the other end of each WebSocket, and their turns in flight.

A record lives as long as its WebSocket, plus a TTL for the ones whose $disconnect never ran.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, List, Optional

from chalicelib.settings import CONNECTION_TTL_S
from chalicelib.store.items import Table, from_item, now_ms, to_item


BY_USER = "ByUser"  # the global index: a user's open connections


@dataclass(frozen=True)
class Connection:
    connection_id: str
    user_id: str
    connected_at: int  # epoch ms
    expires_at: int  # epoch s, the table's TTL attribute


class ConnectionStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._table = Table(dynamodb, table)

    @staticmethod
    def _key(connection_id: str) -> Any:
        return {"connectionId": {"S": connection_id}}

    def put(self, connection_id: str, user_id: str) -> Connection:
        connected_at = now_ms()
        conn = Connection(connection_id, user_id, connected_at, connected_at // 1000 + CONNECTION_TTL_S)
        self._table.put(
            to_item(
                connectionId=conn.connection_id,
                userId=conn.user_id,
                connectedAt=conn.connected_at,
                expiresAt=conn.expires_at,
                inFlight=0,
            )
        )
        return conn

    def get(self, connection_id: str) -> Optional[Connection]:
        item = self._table.get(self._key(connection_id))
        if not item:
            return None
        data = from_item(item)
        if data.get("expiresAt", 0) < time.time():
            return None  # TTL deletion lags by up to days; an expired record is no record
        return Connection(data["connectionId"], data["userId"], data["connectedAt"], data["expiresAt"])

    def of_user(self, user_id: str, limit: int = 100) -> List[str]:
        """The ids of the user's open connections (the ``ByUser`` index: what a push to a user reaches)."""
        items, _ = self._table.query("#userId = :user", {":user": {"S": user_id}}, limit, None, BY_USER)
        return [item["connectionId"]["S"] for item in items]

    def delete(self, connection_id: str) -> None:
        self._table.delete(self._key(connection_id))

    def enter_flight(self, connection_id: str, cap: int) -> bool:
        """Count one more turn in flight on the connection, unless it already has ``cap``."""
        return self._add_in_flight(connection_id, 1, "attribute_exists(connectionId) AND #inFlight < :cap", cap)

    def leave_flight(self, connection_id: str) -> None:
        """A turn ended: one fewer in flight (nothing to do if the connection is gone)."""
        self._add_in_flight(connection_id, -1, "attribute_exists(connectionId) AND #inFlight > :cap", 0)

    def _add_in_flight(self, connection_id: str, delta: int, condition: str, cap: int) -> bool:
        return (
            self._table.update(
                self._key(connection_id),
                condition,
                {},
                values={":delta": {"N": str(delta)}, ":cap": {"N": str(cap)}},
                update="ADD #inFlight :delta",
            )
            is not None
        )

    def count_frame(self, connection_id: str, window_s: int, limit: int) -> int:
        """Count a frame against the connection's allowance (``limit`` per ``window_s`` window).

        Returns 0 when the frame is allowed, else the milliseconds until the next window: a cheap
        fixed-window counter (one conditional write per frame) on the connection's own record.
        """
        now = now_ms()
        window = now // (window_s * 1000)
        for _ in range(2):  # a frame racing this one may have opened the window: count again
            counted = self._table.update(
                self._key(connection_id),
                "#frameWindow = :window AND #frames < :limit",
                {},
                values={":window": {"N": str(window)}, ":limit": {"N": str(limit)}, ":one": {"N": "1"}},
                update="ADD #frames :one",
            )
            if counted is not None:
                return 0
            opened = self._table.update(
                self._key(connection_id),
                "attribute_exists(connectionId) AND (attribute_not_exists(#frameWindow) OR #frameWindow < :window)",
                {"frameWindow": window, "frames": 1},
                values={":window": {"N": str(window)}},
            )
            if opened is not None:
                return 0
        record = self._table.get(self._key(connection_id))
        if record is None or int(record.get("frames", {}).get("N", "0")) < limit:
            return 0  # no record (the handler answers for itself), or a count that moved on
        return (window + 1) * window_s * 1000 - now
