"""The WebSocket's document actions through the Chalice test client: upload, documents, delete."""
from __future__ import annotations

import base64
import json

import boto3
import pytest

from chalicelib.documents import upload as rules
from chalicelib.protocol import DocumentStatus


def events_of(management, connection_id="c1"):
    return [json.loads(data) for cid, data in management.posts if cid == connection_id]


def test_an_upload_is_recorded_and_answered_with_a_post_s3_holds_to_its_key_size_and_type(conn, management, runtime):
    send = conn("c1", "alice")
    send(action="upload", fileName="Trip notes.md", contentType="text/markdown", size=1234)
    (event,) = events_of(management)
    assert event["type"] == "upload" and rules.is_document_id(event["documentId"])
    key = rules.upload_key("alice", event["documentId"], "Trip notes.md")
    assert event["fields"]["key"] == key and event["fields"]["Content-Type"] == "text/markdown"
    policy = json.loads(base64.b64decode(event["fields"]["policy"]))
    assert ["content-length-range", 1234, 1234] in policy["conditions"]
    assert {"Content-Type": "text/markdown"} in policy["conditions"] and {"key": key} in policy["conditions"]
    document = runtime.documents.get(event["documentId"])
    assert (document.owner, document.file_name, document.size, document.status) == ("alice", "Trip notes.md", 1234, None)
    send(action="documents")
    assert events_of(management)[-1] == {"type": "documents", "documents": []}  # not uploaded yet


@pytest.mark.parametrize("name, content_type, size, words", [
    ("setup.exe", "application/octet-stream", 10, "cannot be read"),
    ("big.pdf", "application/pdf", 11 * 1024 * 1024, "the limit is"),
    ("notes.md", "application/pdf", 10, "content type"),
])
def test_a_refused_upload_stores_nothing(conn, management, runtime, documents_stage, name, content_type, size, words):
    conn("c1", "alice")(action="upload", fileName=name, contentType=content_type, size=size)
    (event,) = events_of(management)
    assert event["type"] == "error" and event["code"] == "invalid_request" and words in event["message"]
    assert boto3.client("dynamodb").scan(TableName=documents_stage.table)["Count"] == 0
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=documents_stage.bucket)


def _uploaded(send, management, runtime, name="a.md"):
    send(action="upload", fileName=name, contentType="text/markdown", size=5)
    document_id = events_of(management)[-1]["documentId"]
    runtime.documents.record_status(document_id, DocumentStatus.UPLOADED)
    return document_id


def test_documents_lists_the_users_own_newest_first(conn, management, runtime):
    alice, bob = conn("c1", "alice"), conn("c2", "bob")
    first, second = _uploaded(alice, management, runtime, "one.md"), _uploaded(alice, management, runtime, "two.md")
    _uploaded(bob, management, runtime)
    alice(action="documents")
    listed = events_of(management)[-1]["documents"]
    assert [(d["documentId"], d["fileName"], d["status"]) for d in listed] == [
        (second, "two.md", "uploaded"), (first, "one.md", "uploaded")]
    assert all(isinstance(d["updatedAt"], int) for d in listed)


def test_delete_removes_the_documents_objects_and_re_syncs_the_knowledge_base(conn, management, runtime, documents_stage):
    send = conn("c1", "alice")
    document_id = _uploaded(send, management, runtime)
    s3 = boto3.client("s3")
    keep = rules.upload_key("alice", rules.new_document_id(), "other.md")
    for key in (rules.upload_key("alice", document_id, "a.md"), rules.chunk_key("alice", document_id, 1), keep):
        s3.put_object(Bucket=documents_stage.bucket, Key=key, Body=b"x")
    send(action="delete", documentId=document_id)
    assert events_of(management)[-1] == {"type": "document", "documentId": document_id, "fileName": "a.md",
                                         "status": "deleted"}
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=documents_stage.bucket)["Contents"]]
    assert keys == [keep]
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=documents_stage.pipeline_arn)["executions"]
    assert execution["name"] == f"{document_id}-delete"
    started = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["action"] == "delete" and started["document"]["owner"] == "alice"
    send(action="documents")
    assert events_of(management)[-1]["documents"] == []


def test_another_users_document_cannot_be_deleted(conn, management, runtime):
    document_id = _uploaded(conn("c1", "alice"), management, runtime)
    bob = conn("c2", "bob")
    for document in (document_id, "not-an-id", rules.new_document_id()):
        bob(action="delete", documentId=document)
        event = events_of(management, "c2")[-1]
        assert (event["type"], event["code"]) == ("error", "not_found")
    assert runtime.documents.get(document_id).status == DocumentStatus.UPLOADED
