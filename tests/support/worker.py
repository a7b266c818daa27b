"""Running what $default queued through the worker, as Lambda's SQS event source would (unit tests, moto)."""
from __future__ import annotations

from typing import Any, List

import boto3

from tests.support.events import sqs_event


def drain_queue(settings: Any) -> List[str]:
    """Every queued message's body, deleting them (the worker is then invoked with them by hand)."""
    sqs = boto3.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=settings.turn_queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=settings.turn_queue_url, ReceiptHandle=message["ReceiptHandle"])


def run_queued(client: Any, settings: Any) -> Any:
    """Invoke ``turn_worker`` with everything queued, in one batch; its answer (batch item failures)."""
    return client.lambda_.invoke("turn_worker", sqs_event(drain_queue(settings))).payload
