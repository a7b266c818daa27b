"""The SQS worker: runs queued turns and reports partial batch failures.

A record fails (and SQS redelivers it, then dead-letters it after ``maxReceiveCount``) only when
nothing was sent to the agent yet: an unreadable body or an outage before the claim. Everything
after the claim ends the turn with a terminal event instead.
"""
from __future__ import annotations

from typing import Any, Dict, List

from chalicelib.logs import log_context, logger
from chalicelib.runtime import Runtime
from chalicelib.turns.queue import TurnMessage
from chalicelib.turns.run import TurnBusy, run_turn


def handle_batch(runtime: Runtime, records: List[Dict[str, Any]]) -> Dict[str, Any]:
    failures: List[Dict[str, str]] = []
    for record in records:
        message_id = record.get("messageId", "")
        with log_context(message_id=message_id):
            try:
                message = TurnMessage.from_json(record.get("body", ""))
            except ValueError:
                logger.error("unreadable turn message; left for the dead-letter queue")
                failures.append({"itemIdentifier": message_id})
                continue
            try:
                run_turn(runtime, message)
            except TurnBusy:
                logger.info("turn is being served by another worker; will look again")
                failures.append({"itemIdentifier": message_id})
            except Exception:  # noqa: BLE001 - retry this record, keep the rest of the batch
                logger.exception("turn could not start; will be retried")
                failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
