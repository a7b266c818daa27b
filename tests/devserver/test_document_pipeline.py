"""The document pipeline end to end on the local stack's parts: ``infra/documents.asl.json`` itself, run
by moto's Step Functions interpreter in the moto server subprocess, its Lambda tasks served by the
local Lambda API (a tiny Chalice app standing in for the app's functions), its ingestion jobs by the
Bedrock emulator's knowledge base on moto's S3, its notices through SNS to a subscription queue and
the poller that hands them on as Lambda's SNS events.

One stack for the module; each test uses a document of its own, and waits on what it expects, never
on the clock.
"""
import json
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.config import Config
from chalice import Chalice

from devserver.bedrock import BedrockEmulator, KnowledgeBaseConfig
from devserver.bedrock.knowledge import FAIL_MARKER, LOCAL_DATA_SOURCE_ID, LOCAL_KNOWLEDGE_BASE_ID
from devserver.documents import DocumentResources, document_pollers, provision_documents
from devserver.lambda_api import LambdaApi, app_functions
from devserver.moto_server import MotoServer
from devserver.stack import free_port
from infra.stack import function_name
from tests.support.timing import wait_until

BUCKET = "agentstream-test-documents"
STAGE = "test"
REGION = "us-east-1"
ANALYSIS = {"summary": "A note about a fox and a dog.", "topics": ["foxes", "dogs"]}
EXPLODE = "!explode"  # the stand-in extract function raises on a document holding this
INGEST_FAILED = ("The knowledge base could not index the document (its ingestion job failed); upload it again, "
                 "or another file.")


class ExtractError(Exception):
    pass


def make_client(service: str, url: str) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="test",
                        aws_secret_access_key="test",
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2}))


@dataclass
class Stack:
    moto: MotoServer
    bedrock: BedrockEmulator
    resources: DocumentResources
    uploads: List[str]  # every S3 key document_uploads was told of
    notices: List[Dict[str, Any]]  # every notice document_notices got: status, attribute type, message

    def client(self, service: str) -> Any:
        return make_client(service, self.moto.url)


def pipeline_app(moto_url: str, resources: DocumentResources, uploads: List[str], notices: List[Dict[str, Any]]) -> Chalice:
    """The app's four document functions, as small as the pipeline allows."""
    app = Chalice(app_name="pipeline-test")
    s3, sfn = make_client("s3", moto_url), make_client("stepfunctions", moto_url)

    @app.on_sqs_message(queue_arn=resources.uploads_queue_arn, name="document_uploads", batch_size=10)
    def document_uploads(event):
        for record in event:
            for s3_record in json.loads(record.body).get("Records", []):  # S3's s3:TestEvent has none
                key = unquote_plus(s3_record["s3"]["object"]["key"])
                uploads.append(key)
                _, owner, document_id, file_name = key.split("/", 3)
                document = {"documentId": document_id, "owner": owner, "fileName": file_name, "contentType": "text/plain",
                            "size": s3_record["s3"]["object"]["size"], "createdAt": 1767225600000}
                execution = {"action": "ingest", "document": document, "bucket": s3_record["s3"]["bucket"]["name"],
                             "key": key, "pollSeconds": 0}
                try:
                    sfn.start_execution(stateMachineArn=resources.state_machine_arn, name=document_id,
                                        input=json.dumps(execution))
                except sfn.exceptions.ExecutionAlreadyExists:
                    pass

    @app.lambda_function(name="document_extract")
    def document_extract(event, context):
        text = s3.get_object(Bucket=event["bucket"], Key=event["key"])["Body"].read().decode()
        if EXPLODE in text:
            raise ExtractError("the stand-in cannot read this one")
        document = event["document"]
        chunk = f"kb/{document['owner']}/{document['documentId']}/0000.txt"
        s3.put_object(Bucket=event["bucket"], Key=chunk, Body=text.encode())
        sidecar = {"metadataAttributes": {"owner": document["owner"], "documentId": document["documentId"]}}
        s3.put_object(Bucket=event["bucket"], Key=chunk + ".metadata.json", Body=json.dumps(sidecar).encode())
        return {"ok": True, "chunks": 1, "code": None, "message": None}

    @app.lambda_function(name="document_analyse")
    def document_analyse(event, context):
        return {"analysis": ANALYSIS}

    @app.on_sns_message(topic=resources.topic_name, name="document_notices")
    def document_notices(event):
        status = event.message_attributes["status"]
        notices.append({"status": status["Value"], "type": status["Type"], "message": json.loads(event.message)})

    return app


