"""The SQS turn queue: the hop that lets $default answer in milliseconds.

A queued message carries only what the worker cannot read from the turn record: where the
client's API lives (api id and stage), since the worker is not invoked by API Gateway.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


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


class TurnQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def put(self, message: TurnMessage) -> None:
        self._sqs.send_message(QueueUrl=self._url, MessageBody=message.to_json())
