"""The rate-limits table: one token bucket per user (WebSocket APIs have no usage plans).

The arithmetic is pure (``chalicelib.ratelimit``); this keeps the bucket's state with optimistic
concurrency on its timestamp, so concurrent asks of one user never spend the same token twice.
"""
from __future__ import annotations

from typing import Any, List

from chalicelib.ratelimit import Bucket, Decision, decide
from chalicelib.store.items import Table, from_item, now_ms

BUCKET_TTL_S = 86_400  # an idle user's bucket is full again long before this


class RateLimitStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._table = Table(dynamodb, table)

    def take(self, user_id: str, rate_per_s: float, burst: int, attempts: int = 3) -> Decision:
        """Take one token from the user's bucket, or say how long until there is one."""
        key = {"userId": {"S": user_id}}
        decision = decide(None, now_ms(), rate_per_s, burst)
        for _ in range(attempts):
            item = self._table.get(key)
            current = from_item(item) if item else {}
            bucket = Bucket(float(current["tokens"]), int(current["updatedMs"])) if "tokens" in current else None
            decision = decide(bucket, now_ms(), rate_per_s, burst)
            if not decision.allowed:
                return decision
            condition = "attribute_not_exists(#updatedMs)" if bucket is None else "#updatedMs = :previous"
            written = self._table.update(
                key,
                condition,
                {
                    "tokens": decision.bucket.tokens,
                    "updatedMs": decision.bucket.updated_ms,
                    "expiresAt": decision.bucket.updated_ms // 1000 + BUCKET_TTL_S,
                },
                values={":previous": {"N": str(bucket.updated_ms)}} if bucket else {},
            )
            if written is not None:
                return decision
        return Decision(False, decision.bucket, 100)  # heavy contention on one user's bucket

    # ---- the user's turns in flight, on the same item: a set of turn ids, so entering and
    # leaving are idempotent and a count that drifted can be checked against the turns themselves

    def enter_flight(self, user_id: str, turn_id: str, cap: int) -> bool:
        """Count the turn in flight for its user, unless the user already has ``cap`` others."""
        return (
            self._table.update(
                {"userId": {"S": user_id}},
                "attribute_not_exists(#inFlight) OR size(#inFlight) < :cap OR contains(#inFlight, :id)",
                {},
                values={":turn": {"SS": [turn_id]}, ":cap": {"N": str(cap)}, ":id": {"S": turn_id}},
                update="ADD #inFlight :turn",
            )
            is not None
        )

    def leave_flight(self, user_id: str, turn_id: str) -> None:
        self._table.update(
            {"userId": {"S": user_id}},
            "attribute_exists(userId)",
            {},
            values={":turn": {"SS": [turn_id]}},
            update="DELETE #inFlight :turn",
        )

    def in_flight(self, user_id: str) -> List[str]:
        item = self._table.get({"userId": {"S": user_id}})
        return list(item.get("inFlight", {}).get("SS", [])) if item else []
