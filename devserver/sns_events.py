"""The event Lambda hands a function subscribed to an SNS topic, made from what SNS puts on a queue.

Locally an SNS topic's Lambda subscriber is played by an SQS subscription queue and a poller
(``devserver.poller``): each message on the queue is SNS's JSON envelope (``Type``, ``MessageId``,
``TopicArn``, ``Subject``, ``Message``, ``Timestamp``, ``Signature*``, ``SigningCertURL``,
``UnsubscribeURL``, ``MessageAttributes`` as ``{name: {"Type", "Value"}}``); Lambda's event has one
record per notification, with the same fields under ``Sns`` but ``SigningCertUrl`` /
``UnsubscribeUrl`` spelled so, ``Subject`` null when there is none and ``MessageAttributes`` always
present. Pure: no I/O.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["envelope", "sns_event", "sns_record"]

_RENAMED = {"SigningCertURL": "SigningCertUrl", "UnsubscribeURL": "UnsubscribeUrl"}
_ORDER = ("Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp", "SignatureVersion", "Signature",
          "SigningCertUrl", "UnsubscribeUrl", "MessageAttributes")


def envelope(body: str) -> dict[str, Any]:
    """The SNS envelope a subscription queue's message body holds (``ValueError`` if it is not one)."""
    value = json.loads(body)
    if not isinstance(value, dict) or value.get("Type") != "Notification" or "Message" not in value:
        raise ValueError("not an SNS notification envelope (is the subscription's RawMessageDelivery on?)")
    return value


def sns_record(notification: Mapping[str, Any], subscription_arn: str) -> dict[str, Any]:
    """One notification (an envelope) as a record of Lambda's SNS event."""
    sns = {_RENAMED.get(key, key): value for key, value in notification.items()}
    sns.setdefault("Subject", None)
    sns.setdefault("MessageAttributes", {})
    ordered = {key: sns.pop(key) for key in _ORDER if key in sns}
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {**ordered, **sns},
    }


def sns_event(notification: Mapping[str, Any], subscription_arn: str) -> dict[str, Any]:
    """The event of one invocation: SNS invokes a subscribed function once per notification."""
    return {"Records": [sns_record(notification, subscription_arn)]}
