"""The events Lambda's SQS event source mapping hands a function: the one builder in the repo.

The poller (``devserver.poller``) turns what ``ReceiveMessage`` returned into these events;
tests and the bench, with no queue at hand, make the ``ReceiveMessage`` side with
``received_message`` and go through the same translation, so every SQS event the app is
given has the same shape. Pure: no I/O.
"""
from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["received_message", "sqs_event", "sqs_record"]


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One received message (as ``ReceiveMessage`` returns it) as a record of the event."""
    body = message["Body"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """One batch, as one invocation of the function receives it."""
    return {"Records": [sqs_record(message, queue_arn, region) for message in messages]}


def received_message(body: str, *, message_id: str | None = None, receipt_handle: str | None = None,
                     receive_count: int = 1, sent_at_ms: int | None = None,
                     sender_id: str = "AIDAEXAMPLE") -> dict[str, Any]:
    """A message as ``ReceiveMessage(AttributeNames=["All"])`` returns it, for callers with no queue.

    Ids default to fresh ones; ``receive_count`` is how many times it has been received,
    this time included (what the dead-letter redrive counts).
    """
    sent = int(time.time() * 1000) if sent_at_ms is None else sent_at_ms
    return {
        "MessageId": message_id or str(uuid.uuid4()),
        "ReceiptHandle": receipt_handle or base64.b64encode(os.urandom(48)).decode("ascii"),
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(sent),
            "SenderId": sender_id,
            "ApproximateFirstReceiveTimestamp": str(sent),
        },
    }
