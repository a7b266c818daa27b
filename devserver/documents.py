"""The document pipeline's resources in the local stack, from the stage's own template and ASL.

What AWS gets from ``infra/documents.json`` (merged into ``infra.stack.stage_resources()``; until that
file exists, the shared contract's definitions below stand in for it) is made on moto's server:

* the documents bucket, with its CORS rules and its notification: objects created under
  ``uploads/`` go to the uploads queue (moto sends S3's event, and S3's ``s3:TestEvent`` once when
  the notification is set, as S3 does);
* the uploads queue and its dead-letter queue, played to the app's ``document_uploads`` by a poller;
* the documents table;
* the documents topic, and for its subscriber ``document_notices`` an SQS subscription queue that a
  poller turns into Lambda's SNS events (``devserver/sns_events.py``);
* the state machine, from ``infra/documents.asl.json`` itself with its ``DefinitionSubstitutions``
  resolved to the local resources: the functions' ARNs (their deployed names, which the local Lambda
  API maps to the app's handlers), the topic, the table, the Bedrock emulator's knowledge base.

The moto server runs it (``devserver/moto_server.py``): its Lambda tasks reach the app's own
``document_extract`` / ``document_analyse`` through ``devserver/lambda_api.py``, its ingestion
jobs the Bedrock emulator, its SNS and DynamoDB tasks moto itself.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from devserver.lambda_context import LOCAL_ACCOUNT_ID, function_arn
from devserver.poller import SqsPoller, sns_events
from devserver.resources import create_table, queue_attributes

ASL = Path(__file__).resolve().parent.parent / "infra" / "documents.asl.json"
EXTRACT_FUNCTION = "document_extract"
ANALYSE_FUNCTION = "document_analyse"
UPLOADS_FUNCTION = "document_uploads"
NOTICES_FUNCTION = "document_notices"
_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

#: The contract's resources (issue #12), for as long as ``infra/documents.json`` does not define them.
CONTRACT_RESOURCES: Dict[str, Dict[str, Any]] = {
    "DocumentsBucket": {
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "CorsConfiguration": {"CorsRules": [{"AllowedMethods": ["POST"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"]}]},
            "NotificationConfiguration": {"QueueConfigurations": [{
                "Event": "s3:ObjectCreated:*",
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "uploads/"}]}},
                "Queue": {"Fn::GetAtt": ["UploadsQueue", "Arn"]},
            }]},
        },
    },
    "UploadsDeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1209600}},
    "UploadsQueue": {
        "Type": "AWS::SQS::Queue",
        "Properties": {"RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["UploadsDeadLetterQueue", "Arn"]},
                                         "maxReceiveCount": 5}},
    },
    "DocumentsTable": {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "documentId", "AttributeType": "S"},
                                     {"AttributeName": "owner", "AttributeType": "S"},
                                     {"AttributeName": "createdAt", "AttributeType": "N"}],
            "KeySchema": [{"AttributeName": "documentId", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [{
                "IndexName": "ByOwner",
                "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}, {"AttributeName": "createdAt", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
            "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
        },
    },
    "DocumentsTopic": {"Type": "AWS::SNS::Topic", "Properties": {}},
}


def document_template(resources: Optional[Mapping[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """The documents' resources: the stage template's (``stage_resources()``), the contract's for any it lacks."""
    if resources is None:
        from infra.stack import stage_resources

        resources = stage_resources()["Resources"]
    return {logical: dict(resources.get(logical) or default) for logical, default in CONTRACT_RESOURCES.items()}


def definition(substitutions: Mapping[str, str], path: Path = ASL) -> str:
    """The ASL with its ``${Name}`` substitutions made, as CloudFormation's ``DefinitionSubstitutions`` make them."""
    text = path.read_text()
    missing = sorted(set(_SUBSTITUTION.findall(text)) - set(substitutions))
    if missing:
        raise ValueError(f"{path.name} needs substitutions the local stack does not give: {', '.join(missing)}")
    return _SUBSTITUTION.sub(lambda found: json.dumps(substitutions[found.group(1)])[1:-1], text)


@dataclass(frozen=True)
class DocumentResources:
    bucket: str
    table: str
    uploads_queue_url: str
    uploads_queue_arn: str
    uploads_dead_letter_queue_url: str
    topic_arn: str
    notices_queue_url: str  # the topic's SQS subscription, standing in for document_notices' subscription
    subscription_arn: str
    state_machine_arn: str

    @property
    def topic_name(self) -> str:
        return self.topic_arn.rsplit(":", 1)[1]

    def env(self) -> Dict[str, str]:
        """The app's environment variables that point at these resources."""
        return {
            "DOCUMENTS_BUCKET": self.bucket,
            "DOCUMENTS_TABLE": self.table,
            "UPLOADS_QUEUE_ARN": self.uploads_queue_arn,
            "DOCUMENTS_TOPIC": self.topic_name,
            "DOCUMENTS_TOPIC_ARN": self.topic_arn,
            "DOCUMENT_PIPELINE_ARN": self.state_machine_arn,
        }


def _queue(sqs: Any, name: str, attributes: Dict[str, str]) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _arn_of(reference: Any, arns: Mapping[str, str]) -> str:
    """A template's ``{"Fn::GetAtt": [logical, "Arn"]}`` (or a literal ARN) as the local resource's ARN."""
    if isinstance(reference, dict) and "Fn::GetAtt" in reference:
        return arns[reference["Fn::GetAtt"][0]]
    return str(reference)


