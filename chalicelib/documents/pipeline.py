"""The uploads queue's handler: each object S3 says arrived starts the document pipeline, once.

A key the app did not sign (or whose document record is gone, or another owner's) starts
nothing: the record is the only place a document's owner comes from, and the key's owner digest
must match it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

from chalicelib.documents import actions
from chalicelib.documents import upload as rules
from chalicelib.documents.notifications import ObjectCreated, created_objects, execution_name
from chalicelib.logs import logger
from chalicelib.runtime import Runtime


def handle_batch(runtime: Runtime, records: List[Mapping[str, Any]]) -> Dict[str, Any]:
    """Start a pipeline per uploaded object; report the SQS records to retry (partial batch)."""
    failures = []
    for record in records:
        try:
            for created in created_objects(record["body"]):
                start_for(runtime, created)
        except Exception:  # noqa: BLE001 - this record is retried (then dead-lettered); the rest go on
            logger.exception("could not start the document pipeline")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def start_for(runtime: Runtime, created: ObjectCreated) -> bool:
    """Start the pipeline for one uploaded object; False when it starts nothing (and why is logged)."""
    if created.bucket != runtime.settings.documents_bucket:
        logger.warning("an upload notice for another bucket", extra={"bucket": created.bucket})
        return False
    try:
        owner_segment, document_id = rules.parse_upload_key(created.key)
    except ValueError:
        logger.warning("an object the app did not sign arrived; ignored", extra={"bytes": created.size})
        return False
    document = runtime.documents.get(document_id)
    if document is None or rules.owner_segment(document.owner) != owner_segment:
        logger.warning("an upload with no document record of its owner; ignored", extra={"document_id": document_id})
        return False
    started = actions.start_pipeline(runtime, document, "ingest", execution_name(document_id, created), created.key)
    logger.info("document pipeline started" if started else "duplicate upload notice: already started",
                extra={"document_id": document_id})
    return started