@pytest.fixture(scope="module")
def stack():
    started: List[Any] = []
    try:
        lambda_api = LambdaApi("127.0.0.1", name_prefix=function_name(STAGE, ""), region=REGION, timeout_s=60).start()
        started.append(lambda_api)
        bedrock_port = free_port()
        moto = MotoServer("127.0.0.1", free_port(), lambda_url=lambda_api.url,
                          bedrock_url=f"http://127.0.0.1:{bedrock_port}").start()
        started.append(moto)
        knowledge_base = KnowledgeBaseConfig(moto.url, bucket=BUCKET, region=REGION, ingestion_delay=0.2)
        bedrock = BedrockEmulator(port=bedrock_port, chunk_delay=0.001, knowledge_base=knowledge_base).start()
        started.append(bedrock)
        resources = provision_documents(lambda service: make_client(service, moto.url), bucket=BUCKET, stage=STAGE,
                                        region=REGION, knowledge_base_id=LOCAL_KNOWLEDGE_BASE_ID,
                                        data_source_id=LOCAL_DATA_SOURCE_ID)
        uploads: List[str] = []
        notices: List[Dict[str, Any]] = []
        app = pipeline_app(moto.url, resources, uploads, notices)
        lambda_api.serve(app_functions(app))
        for poller in document_pollers(app, make_client("sqs", moto.url), resources, region=REGION):
            started.append(poller.start())
        assert len(started) == 5  # both pollers: the app has both functions
        yield Stack(moto, bedrock, resources, uploads, notices)
    finally:
        for part in reversed(started):
            part.stop()


def statuses(stack: Stack, document_id: str) -> List[str]:
    return [notice["status"] for notice in list(stack.notices) if notice["message"]["documentId"] == document_id]


def ended_with(stack: Stack, document_id: str) -> List[str]:
    """Wait for the document's last notice (analysed, failed or deleted); its notices so far."""
    wait_until(lambda: {"analysed", "failed", "deleted"} & set(statuses(stack, document_id)), 60,
               f"the last notice of {document_id}", poll_s=0.05)
    return statuses(stack, document_id)


def notice(stack: Stack, document_id: str, status: str) -> Dict[str, Any]:
    (found,) = [n for n in list(stack.notices) if n["message"]["documentId"] == document_id and n["status"] == status]
    return found


def execution(stack: Stack, name: str) -> Dict[str, Any]:
    """The execution of that name, once it has ended."""
    sfn = stack.client("stepfunctions")
    arn = stack.resources.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def ended():
        described = sfn.describe_execution(executionArn=arn)
        return described if described["status"] != "RUNNING" else None

    return wait_until(ended, 60, f"execution {name} ended", poll_s=0.1)


def upload(stack: Stack, text: str) -> tuple:
    document_id = uuid.uuid4().hex
    key = f"uploads/alice/{document_id}/notes.txt"
    stack.client("s3").put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    return document_id, key


def item(stack: Stack, document_id: str) -> Dict[str, Any]:
    return stack.client("dynamodb").get_item(TableName=stack.resources.table, Key={"documentId": {"S": document_id}})["Item"]


def test_an_upload_is_extracted_indexed_analysed_recorded_and_each_step_noticed(stack):
    document_id, key = upload(stack, "The quick brown fox jumps over the lazy dog.")
    assert "analysed" in ended_with(stack, document_id), stack.notices
    ended = execution(stack, document_id)
    assert ended["status"] == "SUCCEEDED", ended
    # Each status once, each with its String attribute, each message the document (the last with the analysis:
    # States.JsonToString(States.JsonMerge(...)) works in moto's interpreter).
    assert sorted(statuses(stack, document_id)) == sorted(["uploaded", "extracted", "ingesting", "indexed", "analysed"])
    assert {n["type"] for n in stack.notices if n["message"]["documentId"] == document_id} == {"String"}
    assert notice(stack, document_id, "uploaded")["message"] == json.loads(ended["input"])["document"]
    assert notice(stack, document_id, "analysed")["message"]["analysis"] == ANALYSIS
    recorded = item(stack, document_id)
    assert (recorded["status"]["S"], recorded["statusRank"]["N"]) == ("analysed", "5")
    assert json.loads(recorded["analysis"]["S"]) == ANALYSIS and recorded["statusAt"]["S"]
    # The chunk was indexed by the knowledge base's sync; only the upload itself reached document_uploads.
    assert f"kb/alice/{document_id}/0000.txt" in [chunk.key for chunk in stack.bedrock.knowledge.chunks()]
    assert key in stack.uploads and not [k for k in stack.uploads if not k.startswith("uploads/")]
    output = json.loads(ended["output"])
    assert output["extract"] == {"ok": True, "chunks": 1, "code": None, "message": None}
    assert output["ingestion"]["status"] == "COMPLETE"  # GetIngestionJob's answer, in Step Functions' casing


