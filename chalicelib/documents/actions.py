"""What the WebSocket's document actions do: ``upload``, ``documents`` and ``delete`` (docs/documents.md).

``upload`` never sees the file: it checks what the client says it will send, records the
document and answers a presigned S3 POST that S3 holds to that key, that exact size and that
content type. The pipeline starts when S3 says the object arrived (``pipeline.py``).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

from chalicelib import protocol
from chalicelib.documents import upload as rules
from chalicelib.logs import logger
from chalicelib.protocol import DeleteDocument, DocumentStatus, ErrorCode, Event, Upload
from chalicelib.runtime import Runtime
from chalicelib.store import Connection, now_ms
from chalicelib.store.documents import Document

Reply = Callable[[Event], None]
NOT_ENABLED = "Documents are not enabled on this stage (it has no documents bucket)."
NO_DOCUMENT = "You have no document with that id."
# An upload record outlives its presigned POST by this much (S3's notification may lag a little).
PENDING_GRACE_S = 3600


def _enabled(runtime: Runtime, reply: Reply) -> bool:
    if runtime.settings.documents_bucket:
        return True
    reply(protocol.error_event(ErrorCode.INVALID_REQUEST, NOT_ENABLED, retryable=False))
    return False


def upload(runtime: Runtime, reply: Reply, connection: Connection, message: Upload) -> None:
    """Check the upload, record it, and answer where to POST it (``upload``), or why not (``error``)."""
    if not _enabled(runtime, reply):
        return
    settings = runtime.settings
    try:
        request = rules.check_upload(message.file_name, message.content_type, message.size, settings.max_upload_bytes)
    except rules.UploadRefused as exc:
        logger.info("upload refused", extra={"reason": exc.reason})
        reply(exc.event())
        return
    document = Document(rules.new_document_id(), connection.user_id, request.file_name, request.content_type,
                        request.size, now_ms())
    key = rules.upload_key(connection.user_id, document.document_id, request.file_name)
    runtime.documents.create(document, settings.upload_url_ttl_s + PENDING_GRACE_S)
    post = runtime.clients.s3.generate_presigned_post(
        Bucket=settings.documents_bucket, Key=key, Fields={"Content-Type": request.content_type},
        Conditions=[{"Content-Type": request.content_type}, ["content-length-range", request.size, request.size]],
        ExpiresIn=settings.upload_url_ttl_s)
    logger.info("upload signed", extra={"document_id": document.document_id, "bytes": request.size})
    reply(protocol.upload_event(document.document_id, post["url"], post["fields"],
                                document.created_at + settings.upload_url_ttl_s * 1000))


def documents(runtime: Runtime, reply: Reply, connection: Connection) -> None:
    """The user's documents and where each stands, newest first (what a reconnect catches up from)."""
    if not _enabled(runtime, reply):
        return
    entries = [protocol.document_entry(d.document_id, d.file_name, d.status, d.updated_at, d.code, d.message, d.analysis)
               for d in runtime.documents.owned(connection.user_id)
               if d.status is not None and d.status != DocumentStatus.DELETED]
    reply(protocol.documents_event(entries))


def delete(runtime: Runtime, reply: Reply, connection: Connection, message: DeleteDocument) -> None:
    """Remove the document's upload and chunks, then re-sync the knowledge base (the pipeline's
    ``delete`` route: its retries absorb an ingestion already running); ``deleted`` follows."""
    if not _enabled(runtime, reply):
        return
    document = _owned(runtime, connection.user_id, message.document_id)
    if document is None:
        reply(protocol.error_event(ErrorCode.NOT_FOUND, NO_DOCUMENT, retryable=False))
        return
    bucket = runtime.settings.documents_bucket
    s3 = runtime.clients.s3
    for prefix in (rules.upload_prefix(document.owner, document.document_id),
                   rules.chunks_prefix(document.owner, document.document_id)):
        delete_prefix(s3, bucket, prefix)
    runtime.documents.record_status(document.document_id, DocumentStatus.DELETED)
    start_pipeline(runtime, document, "delete", f"{document.document_id}-delete")
    reply(protocol.document_event(document.document_id, document.file_name, DocumentStatus.DELETED))


def _owned(runtime: Runtime, user_id: str, document_id: str) -> Optional[Document]:
    """The user's document (another user's, or none, is the same: not found)."""
    if not rules.is_document_id(document_id):
        return None
    document = runtime.documents.get(document_id)
    if document is None or document.owner != user_id or document.status in (None, DocumentStatus.DELETED):
        return None
    return document


def delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix``; how many were."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted


def start_pipeline(runtime: Runtime, document: Document, action: str, name: str, key: str = "") -> bool:
    """Start the pipeline for the document; False if an execution of that name exists (a duplicate)."""
    settings = runtime.settings
    payload = {"action": action, "document": document.brief(), "bucket": settings.documents_bucket, "key": key,
               "pollSeconds": settings.document_poll_s}
    sfn = runtime.clients.stepfunctions
    try:
        sfn.start_execution(stateMachineArn=settings.document_pipeline_arn, name=name, input=json.dumps(payload))
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True
