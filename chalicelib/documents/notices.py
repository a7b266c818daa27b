"""The documents topic's subscriber: each status the pipeline publishes is recorded and pushed
as a ``document`` event to every open connection of the document's owner.

It is one subscriber among any others (the topic is for downstream consumers too). SNS may
deliver late or twice: a status only moves forward (``DocumentStore.record_status``), and a
notice older than what is recorded is not pushed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from chalicelib import protocol
from chalicelib.gateway import ConnectionGone
from chalicelib.logs import logger
from chalicelib.protocol import DocumentStatus
from chalicelib.runtime import Runtime


@dataclass(frozen=True)
class Notice:
    document_id: str
    owner: str
    file_name: str
    status: DocumentStatus
    code: Optional[str] = None
    message: Optional[str] = None
    analysis: Optional[Dict[str, Any]] = None

    def event(self) -> protocol.Event:
        return protocol.document_event(self.document_id, self.file_name, self.status, self.code, self.message,
                                       self.analysis)


def notice_of(record: Mapping[str, Any]) -> Notice:
    """A Lambda SNS record as a notice: the message is the document (JSON), the status an attribute."""
    sns = record["Sns"]
    body = json.loads(sns["Message"])
    status = DocumentStatus(sns["MessageAttributes"]["status"]["Value"])
    analysis = body.get("analysis")
    return Notice(str(body["documentId"]), str(body["owner"]), str(body.get("fileName", "")), status,
                  body.get("code"), body.get("message"), analysis if isinstance(analysis, dict) else None)


def handle(runtime: Runtime, records: List[Mapping[str, Any]]) -> None:
    """Record and push each notice (an exception makes SNS retry the delivery)."""
    for record in records:
        deliver(runtime, notice_of(record))


def deliver(runtime: Runtime, notice: Notice) -> int:
    """Record the notice's status, then push it to the owner's connections; how many it reached."""
    if not runtime.documents.record_status(notice.document_id, notice.status):
        logger.info("a stale document notice; not pushed", extra={"document_id": notice.document_id,
                                                                    "status": str(notice.status)})
        return 0
    settings = runtime.settings
    gateway = runtime.gateway(settings.websocket_api_id, settings.stage)
    reached = 0
    for connection_id in runtime.connections.of_user(notice.owner):
        try:
            gateway.post(connection_id, notice.event())
            reached += 1
        except ConnectionGone:
            runtime.connections.delete(connection_id)
    logger.info("document notice pushed", extra={"document_id": notice.document_id, "status": str(notice.status),
                                                  "connections": reached})
    return reached