def test_a_failed_ingestion_is_recorded_and_noticed_and_the_execution_fails(stack):
    document_id, _ = upload(stack, f"This one cannot be indexed {FAIL_MARKER}")
    s3 = stack.client("s3")
    try:
        ended_with(stack, document_id)
        ended = execution(stack, document_id)
    finally:  # the next sync must not fail on this chunk
        for prefix in (f"kb/alice/{document_id}/",):
            for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    assert (ended["status"], ended["error"], ended["cause"]) == ("FAILED", "DocumentFailed", INGEST_FAILED)
    assert sorted(statuses(stack, document_id)) == sorted(["uploaded", "extracted", "ingesting", "failed"])
    failed = notice(stack, document_id, "failed")["message"]
    assert (failed["documentId"], failed["code"], failed["message"]) == (document_id, "ingestion_failed", INGEST_FAILED)
    recorded = item(stack, document_id)
    assert (recorded["status"]["S"], recorded["statusRank"]["N"]) == ("failed", "6")
    assert (recorded["code"]["S"], recorded["message"]["S"]) == ("ingestion_failed", INGEST_FAILED)


def test_a_function_error_is_caught_recorded_and_noticed(stack):
    document_id, _ = upload(stack, f"Unreadable {EXPLODE}")
    ended_with(stack, document_id)
    ended = execution(stack, document_id)
    assert (ended["status"], ended["error"]) == ("FAILED", "DocumentFailed")
    assert sorted(statuses(stack, document_id)) == ["failed", "uploaded"]
    failed = notice(stack, document_id, "failed")["message"]
    # Lambda's Unhandled error came through the moto server's forwarding, named after its errorType.
    assert failed["code"] == "pipeline_failed" and "(ExtractError)" in failed["message"]
    assert item(stack, document_id)["code"]["S"] == "pipeline_failed"


def test_a_busy_data_source_is_retried_by_its_error_name_until_the_ingestion_starts(stack):
    knowledge = stack.bedrock.knowledge
    knowledge.ingestion_delay = 1.0  # the other job holds the data source for a second
    try:
        blocker = knowledge.start_job(description="another sync")
    finally:
        knowledge.ingestion_delay = 0.2
    document_id, _ = upload(stack, "A second fox, indexed once the other sync is done.")
    assert "analysed" in ended_with(stack, document_id)
    ended = execution(stack, document_id)
    assert ended["status"] == "SUCCEEDED", ended
    history = stack.client("stepfunctions").get_execution_history(executionArn=ended["executionArn"])["events"]
    failures = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    # The emulator's 409 came through the moto server's forwarding with its x-amzn-ErrorType and request id:
    # moto's interpreter names it bedrockagent.ConflictException (AWS: BedrockAgent.), which the ASL retries.
    assert failures and set(failures) == {"bedrockagent.ConflictException"}
    assert knowledge.job(blocker.job_id).status == "COMPLETE"


def test_starting_an_execution_twice_with_the_same_name_and_input_makes_one(stack):
    sfn = stack.client("stepfunctions")
    document_id = uuid.uuid4().hex
    document = {"documentId": document_id, "owner": "alice", "fileName": "gone.txt", "contentType": "text/plain",
                "size": 1, "createdAt": 1767225600000}
    given = json.dumps({"action": "delete", "document": document, "bucket": BUCKET, "key": "", "pollSeconds": 0})
    arn = stack.resources.state_machine_arn
    first = sfn.start_execution(stateMachineArn=arn, name=document_id, input=given)["executionArn"]
    again = sfn.start_execution(stateMachineArn=arn, name=document_id, input=given)["executionArn"]
    assert again == first
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):  # the same name for other work is refused
        sfn.start_execution(stateMachineArn=arn, name=document_id, input=given.replace("gone.txt", "other.txt"))
    ended = execution(stack, document_id)
    assert ended["status"] == "SUCCEEDED", ended
    named = [e for e in sfn.list_executions(stateMachineArn=arn)["executions"] if e.get("name") == document_id]
    assert len(named) == 1
    assert ended_with(stack, document_id) == ["deleted"]
