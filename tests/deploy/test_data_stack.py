"""``infra/data.json``: what the tables, queues, alarms and dashboard promise, and that moto's CloudFormation builds them."""
from __future__ import annotations

import json
import re
import warnings

import boto3
import pytest
from moto import mock_aws

from infra import stack
from tests.deploy.cfn import Context
from tests.deploy.support import BACKENDS, STAGES, deploy_stack

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
        context = Context(parameters={"Stage": stage})
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


# ---- quota alarms (docs/observability.md, "Quota alarms")

QUOTA_ALARMS = ("LambdaConcurrencyQuotaAlarm", "AgentModelThrottlesAlarm", "ModelThrottlesAlarm")


def test_the_data_stack_reads_the_backend_as_the_app_template_does():
    """Backend, ModelId and InferenceProfile choose the quota alarms: the same parameters, and conditions, as
    infra/merge.json's."""
    app = stack.load_json(stack.APP_TEMPLATE)
    for name in ("Backend", "ModelId", "InferenceProfile"):
        assert DATA["Parameters"][name] == app["Parameters"][name], name
    for name in ("InvokesAgent", "InvokesModel", "HasInferenceProfile"):
        assert DATA["Conditions"][name] == app["Conditions"][name], name


def test_quota_alarms_watch_the_metrics_aws_documents_for_each_quota():
    percent = DATA["Parameters"]["QuotaAlarmPercent"]
    assert (percent["Type"], percent["Default"], percent["MinValue"], percent["MaxValue"]) == ("Number", 80, 1, 100)

    # Lambda's Concurrent executions quota: its usage metric (AWS/Lambda ConcurrentExecutions, account-wide,
    # no dimension, Maximum) over the applied quota, which SERVICE_QUOTA() reads from Service Quotas.
    lambda_alarm = DATA["Resources"]["LambdaConcurrencyQuotaAlarm"]
    assert "Condition" not in lambda_alarm  # every backend runs on Lambda
    usage, ratio = lambda_alarm["Properties"]["Metrics"]
    assert usage == {"Id": "executions", "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": "AWS/Lambda", "MetricName": "ConcurrentExecutions"}, "Period": 60, "Stat": "Maximum"}}
    assert (ratio["Expression"], ratio["ReturnData"]) == ("100 * executions / SERVICE_QUOTA(executions)", True)
    assert lambda_alarm["Properties"]["Threshold"] == {"Ref": "QuotaAlarmPercent"}
    assert lambda_alarm["Properties"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"

    # Bedrock's model quotas have no usage metric Service Quotas knows: these alarm on throttling.
    agent = DATA["Resources"]["AgentModelThrottlesAlarm"]
    assert agent["Condition"] == "InvokesAgent"
    watched = agent["Properties"]["Namespace"], agent["Properties"]["MetricName"]
    assert watched == ("AWS/Bedrock/Agents", "ModelInvocationThrottles")
    assert agent["Properties"]["Dimensions"] == [{"Name": "Operation", "Value": "InvokeAgent"}]
    model = DATA["Resources"]["ModelThrottlesAlarm"]
    assert model["Condition"] == "InvokesModelById"
    assert (model["Properties"]["Namespace"], model["Properties"]["MetricName"]) == ("AWS/Bedrock", "InvocationThrottles")
    # The ModelId dimension is the modelId the worker calls ConverseStream with: its MODEL_ID (infra/merge.json).
    invoked = stack.function_environment_expressions("turn_worker")["MODEL_ID"]
    assert model["Properties"]["Dimensions"] == [{"Name": "ModelId", "Value": invoked}]
    for name in ("AgentModelThrottlesAlarm", "ModelThrottlesAlarm"):
        properties = DATA["Resources"][name]["Properties"]
        fires = properties["Statistic"], properties["ComparisonOperator"], properties["Threshold"]
        assert fires == ("Sum", "GreaterThanThreshold", 0), name


FOUNDATION_MODEL_ARN = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"
QUOTA_ALARMS_BY_SCENARIO = {
    "agent": {"LambdaConcurrencyQuotaAlarm", "AgentModelThrottlesAlarm"},
    "converse-model": {"LambdaConcurrencyQuotaAlarm", "ModelThrottlesAlarm"},
    "converse-profile": {"LambdaConcurrencyQuotaAlarm", "ModelThrottlesAlarm"},
    # Given as an ARN, the model's ModelId dimension value is not documented: only the account-wide alarms.
    "converse-application-profile": {"LambdaConcurrencyQuotaAlarm"},
    "converse-model-arn": {"LambdaConcurrencyQuotaAlarm"},
    "agentcore": {"LambdaConcurrencyQuotaAlarm"},
    "agentcore-endpoint": {"LambdaConcurrencyQuotaAlarm"},
}


@pytest.mark.parametrize("scenario", sorted(QUOTA_ALARMS_BY_SCENARIO))
def test_each_backend_gets_the_quota_alarms_of_what_it_consumes(scenario):
    given = BACKENDS.get(scenario) or {"Backend": "converse", "ModelId": FOUNDATION_MODEL_ARN}
    parameters = stack.resolve_parameters("dev", given)  # sign-in: the stack's own user pool, the default
    context = Context(parameters=parameters, conditions=DATA["Conditions"])
    deployed = {name for name in QUOTA_ALARMS
                if "Condition" not in DATA["Resources"][name] or context.condition(DATA["Resources"][name]["Condition"])}
    assert deployed == QUOTA_ALARMS_BY_SCENARIO[scenario]
    if "ModelThrottlesAlarm" in deployed:  # the dimension names the model the worker invokes
        (dimension,) = context.evaluate(DATA["Resources"]["ModelThrottlesAlarm"]["Properties"]["Dimensions"])
        assert dimension == {"Name": "ModelId", "Value": given.get("InferenceProfile") or given["ModelId"]}


def test_every_backend_scenario_has_its_quota_alarms_decided():
    assert set(BACKENDS) <= set(QUOTA_ALARMS_BY_SCENARIO)


# ---- the dashboard (docs/observability.md, "Dashboard")

SEARCH = re.compile(r"SEARCH\('\{([^}]*)\} ([^']*)', '(\w+)', (\d+)\)")


def _documented_metrics():
    """The worker's metric names, as docs/observability.md's metrics table lists them."""
    section = (stack.ROOT / "docs" / "observability.md").read_text().split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    names = [name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)]
    assert len(names) >= 10 and "TimeToFirstTokenMs" in names, names
    return names


