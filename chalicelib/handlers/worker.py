"""The SQS worker: streams every turn of its batch at once and reports the records to retry.

A record fails (SQS brings it back in seconds, and dead-letters it after ``maxReceiveCount``)
only when nothing was sent to the agent yet: an unreadable body or an outage before the claim.
Everything after the claim ends the turn with a terminal event instead. How the batch is served
(concurrently, refilled from the queue) is ``chalicelib.turns.pool``'s business.
"""
from __future__ import annotations

from typing import Any, Dict, List

from chalicelib.runtime import Runtime
from chalicelib.turns.pool import TurnPool
from chalicelib.turns.queue import Delivery


def handle_batch(runtime: Runtime, records: List[Dict[str, Any]], context: Any) -> Dict[str, Any]:
    pool = TurnPool(runtime, context.get_remaining_time_in_millis)
    failed = pool.run(Delivery.from_record(record) for record in records)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
