"""S3's notice of an upload starts the pipeline once per object version, for signed keys only."""
from __future__ import annotations

import json

import boto3

from chalicelib.documents import pipeline
from chalicelib.documents import upload as rules
from chalicelib.store import now_ms
from chalicelib.store.documents import Document


def _record(key, bucket, message_id="m1", sequencer="0055AED6DCD90281E5"):
    body = {"Records": [{"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": bucket},
                                                                   "object": {"key": key, "size": 5, "sequencer": sequencer}}}]}
    return {"messageId": message_id, "body": json.dumps(body)}


def _document(runtime, owner="alice"):
    document = Document(rules.new_document_id(), owner, "a b.md", "text/markdown", 5, now_ms())
    runtime.documents.create(document, 600)
    return document


def _executions(stage):
    return boto3.client("stepfunctions").list_executions(stateMachineArn=stage.pipeline_arn)["executions"]


def test_an_upload_starts_one_execution_even_if_s3_says_so_twice(runtime, documents_stage):
    document = _document(runtime)
    key = rules.upload_key("alice", document.document_id, document.file_name)
    record = _record(key.replace(" ", "+"), documents_stage.bucket)  # S3 encodes keys in its notices
    assert pipeline.handle_batch(runtime, [record, {**record, "messageId": "m2"}]) == {"batchItemFailures": []}
    (execution,) = _executions(documents_stage)
    assert execution["name"] == f"{document.document_id}-0055AED6DCD90281E5"
    started = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"])
    assert started == {"action": "ingest", "document": document.brief(), "bucket": documents_stage.bucket, "key": key,
                       "pollSeconds": 0}


def test_objects_the_app_did_not_sign_start_nothing(runtime, documents_stage):
    document = _document(runtime, owner="alice")
    forged = rules.upload_key("mallory", document.document_id, "a.md")  # alice's document under another owner
    unknown = rules.upload_key("alice", rules.new_document_id(), "a.md")  # no record
    for key in (forged, unknown, "uploads/elsewhere.md", "kb/x/y/chunk-00001.txt"):
        assert pipeline.handle_batch(runtime, [_record(key, documents_stage.bucket)]) == {"batchItemFailures": []}
    other_bucket = _record(rules.upload_key("alice", document.document_id, "a.md"), "someone-elses-bucket")
    assert pipeline.handle_batch(runtime, [other_bucket]) == {"batchItemFailures": []}
    assert _executions(documents_stage) == []


def test_a_record_that_cannot_be_read_is_retried_alone(runtime, documents_stage):
    document = _document(runtime)
    good = _record(rules.upload_key("alice", document.document_id, "a.md"), documents_stage.bucket, "good")
    bad = {"messageId": "bad", "body": "not json"}
    assert pipeline.handle_batch(runtime, [bad, good]) == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert len(_executions(documents_stage)) == 1
