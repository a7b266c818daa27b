"""Create the data resources from ``infra/data.json``, the same template AWS deploys.

The local stack (moto server) and the unit tests (moto in-process) both provision through here,
so a table key or queue setting changed in the template changes everywhere at once.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "data.json"


def load_template(path: Path = TEMPLATE) -> Dict[str, Any]:
    return json.loads(path.read_text())


def env_name(logical_id: str) -> str:
    """``RateLimitsTable`` -> ``RATE_LIMITS_TABLE``: the variable the app reads the name from."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", logical_id).upper()


@dataclass(frozen=True)
class Resources:
    tables: Dict[str, str]  # logical id -> table name
    turn_queue_url: str
    dead_letter_queue_url: str

    @property
    def connections_table(self) -> str:
        return self.tables["ConnectionsTable"]

    @property
    def turns_table(self) -> str:
        return self.tables["TurnsTable"]

    @property
    def rate_limits_table(self) -> str:
        return self.tables["RateLimitsTable"]

    @property
    def history_table(self) -> str:
        return self.tables["HistoryTable"]

    @property
    def conversations_table(self) -> str:
        return self.tables["ConversationsTable"]

    def env(self) -> Dict[str, str]:
        """The app's environment variables that point at these resources."""
        return {**{env_name(logical): name for logical, name in self.tables.items()}, "TURN_QUEUE_URL": self.turn_queue_url}


def create_table(dynamodb: Any, name: str, props: Dict[str, Any]) -> None:
    params: Dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in props:
            params[key] = props[key]
    dynamodb.create_table(**params)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)


def queue_attributes(props: Dict[str, Any], dlq_arn: Optional[str], visibility_timeout: Optional[int]) -> Dict[str, str]:
    attributes = {
        "VisibilityTimeout": str(visibility_timeout or props.get("VisibilityTimeout", 30)),
        "MessageRetentionPeriod": str(props.get("MessageRetentionPeriod", 345600)),
    }
    redrive = props.get("RedrivePolicy")
    if redrive and dlq_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(redrive["maxReceiveCount"])}
        )
    return attributes


def provision(
    dynamodb: Any,
    sqs: Any,
    prefix: str = "agentstream",
    visibility_timeout: Optional[int] = None,
    template: Optional[Dict[str, Any]] = None,
) -> Resources:
    """Create both tables and both queues; ``visibility_timeout`` shortens redelivery locally."""
    resources = (template or load_template())["Resources"]
    tables = {
        logical_id: f"{prefix}-" + env_name(logical_id)[: -len("_TABLE")].lower().replace("_", "-")
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }
    for logical_id, name in tables.items():
        create_table(dynamodb, name, resources[logical_id]["Properties"])
    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-turns-dlq",
        Attributes=queue_attributes(resources["TurnDeadLetterQueue"]["Properties"], None, None),
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-turns",
        Attributes=queue_attributes(resources["TurnQueue"]["Properties"], dlq_arn, visibility_timeout),
    )["QueueUrl"]
    return Resources(tables, turn_queue_url=queue_url, dead_letter_queue_url=dlq_url)


def subscribe_turn_events(events: Any, sqs: Any, bus: str = "default", prefix: str = "agentstream") -> str:
    """What a subscriber to the turn events would deploy: a rule on ``bus`` matching the app's
    source, its target an SQS queue; returns that queue's URL (tests read the events there).

    Not the app's own resource (it only puts events), so not in ``infra/data.json``: billing and
    analytics bring their own rules (docs/deploy.md, "Turn events").
    """
    from chalicelib.turns.eventbus import SOURCE

    if bus != "default":
        events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName=f"{prefix}-turn-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"{prefix}-turn-events"
    pattern = json.dumps({"source": [SOURCE]})
    rule_arn = events.put_rule(Name=rule, EventBusName=bus, EventPattern=pattern, State="ENABLED")["RuleArn"]
    # On AWS the queue must let the rule send to it; moto delivers regardless, AWS would not.
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue_url
