"""Lambda events for unit tests: thin wrappers over the builders the local stack itself uses.

The shapes live in ``devserver/apigw/events.py`` (API Gateway WebSocket routes) and
``devserver/sqs_events.py`` (Lambda's SQS event source); here are only the defaults tests share.
"""
from __future__ import annotations

import base64
from typing import Any, Dict, List, Optional

from devserver.apigw import events as apigw_events
from devserver.sqs_events import received_message
from devserver.sqs_events import sqs_event as _sqs_event

API_ID = "abc123"
STAGE = "dev"
REGION = "us-east-1"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:agentstream-turns"


def ws_event(
    route: str,
    connection_id: str = "conn-1",
    body: Optional[str] = None,
    query: Optional[Dict[str, str]] = None,
    headers: Optional[Dict[str, str]] = None,
    binary: bool = False,
) -> Dict[str, Any]:
    """A WebSocket route event as API Gateway sends it to a Lambda proxy integration.

    ``body`` is the text the client sent; with ``binary`` it arrives as a binary frame
    (base64 in the event, as API Gateway passes it on).
    """
    facts = apigw_events.ConnectionFacts(
        connection_id, API_ID, STAGE, f"{API_ID}.execute-api.{REGION}.amazonaws.com", user_agent="pytest"
    )
    if route == "$connect":
        handshake = {"Host": "example", "Sec-WebSocket-Version": "13", **(headers or {})}
        return apigw_events.connect_event(facts, handshake.items(), (query or {}).items())
    if route == "$disconnect":
        return apigw_events.disconnect_event(facts, 1000, "Client-side close frame status code '1000'")
    if binary and body is not None:
        body = base64.b64encode(body.encode()).decode()
    return apigw_events.message_event(facts, body, is_base64=binary, route_key=route)


def sqs_event(bodies: List[str], receive_count: int = 1) -> Dict[str, Any]:
    """An SQS batch as Lambda's event source mapping delivers it (message ids ``m-0``, ``m-1``, ...)."""
    messages = [
        received_message(body, message_id=f"m-{index}", receipt_handle=f"rh-{index}", receive_count=receive_count)
        for index, body in enumerate(bodies)
    ]
    return _sqs_event(messages, QUEUE_ARN, REGION)