def _cors_rules(rules: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """CloudFormation's ``CorsRules`` as S3's API spells them."""
    renamed = {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds", "Id": "ID"}
    return [{renamed.get(key, key): value for key, value in rule.items()} for rule in rules]


def _queue_notifications(configurations: List[Dict[str, Any]], arns: Mapping[str, str]) -> List[Dict[str, Any]]:
    """CloudFormation's ``QueueConfigurations`` as S3's API spells them."""
    converted = []
    for item in configurations:
        notification: Dict[str, Any] = {"QueueArn": _arn_of(item["Queue"], arns), "Events": [item["Event"]]}
        rules = item.get("Filter", {}).get("S3Key", {}).get("Rules")
        if rules:
            notification["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
        converted.append(notification)
    return converted


def provision_documents(
    client: Callable[[str], Any],
    *,
    bucket: str,
    stage: str,
    region: str,
    knowledge_base_id: str,
    data_source_id: str,
    prefix: str = "agentstream",
    template: Optional[Mapping[str, Any]] = None,
    asl: Path = ASL,
) -> DocumentResources:
    """Make the pipeline's resources; ``client(service)`` is a boto3 client of the moto server."""
    from infra.stack import function_name

    resources = document_template(template)
    sqs, s3, sns = client("sqs"), client("s3"), client("sns")

    dlq_url, dlq_arn = _queue(sqs, f"{prefix}-document-uploads-dlq",
                              queue_attributes(resources["UploadsDeadLetterQueue"]["Properties"], None, None))
    uploads_url, uploads_arn = _queue(sqs, f"{prefix}-document-uploads",
                                      queue_attributes(resources["UploadsQueue"]["Properties"], dlq_arn, None))
    arns = {"UploadsQueue": uploads_arn, "UploadsDeadLetterQueue": dlq_arn}

    bucket_props = resources["DocumentsBucket"]["Properties"]
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    cors = bucket_props.get("CorsConfiguration", {}).get("CorsRules")
    if cors:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": _cors_rules(cors)})
    queues = bucket_props.get("NotificationConfiguration", {}).get("QueueConfigurations")
    if queues:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": _queue_notifications(queues, arns)})

    table = f"{prefix}-documents"
    dynamodb = client("dynamodb")
    if table not in dynamodb.list_tables()["TableNames"]:  # infra/data.json's tables are made by resources.provision
        create_table(dynamodb, table, resources["DocumentsTable"]["Properties"])

    topic_arn = sns.create_topic(Name=f"{prefix}-documents")["TopicArn"]
    notices_url, notices_arn = _queue(sqs, f"{prefix}-document-notices", {})
    subscription_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=notices_arn,
                                     ReturnSubscriptionArn=True)["SubscriptionArn"]

    def local_function(function: str) -> str:
        return function_arn(function_name(stage, function), region)

    substitutions = {
        "DocumentsTopic": topic_arn,
        "DocumentsTable": table,
        "ExtractFunctionArn": local_function(EXTRACT_FUNCTION),
        "AnalyseFunctionArn": local_function(ANALYSE_FUNCTION),
        "KnowledgeBaseId": knowledge_base_id,
        "KnowledgeBaseDataSourceId": data_source_id,
    }
    state_machine_arn = client("stepfunctions").create_state_machine(
        name=f"{prefix}-document-pipeline",
        definition=definition(substitutions, asl),
        roleArn=f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/{prefix}-document-pipeline",
        type="STANDARD",
    )["stateMachineArn"]
    return DocumentResources(
        bucket=bucket, table=table, uploads_queue_url=uploads_url, uploads_queue_arn=uploads_arn,
        uploads_dead_letter_queue_url=dlq_url, topic_arn=topic_arn, notices_queue_url=notices_url,
        subscription_arn=subscription_arn, state_machine_arn=state_machine_arn,
    )


def document_pollers(app: Any, sqs: Any, resources: DocumentResources, *, region: str, max_concurrency: int = 4,
                     timeouts: Optional[Mapping[str, float]] = None) -> List[SqsPoller]:
    """The event sources of the app's ``document_uploads`` (the uploads queue) and ``document_notices``
    (the topic), not yet started; one the app does not have (yet) is left out. ``timeouts``: seconds
    by function (``lambda_api.configured_timeouts()``)."""
    timeouts = timeouts or {}
    from chalice.app import SQSEventConfig

    pollers = []
    uploads = app.handler_map.get(UPLOADS_FUNCTION)
    if uploads is not None:
        source = next((s for s in app.event_sources if isinstance(s, SQSEventConfig) and s.name == UPLOADS_FUNCTION), None)
        pollers.append(SqsPoller(
            sqs, resources.uploads_queue_url, uploads, function_name=UPLOADS_FUNCTION,
            batch_size=source.batch_size if source else 10,
            max_concurrency=(source.maximum_concurrency if source else None) or max_concurrency, region=region,
            timeout_s=timeouts.get(UPLOADS_FUNCTION, 900.0),
        ))
    notices = app.handler_map.get(NOTICES_FUNCTION)
    if notices is not None:
        pollers.append(SqsPoller(
            sqs, resources.notices_queue_url, notices, function_name=NOTICES_FUNCTION, batch_size=1,
            max_concurrency=max_concurrency, region=region, event=sns_events(resources.subscription_arn),
            batch_failures=False, timeout_s=timeouts.get(NOTICES_FUNCTION, 900.0),
        ))
    return pollers
