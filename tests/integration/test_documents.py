"""Documents on the local stack, over real sockets: upload over the WebSocket, the file POSTed to S3
(moto) as a browser would, the Step Functions pipeline (moto's interpreter running
infra/documents.asl.json) calling the app's own functions, the knowledge base (the Bedrock
emulator), the topic's subscriber pushing every status back."""
from __future__ import annotations

import json
import secrets
import time
from typing import Any, Dict, List, Optional

import boto3
import pytest

from chalicelib.documents import upload as rules
from client.documents import post_to_storage
from tests.support.documents import pdf
from tests.support.stack import ask, answer_of
from tests.support.timing import wait_until

DONE = ("analysed", "failed", "deleted")
PIPELINE_TIMEOUT_S = 120  # an emulated ingestion is seconds; five at once take turns (ConflictException)


def unique_user(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def aws(stack: Any, service: str) -> Any:
    return boto3.client(service, endpoint_url=stack.info["moto"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def request_upload(ws: Any, name: str, content_type: str, data: bytes) -> Dict[str, Any]:
    """Ask to upload; the answer (``upload``, or the ``error`` refusing it)."""
    ws.send(json.dumps({"action": "upload", "fileName": name, "contentType": content_type, "size": len(data)}))
    while True:
        event = json.loads(ws.recv(timeout=15))
        if event["type"] in ("upload", "error"):
            return event


def upload(ws: Any, name: str, content_type: str, data: bytes) -> str:
    """Upload a file as the clients do: ask, then POST it to S3; its document id."""
    answer = request_upload(ws, name, content_type, data)
    assert answer["type"] == "upload", answer
    assert post_to_storage(answer["url"], answer["fields"], name, content_type, data, timeout=15) in (200, 201, 204)
    return answer["documentId"]


def statuses(ws: Any, document_ids: List[str], timeout: float = PIPELINE_TIMEOUT_S) -> Dict[str, List[Dict[str, Any]]]:
    """Each document's ``document`` events as they arrive, until each has ended."""
    seen: Dict[str, List[Dict[str, Any]]] = {document_id: [] for document_id in document_ids}
    deadline = time.monotonic() + timeout
    while any(not events or events[-1]["status"] not in DONE for events in seen.values()):
        event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if event["type"] == "document" and event["documentId"] in seen:
            seen[event["documentId"]].append(event)
    return seen


def listed(ws: Any) -> List[Dict[str, Any]]:
    ws.send(json.dumps({"action": "documents"}))
    while True:
        event = json.loads(ws.recv(timeout=15))
        if event["type"] == "documents":
            return event["documents"]


MARKDOWN = "# Field notes\n\nThe quokka smiles at dawn near the salt lake.\n\nNothing else happened.\n"
PDF_SENTENCE = "Basalt columns cool slowly into hexagons."


def test_a_markdown_file_and_a_pdf_are_analysed_and_answers_draw_on_them(stack):
    user = unique_user("docs")
    with stack.connect(user) as ws:
        notes = upload(ws, "field notes.md", "text/markdown", MARKDOWN.encode())
        report = upload(ws, "report.pdf", "application/pdf", pdf([[PDF_SENTENCE]]))
        seen = statuses(ws, [notes, report])
        for document_id in (notes, report):
            assert [e["status"] for e in seen[document_id]] == ["uploaded", "extracted", "ingesting", "indexed",
                                                                 "analysed"], seen[document_id]
            analysis = seen[document_id][-1]["analysis"]
            assert analysis["summary"] and analysis["topics"]
        assert "quokka" in seen[notes][-1]["analysis"]["topics"]  # the document's own words (the emulator echoes)
        assert "The quokka smiles at dawn" in answer_of(ask(ws, "!kb quokka smiles"))
        assert PDF_SENTENCE in answer_of(ask(ws, "!kb basalt hexagons"))
        mine = {d["documentId"]: d for d in listed(ws)}
        assert mine[notes]["status"] == mine[report]["status"] == "analysed"
        assert mine[notes]["analysis"] == seen[notes][-1]["analysis"]
    with stack.connect(user) as again:  # a new connection: the list says where each stands
        assert {d["documentId"] for d in listed(again)} >= {notes, report}


def test_another_users_answers_never_draw_on_them(stack):
    owner, other = unique_user("docs"), unique_user("docs")
    with stack.connect(owner) as ws:
        document_id = upload(ws, "secret.md", "text/markdown", b"The vault code is mangosteen forty two.")
        assert statuses(ws, [document_id])[document_id][-1]["status"] == "analysed"
        assert "mangosteen" in answer_of(ask(ws, "!kb mangosteen"))
    with stack.connect(other) as ws:
        assert answer_of(ask(ws, "!kb mangosteen")) == "No passages in the knowledge base match."
        assert listed(ws) == []
        ws.send(json.dumps({"action": "delete", "documentId": document_id}))
        assert json.loads(ws.recv(timeout=15))["code"] == "not_found"


def test_five_uploads_at_once_all_reach_analysed(stack):
    user = unique_user("docs")
    with stack.connect(user) as ws:
        answers = [request_upload(ws, f"note-{n}.txt", "text/plain", f"Note {n}: the heron {n} waits.".encode())
                   for n in range(5)]
        for n, answer in enumerate(answers):  # all five arrive together, and ingest in turn
            post_to_storage(answer["url"], answer["fields"], f"note-{n}.txt", "text/plain",
                            f"Note {n}: the heron {n} waits.".encode(), timeout=15)
        seen = statuses(ws, [answer["documentId"] for answer in answers])
        assert all(events[-1]["status"] == "analysed" for events in seen.values()), seen


@pytest.mark.parametrize("name, content_type, size", [
    ("installer.exe", "application/octet-stream", 1000),
    ("huge.pdf", "application/pdf", 50 * 1024 * 1024),
])
def test_an_exe_or_an_oversized_upload_is_refused_before_anything_is_stored(stack, name, content_type, size):
    user = unique_user("docs")
    with stack.connect(user) as ws:
        ws.send(json.dumps({"action": "upload", "fileName": name, "contentType": content_type, "size": size}))
        event = json.loads(ws.recv(timeout=15))
        assert event["type"] == "error" and event["code"] == "invalid_request" and event["retryable"] is False
        assert listed(ws) == []
    stored = aws(stack, "s3").list_objects_v2(Bucket=stack.info["documents"]["bucket"],
                                              Prefix=f"uploads/{rules.owner_segment(user)}/")
    assert stored["KeyCount"] == 0


def _executions_of(stack: Any, document_id: str) -> List[Dict[str, Any]]:
    sfn = aws(stack, "stepfunctions")
    executions = sfn.list_executions(stateMachineArn=stack.info["documents"]["state_machine_arn"])["executions"]
    return [e for e in executions if e["name"].startswith(document_id)]


def _queue_drained(stack: Any, queue_url: str) -> bool:
    attributes = aws(stack, "sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return all(value == "0" for value in attributes["Attributes"].values())


def test_a_duplicate_s3_notification_starts_no_second_execution(stack):
    user = unique_user("docs")
    with stack.connect(user) as ws:
        document_id = upload(ws, "once.txt", "text/plain", b"Only once, the lyrebird sang.")
        assert statuses(ws, [document_id])[document_id][-1]["status"] == "analysed"
    (execution,) = _executions_of(stack, document_id)
    bucket = stack.info["documents"]["bucket"]
    key = rules.upload_key(user, document_id, "once.txt")
    head = aws(stack, "s3").head_object(Bucket=bucket, Key=key)
    notice = {"Records": [{"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": bucket}, "object": {
        "key": key, "size": head["ContentLength"], "eTag": head["ETag"].strip('"')}}}]}  # moto's notices: no sequencer
    queue_url = stack.info["documents"]["uploads_queue_url"]
    aws(stack, "sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(notice))  # S3 says it again
    wait_until(lambda: _queue_drained(stack, queue_url), timeout=30)
    assert [e["executionArn"] for e in _executions_of(stack, document_id)] == [execution["executionArn"]]


def _record(stack: Any, document_id: str) -> Optional[Dict[str, Any]]:
    item = aws(stack, "dynamodb").get_item(TableName=stack.info["documents"]["table"],
                                           Key={"documentId": {"S": document_id}}).get("Item")
    return None if item is None else {name: next(iter(value.values())) for name, value in item.items()}


def test_an_ingestion_that_fails_ends_failed_recorded_and_notified_and_the_document_can_be_deleted(stack):
    """Last in this module: until deleted, the failing chunk fails every sync of the data source."""
    user = unique_user("docs")
    with stack.connect(user) as ws:
        document_id = upload(ws, "poison.md", "text/markdown", b"This one will not index: !ingest-fail")
        events = statuses(ws, [document_id])[document_id]
        assert [e["status"] for e in events] == ["uploaded", "extracted", "ingesting", "failed"], events
        assert events[-1]["code"] == "ingestion_failed" and events[-1]["message"]  # the Catch path's notice
        record = _record(stack, document_id)
        assert record is not None and (record["status"], record["code"]) == ("failed", "ingestion_failed")
        (execution,) = _executions_of(stack, document_id)
        described = aws(stack, "stepfunctions").describe_execution(executionArn=execution["executionArn"])
        assert described["status"] == "FAILED" and described["error"] == "DocumentFailed"
        ws.send(json.dumps({"action": "delete", "documentId": document_id}))
        assert statuses(ws, [document_id])[document_id][-1]["status"] == "deleted"
        wait_until(lambda: any(e["name"] == f"{document_id}-delete" and e["status"] == "SUCCEEDED"
                               for e in _executions_of(stack, document_id)), timeout=PIPELINE_TIMEOUT_S)
        assert listed(ws) == []
