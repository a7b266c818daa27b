"""Each user's token usage per UTC day and month, in the rate-limits table (no table of its own).

One item per user and period, keyed ``usage#<userId>#day#2026-12-03`` and
``usage#<userId>#month#2026-12`` (the period's fixed-format suffix keeps two users' keys apart
whatever their ids hold). A turn's usage is added with one ``UpdateItem ... ADD`` per period:
DynamoDB applies each atomically, with no read first, so turns of one user ending at the same
moment (on any number of workers) never lose an increment. Items expire a week after their
period ends (``expiresAt``, the table's TTL attribute): long enough for an operator to look back.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from chalicelib.store.items import Table, now_ms
from chalicelib.usage import Period, Totals, periods

KEPT_AFTER_PERIOD_S = 7 * 86_400


def usage_key(user_id: str, period: Period) -> Dict[str, Dict[str, str]]:
    return {"userId": {"S": f"usage#{user_id}#{period.kind}#{period.name}"}}


class UsageStore:
    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], int] = now_ms) -> None:
        self._table = Table(dynamodb, table)
        self.clock = clock  # epoch ms; which period "now" is, and how long until it resets

    def add(self, user_id: str, input_tokens: int, output_tokens: int, at_ms: Optional[int] = None) -> None:
        """Add one turn's usage to the user's totals for the day and the month it ended in."""
        at = self.clock() if at_ms is None else at_ms
        for period in periods(at):
            self._table.db.update_item(
                TableName=self._table.name,
                Key=usage_key(user_id, period),
                UpdateExpression="ADD #inputTokens :in, #outputTokens :out, #turns :one SET #expiresAt = :expires",
                ExpressionAttributeNames={
                    "#inputTokens": "inputTokens",
                    "#outputTokens": "outputTokens",
                    "#turns": "turns",
                    "#expiresAt": "expiresAt",
                },
                ExpressionAttributeValues={
                    ":in": {"N": str(input_tokens)},
                    ":out": {"N": str(output_tokens)},
                    ":one": {"N": "1"},
                    ":expires": {"N": str(period.end_ms // 1000 + KEPT_AFTER_PERIOD_S)},
                },
            )

    def totals(self, user_id: str, period: Period) -> Totals:
        """The user's usage in ``period`` so far (a consistent read: a turn that ended is counted)."""
        item = self._table.get(usage_key(user_id, period))
        if not item:
            return Totals()
        return Totals(
            input_tokens=int(item.get("inputTokens", {}).get("N", "0")),
            output_tokens=int(item.get("outputTokens", {}).get("N", "0")),
            turns=int(item.get("turns", {}).get("N", "0")),
        )
