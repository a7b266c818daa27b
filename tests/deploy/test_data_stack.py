"""``infra/data.json``: what the tables, queues and alarms promise, and that moto's CloudFormation builds them."""
from __future__ import annotations

import json
import warnings

import boto3
import pytest
from moto import mock_aws

from infra import stack
from tests.deploy.support import STAGES

DATA = stack.load_json(stack.DATA_TEMPLATE)
TABLES = tuple(name for name, r in DATA["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table")


def test_tables_are_on_demand_encrypted_recoverable_and_expire():
    # The attribute each table's writer sets is the one TTL reads.
    writers = ["store/connections.py", "store/ratelimits.py", "store/history.py", "turns/record.py"]
    sources = [(stack.ROOT / "chalicelib" / path).read_text() for path in writers]
    for name in TABLES:
        table = DATA["Resources"][name]
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}, name
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        assert props["DeletionProtectionEnabled"] == {"Fn::If": ["ProtectTables", True, False]}, name
        assert table["UpdateReplacePolicy"] == "Retain", name  # a replacement never drops the old table's data
    assert all("expiresAt" in source for source in sources)


def test_the_turn_queue_outlasts_the_worker_and_dead_letters_what_never_starts():
    queue = DATA["Resources"]["TurnQueue"]["Properties"]
    dlq = DATA["Resources"]["TurnDeadLetterQueue"]["Properties"]
    for stage in STAGES:
        assert queue["VisibilityTimeout"] >= 6 * stack.chalice_config(stage, "turn_worker").lambda_timeout
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["TurnDeadLetterQueue", "Arn"]}
    assert 1 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 10
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]  # a dead letter outlives its turn
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    for name in ("TurnQueuePolicy", "TurnDeadLetterQueuePolicy"):
        (statement,) = DATA["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _alarms():
    return {name: r["Properties"] for name, r in DATA["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_alarms_watch_the_dead_letters_the_backlog_the_worker_and_bedrock():
    alarms = _alarms()
    dlq = alarms["TurnDeadLetterQueueAlarm"]
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["TurnDeadLetterQueue", "QueueName"]}}]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)

    age = alarms["TurnQueueAgeAlarm"]
    assert (age["Namespace"], age["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["TurnQueue", "QueueName"]}}]
    assert age["Threshold"] == {"Ref": "TurnQueueAgeAlarmSeconds"}
    # A turn's message stays queued while the worker runs it: above the worker's timeout, or it cries wolf.
    default = DATA["Parameters"]["TurnQueueAgeAlarmSeconds"]["Default"]
    assert all(default > stack.chalice_config(s, "turn_worker").lambda_timeout for s in STAGES)

    errors = alarms["TurnWorkerErrorsAlarm"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    (dimension,) = errors["Dimensions"]
    for stage in STAGES:
        context = stack.Context(parameters={"Stage": stage})
        assert context.evaluate(dimension["Value"]) == stack.function_name(stage, "turn_worker")

    (query,) = alarms["BedrockThrottlesAlarm"]["Metrics"]
    assert query["Expression"] == 'SELECT SUM(InvocationThrottles) FROM SCHEMA("AWS/Bedrock", ModelId)'
    agents = alarms["AgentThrottlesAlarm"]
    assert (agents["Namespace"], agents["MetricName"]) == ("AWS/Bedrock/Agents", "InvocationThrottles")
    assert agents["Dimensions"] == [{"Name": "Operation", "Value": "InvokeAgent"}]

    for name, alarm in alarms.items():
        assert alarm["AlarmDescription"], name
        assert alarm["AlarmActions"] == alarm["OKActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }, name


def test_outputs_name_every_resource_the_app_and_an_operator_need():
    outputs = DATA["Outputs"]
    for name in TABLES:
        assert outputs[f"{name}Name"]["Value"] == {"Ref": name}
        assert outputs[f"{name}Arn"]["Value"] == {"Fn::GetAtt": [name, "Arn"]}
    for name in ("TurnQueue", "TurnDeadLetterQueue"):
        assert outputs[f"{name}Url"]["Value"] == {"Ref": name}
        assert outputs[f"{name}Arn"]["Value"] == {"Fn::GetAtt": [name, "Arn"]}


@pytest.fixture
def data_stack():
    """The data stack as moto's CloudFormation builds it (moto skips alarms and queue policies)."""
    with mock_aws():
        cloudformation = boto3.client("cloudformation")
        parameters = stack.resolve_parameters("dev", {"AgentId": "AGENT12345", "AgentAliasId": "ALIAS12345",
                                                      "JwtSecretParameter": "/agentstream/dev/jwt",
                                                      "TableDeletionProtection": "false"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "moto does not support AWS::CloudWatch::Alarm"
            cloudformation.create_stack(
                StackName=stack.data_stack_name("dev"),
                TemplateBody=json.dumps(DATA),
                Parameters=[{"ParameterKey": k, "ParameterValue": parameters[k]} for k in DATA["Parameters"]],
            )
        (described,) = cloudformation.describe_stacks(StackName=stack.data_stack_name("dev"))["Stacks"]
        assert described["StackStatus"] == "CREATE_COMPLETE"
        yield {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}, parameters


def test_the_data_stack_yields_the_tables_and_queue_the_app_uses(data_stack):
    from chalicelib.runtime import Runtime
    from chalicelib.settings import Settings
    from chalicelib.turns.record import Turn
    from chalicelib.turns.queue import TurnMessage

    outputs, parameters = data_stack
    dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    for name in TABLES:
        table = dynamodb.describe_table(TableName=outputs[f"{name}Name"])["Table"]
        assert table["KeySchema"] == DATA["Resources"][name]["Properties"]["KeySchema"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["TableArn"] == outputs[f"{name}Arn"]
        assert table["DeletionProtectionEnabled"] is False  # as asked: make destroy can remove it

    queue = sqs.get_queue_attributes(QueueUrl=outputs["TurnQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert queue["QueueArn"] == outputs["TurnQueueArn"]
    assert int(queue["VisibilityTimeout"]) == 5400
    assert json.loads(queue["RedrivePolicy"])["deadLetterTargetArn"] == outputs["TurnDeadLetterQueueArn"]

    # The app, configured by the environment the stack's outputs give it, uses them.
    env = stack.app_environment(stack.context_from_outputs(parameters, outputs))
    runtime = Runtime(Settings.from_env({**env, "STAGE": "dev", "AWS_REGION": "us-east-1"}))
    connection = runtime.connections.put("c1", "alice")
    assert runtime.connections.get("c1") == connection
    runtime.turns.create(Turn(turn_id="t1", user_id="alice", connection_id="c1", prompt="hi", session_id="s1"))
    assert runtime.turns.claim("t1") is not None
    assert runtime.rate_limits.take("alice", 1.0, 5).allowed
    runtime.queue.put(TurnMessage("t1", "api", "dev"))
    (message,) = sqs.receive_message(QueueUrl=outputs["TurnQueueUrl"])["Messages"]
    assert TurnMessage.from_json(message["Body"]) == TurnMessage("t1", "api", "dev")


def test_the_local_stack_provisions_from_the_same_template():
    from devserver.resources import provision

    with mock_aws():
        resources = provision(boto3.client("dynamodb"), boto3.client("sqs"), prefix="check")
        queue = boto3.client("sqs").get_queue_attributes(QueueUrl=resources.turn_queue_url, AttributeNames=["All"])
        assert int(queue["Attributes"]["VisibilityTimeout"]) == DATA["Resources"]["TurnQueue"]["Properties"]["VisibilityTimeout"]
