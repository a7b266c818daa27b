"""The local SQS event source: batches as the app's setting asks, failures left to come back."""
import threading

import boto3
import pytest

from devserver.poller import SqsPoller
from tests.support.timing import wait_until


@pytest.fixture
def queue():
    from moto import mock_aws

    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        yield sqs, sqs.create_queue(QueueName="turns", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]


def test_a_backlog_is_handed_out_in_batches_of_the_configured_size(queue):
    sqs, url = queue
    for index in range(15):
        sqs.send_message(QueueUrl=url, MessageBody=f"turn-{index}")
    batches, lock = [], threading.Lock()

    def handler(event, context):
        with lock:
            batches.append([record["body"] for record in event["Records"]])
        return {"batchItemFailures": []}

    poller = SqsPoller(sqs, url, handler, batch_size=10, max_concurrency=1).start()
    try:
        wait_until(lambda: sum(map(len, batches)) == 15, 15, "every message handed out")
    finally:
        poller.stop()
    assert sorted(len(batch) for batch in batches) == [5, 10]  # one at a time: the backlog, then the rest
    assert poller.stats()["largest_batch"] == 10
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_reported_failures_stay_on_the_queue_and_the_rest_are_deleted(queue):
    sqs, url = queue
    for body in ("good", "bad"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    handled = threading.Event()

    def handler(event, context):
        handled.set()
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"]}

    poller = SqsPoller(sqs, url, handler, batch_size=10, max_concurrency=1).start()
    try:
        wait_until(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                   ["ApproximateNumberOfMessagesNotVisible"] == "1" and handled.is_set(), 15, "the good one deleted")
    finally:
        poller.stop()
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == ("0", "1")
