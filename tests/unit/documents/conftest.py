"""A stage with documents: the bucket, the table and the state machine (moto, in-process), from
infra/documents.json and infra/documents.asl.json; the shared ``settings`` pointed at them."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest

from tests.conftest import ROOT

BUCKET = "agentstream-local-documents"
KNOWLEDGE_BASE = "KB1"


@dataclass(frozen=True)
class DocumentsStage:
    bucket: str
    table: str
    pipeline_arn: str


@pytest.fixture
def documents_stage(resources) -> DocumentsStage:
    import boto3

    template = json.loads((ROOT / "infra" / "documents.json").read_text())
    table = template["Resources"]["DocumentsTable"]["Properties"]
    dynamodb = boto3.client("dynamodb")
    name = "agentstream-documents"
    if name not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=table["KeySchema"],
                              AttributeDefinitions=table["AttributeDefinitions"],
                              GlobalSecondaryIndexes=[{k: v for k, v in index.items() if k != "ProvisionedThroughput"}
                                                      for index in table["GlobalSecondaryIndexes"]])
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    definition = (ROOT / "infra" / "documents.asl.json").read_text()
    for placeholder, value in {"DocumentsTopic": "arn:aws:sns:us-east-1:123456789012:documents", "DocumentsTable": name,
                               "ExtractFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:x",
                               "AnalyseFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:y",
                               "KnowledgeBaseId": KNOWLEDGE_BASE, "KnowledgeBaseDataSourceId": "DS1"}.items():
        definition = definition.replace("${" + placeholder + "}", value)
    pipeline = boto3.client("stepfunctions").create_state_machine(
        name="documents", definition=definition, roleArn="arn:aws:iam::123456789012:role/pipeline")
    return DocumentsStage(BUCKET, name, pipeline["stateMachineArn"])


@pytest.fixture
def settings(settings, documents_stage):
    """The shared settings, with documents on."""
    return replace(settings, documents_bucket=documents_stage.bucket, documents_table=documents_stage.table,
                   document_pipeline_arn=documents_stage.pipeline_arn, knowledge_base_id=KNOWLEDGE_BASE,
                   document_poll_s=0)
