"""SNS's envelope on a subscription queue, as the event Lambda hands a subscribed function."""
import json

import pytest
from chalice import Chalice

from devserver.lambda_context import LambdaContext
from devserver.poller import sns_events
from devserver.sns_events import envelope, sns_event
from devserver.sqs_events import received_message

TOPIC = "arn:aws:sns:us-east-1:123456789012:agentstream-documents"
SUBSCRIPTION = TOPIC + ":2bcfbf39-05c3-41de-beaa-fcfcc21c8f55"
MESSAGE = json.dumps({"documentId": "d1", "owner": "alice", "fileName": "a.pdf"})


def delivered(subject=None, attributes=True):
    """A message body as SNS puts it on an SQS subscription (moto's, as AWS's: sorted keys, indented)."""
    body = {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": TOPIC,
        "Message": MESSAGE,
        "Timestamp": "2026-01-02T12:45:07.000Z",
        "SignatureVersion": "2",
        "Signature": "c2lnbmF0dXJl",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={SUBSCRIPTION}",
    }
    if subject:
        body["Subject"] = subject
    if attributes:
        body["MessageAttributes"] = {"status": {"Type": "String", "Value": "indexed"}}
    return json.dumps(body, sort_keys=True, indent=2, separators=(",", ": "))


def test_the_envelope_becomes_one_record_of_lambdas_sns_event():
    event = sns_event(envelope(delivered()), SUBSCRIPTION)
    (record,) = event["Records"]
    assert (record["EventSource"], record["EventVersion"], record["EventSubscriptionArn"]) == ("aws:sns", "1.0", SUBSCRIPTION)
    sns = record["Sns"]
    assert list(sns) == ["Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp", "SignatureVersion",
                         "Signature", "SigningCertUrl", "UnsubscribeUrl", "MessageAttributes"]
    assert sns["Message"] == MESSAGE and sns["TopicArn"] == TOPIC and sns["Subject"] is None
    assert sns["MessageAttributes"] == {"status": {"Type": "String", "Value": "indexed"}}
    assert sns["SigningCertUrl"].endswith(".pem") and "SubscriptionArn=" in sns["UnsubscribeUrl"]


def test_subject_is_kept_and_attributes_are_always_there():
    sns = sns_event(envelope(delivered(subject="hello", attributes=False)), SUBSCRIPTION)["Records"][0]["Sns"]
    assert sns["Subject"] == "hello" and sns["MessageAttributes"] == {}


def test_a_raw_delivery_or_other_body_is_not_an_envelope():
    for body in (MESSAGE, "[]", json.dumps({"Type": "SubscriptionConfirmation", "Message": "m"})):
        with pytest.raises(ValueError):
            envelope(body)


def test_a_chalice_sns_handler_reads_the_event():
    app = Chalice(app_name="notices")
    seen = []

    @app.on_sns_message(topic="agentstream-documents", name="document_notices")
    def notices(event):
        seen.append((event.message, event.subject, event.message_attributes["status"]["Value"]))

    build = sns_events(SUBSCRIPTION)
    event = build([received_message(delivered())], "arn:aws:sqs:us-east-1:123456789012:notices", "us-east-1")
    app.handler_map["document_notices"](event, LambdaContext.for_invocation("document_notices"))
    assert seen == [(MESSAGE, None, "indexed")]
    with pytest.raises(ValueError):  # SNS invokes once per notification
        build([received_message(delivered()), received_message(delivered())], "arn", "us-east-1")