def _dashboard(stage, backend):
    """The dashboard's name and body as CloudFormation resolves them (queue names and Region are placeholders)."""
    context = Context(
        parameters={"Stage": stage, "Backend": backend, "TurnQueueAgeAlarmSeconds": "1200", "QuotaAlarmPercent": "80"},
        attributes={"TurnQueue.QueueName": f"{stage}-turns", "TurnDeadLetterQueue.QueueName": f"{stage}-dead-letters"},
        pseudo={"AWS::Region": "eu-west-1"},
    )
    properties = DATA["Resources"]["StageDashboard"]["Properties"]
    return context.evaluate(properties["DashboardName"]), json.loads(context.evaluate(properties["DashboardBody"]))


def _graphs(body):
    """Every metric of every graph, as (widget, namespace, metric, dimensions, stat),
    and every SEARCH, as (widget, schema, terms, stat)."""
    series, searches = [], []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        for row in properties["metrics"]:
            options = row[-1] if isinstance(row[-1], dict) else {}
            names = [item for item in row if not isinstance(item, dict)]
            if not names:  # a math or SEARCH expression
                match = SEARCH.fullmatch(options["expression"])
                if match:
                    schema, terms, stat, _ = match.groups()
                    searches.append((widget, schema.split(","), dict(re.findall(r'(\w+)="([^"]*)"', terms)), stat))
                continue
            namespace, metric, *pairs = names
            dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
            series.append((widget, namespace, metric, dimensions, options.get("stat", properties["stat"])))
    return series, searches


@pytest.mark.parametrize("backend", ["agent", "converse", "agentcore"])
def test_the_dashboard_graphs_every_metric_the_worker_emits(backend):
    for stage in STAGES:
        name, body = _dashboard(stage, backend)
        assert name == f"agentstream-{stage}"
        assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {"eu-west-1"}
        series, searches = _graphs(body)
        shown = set()
        for _, namespace, metric, dimensions, _ in series:
            if namespace == "agentstream":  # exactly the worker's dimensions: the stage and the Backend parameter
                assert dimensions == {"stage": stage, "backend": backend}, metric
                shown.add(metric)
        for _, schema, terms, _ in searches:
            if schema[0] == "agentstream":  # every backend the stage ran, so a switch of Backend stays visible
                assert terms["stage"] == stage and set(schema[1:]) in ({"stage", "backend"}, {"stage", "backend", "ErrorCode"})
                shown.add(terms["MetricName"])
        assert set(_documented_metrics()) <= shown, set(_documented_metrics()) - shown


