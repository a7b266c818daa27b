"""The pipeline's Lambda steps (infra/documents.asl.json): Extract and Analyse.

Each takes the execution's state. What a document itself makes impossible (no text, encrypted,
too large) is an answer (``ok: false`` with a code and words for the user), routed by the state
machine; anything else raises, for the state machine's Retry and Catch.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from chalicelib.backends import End, Failure, TextDelta, TurnRequest
from chalicelib.documents import upload as rules
from chalicelib.documents.actions import delete_prefix
from chalicelib.documents.analysis import analysis_prompt, parse_analysis
from chalicelib.documents.chunking import chunk_text
from chalicelib.documents.extract import ExtractionError, extract_text
from chalicelib.logs import logger
from chalicelib.runtime import Runtime
from chalicelib.turns import ids

ANALYSIS_SOURCE_CHUNKS = 20  # the chunks whose words the topics fall back on


def _result(ok: bool, chunks: int = 0, code: Optional[str] = None, message: Optional[str] = None) -> Dict[str, Any]:
    # Every key always: the state machine's ResultSelector reads each one.
    return {"ok": ok, "chunks": chunks, "code": code, "message": message}


def extract(runtime: Runtime, state: Mapping[str, Any]) -> Dict[str, Any]:
    """Read the upload, extract its text and write its chunks, each with its metadata sidecar."""
    document = state["document"]
    owner, document_id, file_name = document["owner"], document["documentId"], document["fileName"]
    kind = rules.EXTENSIONS[rules.extension_of(file_name)][0]
    s3 = runtime.clients.s3
    limit = runtime.settings.max_upload_bytes
    body = s3.get_object(Bucket=state["bucket"], Key=state["key"])["Body"].read(limit + 1)
    if len(body) > limit:
        return _result(False, code="too_large", message=f"The file is larger than {limit:,} bytes.")
    try:
        chunks = chunk_text(extract_text(body, kind))
    except ExtractionError as exc:
        logger.info("document unreadable", extra={"document_id": document_id, "reason": str(exc.reason)})
        return _result(False, code=str(exc.reason), message=exc.message)
    if not chunks:
        return _result(False, code="empty", message="The file has no text in it.")
    if len(chunks) > rules.MAX_CHUNKS:
        return _result(False, code="too_large", message="The document is too long to index.")
    delete_prefix(s3, state["bucket"], rules.chunks_prefix(owner, document_id))  # a retried step starts clean
    metadata = json.dumps(rules.sidecar(owner, document_id, file_name)).encode("utf-8")
    for number, chunk in enumerate(chunks, start=1):
        key = rules.chunk_key(owner, document_id, number)
        s3.put_object(Bucket=state["bucket"], Key=key, Body=chunk.encode("utf-8"), ContentType="text/plain; charset=utf-8")
        s3.put_object(Bucket=state["bucket"], Key=rules.metadata_key(key), Body=metadata, ContentType="application/json")
    logger.info("document extracted", extra={"document_id": document_id, "chunks": len(chunks)})
    return _result(True, len(chunks))


def analyse(runtime: Runtime, state: Mapping[str, Any]) -> Dict[str, Any]:
    """Ask the stage's agent about the document, through its owner's filter: a summary and topics."""
    document = state["document"]
    owner, document_id = document["owner"], document["documentId"]
    session = ids.session_id(owner, f"document-{document_id}", "")
    request = TurnRequest(analysis_prompt(document["fileName"]), session, user_id=owner)
    parts: List[str] = []
    for event in runtime.backend.stream(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Failure):
            raise RuntimeError(f"the agent could not analyse the document: {event.code}: {event.message}")
        elif isinstance(event, End):
            break
    analysis = parse_analysis("".join(parts), _document_text(runtime, state))
    logger.info("document analysed", extra={"document_id": document_id, "topics": len(analysis["topics"])})
    return {"analysis": analysis}


def _document_text(runtime: Runtime, state: Mapping[str, Any]) -> str:
    """The start of the document, from its chunks (the upload may be a PDF)."""
    document = state["document"]
    s3 = runtime.clients.s3
    prefix = rules.chunks_prefix(document["owner"], document["documentId"])
    listed = s3.list_objects_v2(Bucket=state["bucket"], Prefix=prefix, MaxKeys=2 * ANALYSIS_SOURCE_CHUNKS)
    keys = [item["Key"] for item in listed.get("Contents", []) if item["Key"].endswith(".txt")]
    return "\n\n".join(s3.get_object(Bucket=state["bucket"], Key=key)["Body"].read().decode("utf-8", "replace")
                       for key in keys[:ANALYSIS_SOURCE_CHUNKS])
