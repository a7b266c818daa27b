"""What the moto server adds to botocore for Step Functions' aws-sdk tasks: the ``bedrockagent`` name and the casing."""
import re
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from devserver import sdk_aliases, sdk_casing
from devserver.bedrock import BedrockEmulator, KnowledgeBaseConfig
from devserver.bedrock.knowledge import LOCAL_DATA_SOURCE_ID, LOCAL_KNOWLEDGE_BASE_ID

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DATA_PATH", sdk_aliases.install(tmp_path))
    return boto3.session.Session()  # as the interpreter's clients come from boto3's default session


def test_the_alias_is_botocores_own_bedrock_agent_model(session, tmp_path):
    assert (tmp_path / "bedrockagent").resolve() == sdk_aliases.installed_model("bedrock-agent")
    client = session.client("bedrockagent", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    assert client.meta.service_model.service_id == "Bedrock Agent"
    assert sdk_aliases.install(tmp_path) == str(tmp_path)  # again: nothing to change


def test_parameters_take_the_models_case_and_results_step_functions_case(session):
    sdk_casing.install(session=session)
    # The Bedrock emulator's knowledge base (its S3 out of reach: the job's sync fails later, unread here).
    config = KnowledgeBaseConfig("http://127.0.0.1:9", ingestion_delay=0.05)
    with BedrockEmulator(knowledge_base=config) as emulator:
        client = session.client("bedrockagent", endpoint_url=emulator.url, region_name="us-east-1",
                                aws_access_key_id="a", aws_secret_access_key="b")
        # PascalCase in, as the ASL's Parameters name them (then validated against the model: they match).
        answer = client.start_ingestion_job(KnowledgeBaseId=LOCAL_KNOWLEDGE_BASE_ID, DataSourceId=LOCAL_DATA_SOURCE_ID,
                                            Description="agentstream document d1")
        (request,) = [r for r in emulator.requests if r.operation == "StartIngestionJob"]
    assert request.body["description"] == "agentstream document d1"
    job = answer["IngestionJob"]
    assert (job["KnowledgeBaseId"], job["DataSourceId"]) == (LOCAL_KNOWLEDGE_BASE_ID, LOCAL_DATA_SOURCE_ID)
    assert job["Status"] == "STARTING"
    assert job["IngestionJobId"] and job["Statistics"]["NumberOfDocumentsScanned"] == 0
    assert ISO_MS.match(job["StartedAt"]), job["StartedAt"]  # a string, as Step Functions hands it over


def test_timestamps_and_nested_members():
    started = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    shape = boto3.session.Session().client("bedrock-agent", region_name="us-east-1").meta.service_model \
        .operation_model("GetIngestionJob").output_shape
    value = {"ingestionJob": {"startedAt": started, "failureReasons": ["r"], "statistics": {"numberOfDocumentsFailed": 1}}}
    assert sdk_casing.to_states_case(value, shape) == {"IngestionJob": {
        "StartedAt": "2026-01-02T03:04:05.678Z", "FailureReasons": ["r"], "Statistics": {"NumberOfDocumentsFailed": 1}}}


def test_errors_keep_botocores_shape(session):
    sdk_casing.install(session=session)
    client = session.client("bedrockagent", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    with Stubber(client) as stub:
        stub.add_client_error("get_ingestion_job", "ConflictException", "busy", 409)
        with pytest.raises(client.exceptions.ConflictException) as raised:
            client.get_ingestion_job(KnowledgeBaseId="K", DataSourceId="D", IngestionJobId="J")
    assert raised.value.response["Error"]["Code"] == "ConflictException"
