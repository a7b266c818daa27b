"""Lambda events for the app's handlers, built by the local stack's own builders (``devserver.apigw.events``,
``devserver.sqs_events``), with the bench's ids and names."""
from __future__ import annotations

import json
import time
from typing import Any, Dict

from devserver.apigw import events as apigw_events
from devserver.lambda_context import LambdaContext

API_ID = "local"
STAGE = "local"
# The deployed function names (Chalice: <app>-<stage>-<function>).
FUNCTIONS = {
    "websocket_connect": "agentstream-dev-websocket_connect",
    "websocket_message": "agentstream-dev-websocket_message",
    "websocket_disconnect": "agentstream-dev-websocket_disconnect",
    "turn_worker": "agentstream-dev-turn_worker",
}


def _facts(connection_id: str) -> apigw_events.ConnectionFacts:
    return apigw_events.ConnectionFacts(connection_id, API_ID, STAGE, "127.0.0.1", user_agent="bench")


def connect(connection_id: str, token: str) -> Dict[str, Any]:
    return apigw_events.connect_event(_facts(connection_id), [("Host", "127.0.0.1")], [("token", token)])


def message(connection_id: str, body: Dict[str, Any]) -> Dict[str, Any]:
    return apigw_events.message_event(_facts(connection_id), json.dumps(body))


def disconnect(connection_id: str) -> Dict[str, Any]:
    return apigw_events.disconnect_event(_facts(connection_id), 1000, "Bye")


def sqs(messages: list, queue_arn: str, region: str) -> Dict[str, Any]:
    """The turn worker's event for messages received from the queue (imported late: the cold-start
    probe imports this module and should load no more of devserver than it needs)."""
    from devserver.sqs_events import sqs_event

    return sqs_event(messages, queue_arn, region)


def context(handler: str, memory_mb: int = 128) -> LambdaContext:
    return LambdaContext.for_invocation(FUNCTIONS[handler], 900.0, memory_limit_in_mb=memory_mb)


def token(user: str) -> str:
    from devserver.tokens import issue_token
    from bench.stack import JWT_SECRET

    return issue_token(user, JWT_SECRET, ttl_s=3600)


def receive_turns(sqs_client: Any, queue_url: str, count: int, timeout: float = 15.0) -> list:
    """``count`` messages from the turn queue (deleted from it), oldest first."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(got)} of {count} turns were queued")
        response = sqs_client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(10, count - len(got)), WaitTimeSeconds=1,
            AttributeNames=["All"], MessageAttributeNames=["All"],
        )
        for item in response.get("Messages", []):
            got.append(item)
            sqs_client.delete_message(QueueUrl=queue_url, ReceiptHandle=item["ReceiptHandle"])
    return got
