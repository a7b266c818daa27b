"""Lambda events shaped like API Gateway's and SQS's: the one place tests build them."""
from __future__ import annotations

import base64
import itertools
import time
from typing import Any, Dict, List, Optional

API_ID = "abc123"
STAGE = "dev"
_ids = itertools.count(1)

_ROUTES = {
    "$connect": "CONNECT",
    "$default": "MESSAGE",
    "$disconnect": "DISCONNECT",
}


def ws_event(
    route: str,
    connection_id: str = "conn-1",
    body: Optional[str] = None,
    query: Optional[Dict[str, str]] = None,
    headers: Optional[Dict[str, str]] = None,
    binary: bool = False,
) -> Dict[str, Any]:
    """A WebSocket route event as API Gateway sends it to a Lambda proxy integration."""
    now = int(time.time() * 1000)
    request_id = f"req-{next(_ids)}"
    event: Dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": _ROUTES.get(route, "MESSAGE"),
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": now,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
            "requestId": request_id,
            "domainName": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
            "connectionId": connection_id,
            "apiId": API_ID,
        },
        "isBase64Encoded": binary,
    }
    if route == "$connect":
        headers = {"Host": "example", "Sec-WebSocket-Version": "13", **(headers or {})}
        event["headers"] = headers
        event["multiValueHeaders"] = {key: [value] for key, value in headers.items()}
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {key: [value] for key, value in query.items()}
    if route == "$default":
        event["requestContext"]["messageId"] = f"msg-{next(_ids)}"
        event["body"] = base64.b64encode(body.encode()).decode() if binary and body is not None else body
    if route == "$disconnect":
        event["requestContext"]["disconnectStatusCode"] = 1000
        event["requestContext"]["disconnectReason"] = "Client-side close frame status code '1000'"
    return event


def sqs_event(bodies: List[str], receive_count: int = 1) -> Dict[str, Any]:
    """An SQS batch as Lambda's event source mapping delivers it (distinct message ids)."""
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "receiptHandle": f"rh-{index}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": str(int(time.time() * 1000)),
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:agentstream-turns",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }
