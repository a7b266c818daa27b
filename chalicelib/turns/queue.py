"""The SQS turn queue: the hop that lets $default answer in milliseconds.

A queued message carries only what the worker cannot read from the turn record: where the
client's API lives (api id and stage), since the worker is not invoked by API Gateway.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List


@dataclass(frozen=True)
class TurnMessage:
    turn_id: str
    api_id: str
    stage: str

    def to_json(self) -> str:
        body = {"turnId": self.turn_id, "apiId": self.api_id, "stage": self.stage}
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: str) -> "TurnMessage":
        """Parse a queued body; ``ValueError`` for anything else (a poison message)."""
        data = json.loads(body)
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("turnId", "apiId", "stage")):
            raise ValueError("not a turn message")
        return cls(data["turnId"], data["apiId"], data["stage"])


def _receives(attributes: Dict[str, Any]) -> int:
    """``ApproximateReceiveCount`` (a string in both shapes SQS hands it over); 1 if absent."""
    receives = str(attributes.get("ApproximateReceiveCount", "1"))
    return int(receives) if receives.isdigit() else 1


@dataclass(frozen=True)
class Delivery:
    """One receive of a turn message: a record of the worker's SQS event, or one the worker took
    from the queue itself (``taken``), which it must then delete or release on its own."""

    message_id: str
    receipt_handle: str
    body: str
    receives: int
    taken: bool = False

    @classmethod
    def from_record(cls, record: Dict[str, Any]) -> "Delivery":
        """A record of Lambda's SQS event (camelCase keys, attributes as strings)."""
        return cls(record.get("messageId", ""), record.get("receiptHandle", ""), record.get("body", ""),
                   _receives(record.get("attributes", {})))

    @classmethod
    def from_message(cls, message: Dict[str, Any]) -> "Delivery":
        """A message of ReceiveMessage's answer (PascalCase keys)."""
        return cls(message["MessageId"], message["ReceiptHandle"], message.get("Body", ""),
                   _receives(message.get("Attributes", {})), taken=True)


class TurnQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def put(self, message: TurnMessage) -> None:
        self._sqs.send_message(QueueUrl=self._url, MessageBody=message.to_json())

    def take(self, most: int) -> List[Delivery]:
        """Up to ``most`` (at most 10) queued turns, without waiting: a short poll, since a worker
        refilling its free slots must not hold its execution open once its own turns are done."""
        answer = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=max(1, min(10, most)),
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [Delivery.from_message(message) for message in answer.get("Messages", [])]

    def delete(self, delivery: Delivery) -> None:
        self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=delivery.receipt_handle)

    def retry_in(self, delivery: Delivery, seconds: int) -> None:
        """Make a failed delivery visible again after ``seconds`` instead of the visibility timeout."""
        self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=delivery.receipt_handle,
                                            VisibilityTimeout=seconds)