def test_the_dashboard_shows_latency_percentiles_and_errors_by_code():
    series, searches = _graphs(_dashboard("dev", "converse")[1])
    stats = {}
    for _, namespace, metric, _, stat in series:
        if namespace == "agentstream":
            stats.setdefault(metric, set()).add(stat)
    assert stats["TimeToFirstTokenMs"] == stats["TurnDurationMs"] == {"p50", "p90", "p99"}
    assert "p90" in stats["QueueWaitMs"]
    assert stats["BedrockThrottles"] == stats["InterruptedTurns"] == stats["InputTokens"] == stats["OutputTokens"] == {"Sum"}
    (errors,) = [(schema, stat) for _, schema, terms, stat in searches if terms.get("MetricName") == "TurnErrors"]
    assert "ErrorCode" in errors[0] and errors[1] == "Sum"  # codes are open-ended: one line per code that occurred


def test_the_dashboard_watches_the_queues_the_functions_and_the_quotas():
    stage = "prod"
    series, searches = _graphs(_dashboard(stage, "agent")[1])
    by_metric = {}
    for widget, namespace, metric, dimensions, stat in series:
        by_metric.setdefault((namespace, metric), []).append((widget, dimensions, stat))
    # The queues, named as the queue alarms name them.
    names = Context(attributes={"TurnQueue.QueueName": f"{stage}-turns",
                                      "TurnDeadLetterQueue.QueueName": f"{stage}-dead-letters"})
    alarm_queue = {name: names.evaluate(DATA["Resources"][name]["Properties"]["Dimensions"][0]["Value"])
                   for name in ("TurnQueueAgeAlarm", "TurnDeadLetterQueueAlarm")}
    ((age_widget, age, _),) = by_metric[("AWS/SQS", "ApproximateAgeOfOldestMessage")]
    assert age == {"QueueName": alarm_queue["TurnQueueAgeAlarm"]}
    assert age_widget["properties"]["annotations"]["horizontal"][0]["value"] == 1200  # the alarm's threshold
    ((_, dead_letters, _),) = by_metric[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]
    assert dead_letters == {"QueueName": alarm_queue["TurnDeadLetterQueueAlarm"]}
    # Each function's concurrency, the worker's included, and the account's as a share of its quota.
    executions = by_metric[("AWS/Lambda", "ConcurrentExecutions")]
    functions = {d["FunctionName"] for _, d, stat in executions if d and stat == "Maximum"}
    assert functions == {stack.function_name(stage, function) for function in stack.functions()}
    ((quota_widget, _, _),) = [entry for entry in executions if entry[1] == {}]
    (ratio,) = [row[0] for row in quota_widget["properties"]["metrics"] if isinstance(row[0], dict)]
    assert ratio["expression"] == DATA["Resources"]["LambdaConcurrencyQuotaAlarm"]["Properties"]["Metrics"][1]["Expression"]
    assert quota_widget["properties"]["annotations"]["horizontal"][0]["value"] == 80  # QuotaAlarmPercent
    # Bedrock, account-wide: throttles and estimated tokens-per-minute quota use, one line per model.
    bedrock = {terms["MetricName"] for _, schema, terms, _ in searches if schema == ["AWS/Bedrock", "ModelId"]}
    assert bedrock == {"InvocationThrottles", "EstimatedTPMQuotaUsage"}


@pytest.fixture
def data_stack():
    """The stack ``make deploy`` creates (``data.json`` and the roles) as moto's CloudFormation builds
    it (moto skips alarms and queue policies); the packaged stack carries the same ``data.json``."""
    with mock_aws():
        parameters = stack.resolve_parameters("dev", {"Backend": "agent", "AgentId": "AGENT12345", "AgentAliasId": "ALIAS12345",
                                                      "TableDeletionProtection": "false"})  # and the default user pool
        outputs, _ = deploy_stack(parameters)
        yield outputs, parameters


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
    env = stack.environment_from_outputs(outputs)
    runtime = Runtime(Settings.from_env({**env, "STAGE": "dev", "AWS_REGION": "us-east-1"}))
    connection = runtime.connections.put("c1", "alice")
    assert runtime.connections.get("c1") == connection
    runtime.turns.create(Turn(turn_id="t1", user_id="alice", connection_id="c1", prompt="hi", session_id="s1"))
    assert runtime.turns.claim("t1") is not None
    assert runtime.rate_limits.take("alice", 1.0, 5).allowed
    runtime.queue.put(TurnMessage("t1", "api", "dev"))
    (message,) = sqs.receive_message(QueueUrl=outputs["TurnQueueUrl"])["Messages"]
    assert TurnMessage.from_json(message["Body"]) == TurnMessage("t1", "api", "dev")


