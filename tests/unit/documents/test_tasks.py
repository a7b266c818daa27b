"""The pipeline's Lambda steps: Extract writes chunks with their owner's sidecars; Analyse asks the
agent through the owner's filter."""
from __future__ import annotations

import json

import boto3

from chalicelib.documents import tasks
from chalicelib.documents import upload as rules
from chalicelib.store import now_ms
from chalicelib.store.documents import Document
from tests.support.documents import pdf as make_pdf
from tests.support.fakes import agent_stream

TEXT = "# Glaciers\n\nGlaciers retreat in summer. Meltwater feeds the rivers.\n"


def _state(runtime, stage, name, body):
    document = Document(rules.new_document_id(), "alice", name, "text/markdown", len(body), now_ms())
    key = rules.upload_key("alice", document.document_id, name)
    boto3.client("s3").put_object(Bucket=stage.bucket, Key=key, Body=body)
    return {"action": "ingest", "document": document.brief(), "bucket": stage.bucket, "key": key, "pollSeconds": 0}


def test_extract_writes_each_chunk_with_its_owners_metadata_sidecar(runtime, documents_stage):
    state = _state(runtime, documents_stage, "glaciers.md", TEXT.encode())
    assert tasks.extract(runtime, state) == {"ok": True, "chunks": 1, "code": None, "message": None}
    document_id = state["document"]["documentId"]
    s3 = boto3.client("s3")
    chunk = rules.chunk_key("alice", document_id, 1)
    assert s3.get_object(Bucket=documents_stage.bucket, Key=chunk)["Body"].read().decode().startswith("# Glaciers")
    sidecar = json.loads(s3.get_object(Bucket=documents_stage.bucket, Key=rules.metadata_key(chunk))["Body"].read())
    assert sidecar == {"metadataAttributes": {"owner": "alice", "documentId": document_id, "fileName": "glaciers.md"}}


def test_a_pdf_is_read_and_an_unreadable_file_is_an_answer_not_an_error(runtime, documents_stage):
    pdf = _state(runtime, documents_stage, "report.pdf", make_pdf([["Sea ice thins every year."]]))
    assert tasks.extract(runtime, pdf)["ok"] is True
    broken = _state(runtime, documents_stage, "broken.pdf", b"%PDF-1.4 not really")
    result = tasks.extract(runtime, broken)
    assert result["ok"] is False and result["code"] == "unreadable" and result["message"]


def test_analyse_asks_the_agent_through_the_owners_filter_and_reads_its_json(runtime, documents_stage, agent):
    state = _state(runtime, documents_stage, "glaciers.md", TEXT.encode())
    tasks.extract(runtime, state)
    agent.script = agent_stream('{"summary": "Why glaciers retreat.", "topics": ["glaciers", "rivers"]}')
    assert tasks.analyse(runtime, state) == {"analysis": {"summary": "Why glaciers retreat.", "topics": ["glaciers", "rivers"]}}
    (call,) = agent.calls
    (configuration,) = call["sessionState"]["knowledgeBaseConfigurations"]
    assert configuration["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"] == {
        "equals": {"key": "owner", "value": "alice"}}
    agent.script = agent_stream("It is about ice.")  # prose: the topics come from the document's words
    assert tasks.analyse(runtime, state)["analysis"] == {"summary": "It is about ice.",
                                                         "topics": ["glaciers", "retreat", "summer", "meltwater", "feeds"]}
