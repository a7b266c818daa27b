"""The Lambda event builders the local stack, the unit tests and the bench share."""

import base64
import hashlib
import re

from devserver.apigw import events
from devserver.sqs_events import received_message, sqs_event
from tests.support import events as unit_events

ID = re.compile(r"^[A-Za-z0-9+]{15}=$")
FACTS = events.ConnectionFacts("c1", "api", "dev", "api.example", user_agent="ua/1")


def test_connect_has_a_query_string_only_when_the_url_had_one():
    bare = events.connect_event(FACTS, [("Host", "api.example"), ("Connection", "Upgrade")])
    assert "queryStringParameters" not in bare and "multiValueQueryStringParameters" not in bare
    assert bare["headers"] == {"Host": "api.example"}  # hop-by-hop headers are not passed on
    ctx = bare["requestContext"]
    assert (ctx["routeKey"], ctx["eventType"], ctx["requestTimeEpoch"]) == ("$connect", "CONNECT", FACTS.connected_at)
    assert ID.match(ctx["requestId"]) and ctx["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "ua/1"}
    event = events.connect_event(FACTS, [], [("x", "1"), ("x", "2")], request_id="r1")
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["requestContext"]["requestId"] == "r1"


def test_message_and_disconnect_events_get_fresh_ids_and_times_by_default():
    message = events.message_event(FACTS, "hi")
    ctx = message["requestContext"]
    assert (ctx["routeKey"], ctx["eventType"]) == ("$default", "MESSAGE")
    assert ID.match(ctx["messageId"]) and ID.match(ctx["requestId"])
    assert ctx["identity"] == {"sourceIp": "127.0.0.1"} and message["isBase64Encoded"] is False
    gone = events.disconnect_event(FACTS, 1001, "Going away", request_id="r2", now_ms=5)
    ctx = gone["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"], ctx["requestId"]) == (1001, "Going away", "r2")
    assert ctx["requestTimeEpoch"] == 5


def test_the_unit_tests_ws_event_is_the_emulators_shape():
    connect = unit_events.ws_event("$connect", "c9", query={"token": "t"}, headers={"Authorization": "Bearer x"})
    assert connect["queryStringParameters"] == {"token": "t"}
    assert connect["headers"] == {"Host": "example", "Sec-WebSocket-Version": "13", "Authorization": "Bearer x"}
    binary = unit_events.ws_event("$default", "c9", body="{}", binary=True)
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"{}"
    assert unit_events.ws_event("$disconnect", "c9")["requestContext"]["disconnectStatusCode"] == 1000
    assert {e["requestContext"]["apiId"] for e in (connect, binary)} == {"abc123"}


def test_sqs_records_come_from_received_messages():
    message = received_message("body", message_id="m1", receipt_handle="rh1", receive_count=3)
    event = sqs_event([message], "arn:aws:sqs:eu-west-1:1:q", "eu-west-1")
    (record,) = event["Records"]
    assert (record["messageId"], record["receiptHandle"], record["body"]) == ("m1", "rh1", "body")
    assert record["md5OfBody"] == hashlib.md5(b"body").hexdigest()
    assert record["attributes"]["ApproximateReceiveCount"] == "3"
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs", "arn:aws:sqs:eu-west-1:1:q", "eu-west-1")
    fresh = received_message("x")
    assert fresh["MessageId"] != received_message("x")["MessageId"]
    assert [r["messageId"] for r in unit_events.sqs_event(["a", "b"])["Records"]] == ["m-0", "m-1"]
