"""The documents topic's subscriber: each status recorded (only forward) and pushed to the owner."""
from __future__ import annotations

import json

from chalicelib.documents import notices
from chalicelib.documents import upload as rules
from chalicelib.protocol import DocumentStatus
from chalicelib.store import now_ms
from chalicelib.store.documents import Document


def sns_record(document, status, **extra):
    message = {**document.brief(), **extra}
    return {"Sns": {"Message": json.dumps(message), "MessageAttributes": {"status": {"Type": "String", "Value": status}}}}


def test_a_notice_is_recorded_and_pushed_to_every_open_connection_of_the_owner_only(conn, management, runtime):
    conn("c1", "alice"), conn("c2", "alice"), conn("c3", "bob")
    document = Document(rules.new_document_id(), "alice", "a.md", "text/markdown", 5, now_ms())
    runtime.documents.create(document, 600)
    analysis = {"summary": "About glaciers.", "topics": ["glaciers"]}
    notices.handle(runtime, [sns_record(document, "analysed", analysis=analysis)])
    pushed = {cid: json.loads(data) for cid, data in management.posts}
    assert set(pushed) == {"c1", "c2"}
    assert pushed["c1"] == {"type": "document", "documentId": document.document_id, "fileName": "a.md",
                            "status": "analysed", "analysis": analysis}
    assert runtime.documents.get(document.document_id).status == DocumentStatus.ANALYSED


def test_a_late_notice_never_moves_a_document_back(conn, management, runtime):
    conn("c1", "alice")
    document = Document(rules.new_document_id(), "alice", "a.md", "text/markdown", 5, now_ms())
    runtime.documents.create(document, 600)
    notices.handle(runtime, [sns_record(document, "indexed")])
    notices.handle(runtime, [sns_record(document, "extracted")])  # SNS delivered it late
    assert [json.loads(data)["status"] for _, data in management.posts] == ["indexed"]
    assert runtime.documents.get(document.document_id).status == DocumentStatus.INDEXED
    notices.handle(runtime, [sns_record(document, "failed", code="ingestion_failed", message="no")])
    assert json.loads(management.posts[-1][1])["code"] == "ingestion_failed"


def test_a_connection_that_is_gone_is_forgotten(conn, management, runtime):
    conn("c1", "alice")
    management.gone.add("c1")
    document = Document(rules.new_document_id(), "alice", "a.md", "text/markdown", 5, now_ms())
    runtime.documents.create(document, 600)
    assert notices.deliver(runtime, notices.notice_of(sns_record(document, "uploaded"))) == 0
    assert runtime.connections.get("c1") is None