def test_the_data_stack_builds_the_dashboard_of_its_own_queues(data_stack):
    """moto's CloudFormation resolves the body (Fn::Join, Fn::Sub with parameters and GetAtt) into valid JSON."""
    outputs, parameters = data_stack
    body = json.loads(boto3.client("cloudwatch").get_dashboard(DashboardName="agentstream-dev")["DashboardBody"])
    series, _ = _graphs(body)
    queues = {metric: dimensions["QueueName"] for _, namespace, metric, dimensions, _ in series if namespace == "AWS/SQS"}
    assert queues == {"ApproximateAgeOfOldestMessage": outputs["TurnQueueUrl"].rsplit("/", 1)[1],
                      "ApproximateNumberOfMessagesVisible": outputs["TurnDeadLetterQueueUrl"].rsplit("/", 1)[1]}
    assert {d["backend"] for _, namespace, _, d, _ in series if namespace == "agentstream"} == {parameters["Backend"]}


def test_the_local_stack_provisions_from_the_same_template():
    from devserver.resources import provision

    with mock_aws():
        resources = provision(boto3.client("dynamodb"), boto3.client("sqs"), prefix="check")
        queue = boto3.client("sqs").get_queue_attributes(QueueUrl=resources.turn_queue_url, AttributeNames=["All"])
        assert int(queue["Attributes"]["VisibilityTimeout"]) == DATA["Resources"]["TurnQueue"]["Properties"]["VisibilityTimeout"]


# ---- the WebSocket stage's access log (docs/deploy.md, "Access logs")

ACCESS_LOG_GROUP = "/aws/apigateway/agentstream-{stage}-websocket-access"


def _data_stack_outputs(stage, **given):
    """The data stack built by moto's CloudFormation with these parameters; its outputs."""
    cloudformation = boto3.client("cloudformation")
    parameters = stack.resolve_parameters(stage, {**BACKENDS["agent"], "CreateUserPool": "false",
                                                  "JwtSecretParameter": "/agentstream/jwt", "TableDeletionProtection": "false",
                                                  **given})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "moto does not support AWS::CloudWatch::Alarm"
        cloudformation.create_stack(StackName=stack.data_stack_name(stage), TemplateBody=json.dumps(DATA),
                                    Parameters=[{"ParameterKey": k, "ParameterValue": parameters[k]} for k in DATA["Parameters"]])
    (described,) = cloudformation.describe_stacks(StackName=stack.data_stack_name(stage))["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


@pytest.mark.parametrize("logging", ["true", "false"])
def test_the_access_log_group_exists_only_when_asked_and_keeps_logs_as_long_as_the_stages(logging):
    """Both deploy paths deploy data.json: with WebsocketAccessLogging=true it makes the stage's access log
    group, with the stage's retention, and names it in an output; otherwise neither (the default)."""
    assert DATA["Parameters"]["WebsocketAccessLogging"]["Default"] == "false"
    with mock_aws():
        outputs = _data_stack_outputs("prod", WebsocketAccessLogging=logging,
                                      LogRetentionInDays=str(stack.log_retention_days("prod")))
        groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/aws/apigateway/")["logGroups"]
    if logging == "false":
        assert groups == [] and "WebsocketAccessLogGroupArn" not in outputs
        return
    (group,) = groups
    assert group["logGroupName"] == ACCESS_LOG_GROUP.format(stage="prod")
    assert group["retentionInDays"] == stack.chalice_config("prod").log_retention_in_days == 90
    assert outputs["WebsocketAccessLogGroupArn"] == group["logGroupArn"]


def test_the_log_retention_parameter_takes_every_stages_retention_and_only_what_cloudwatch_logs_accepts():
    # CloudWatch Logs' PutRetentionPolicy accepts exactly these (its API reference, retentionInDays).
    accepted = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]
    spec = DATA["Parameters"]["LogRetentionInDays"]
    assert spec["AllowedValues"] == accepted and spec["Default"] in accepted
    for stage in STAGES:
        assert stack.log_retention_days(stage) in accepted, stage
    assert DATA["Resources"]["WebsocketAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


def test_a_stage_without_a_log_retention_is_refused(tmp_path):
    (tmp_path / ".chalice").mkdir()
    config = stack.load_json(stack.ROOT / ".chalice" / "config.json")
    del config["stages"]["dev"]["log_retention_in_days"]
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    with pytest.raises(stack.ParameterError, match="'dev' has no log_retention_in_days .* kept forever"):
        stack.log_retention_days("dev", tmp_path)
