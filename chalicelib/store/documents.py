"""The documents table: one item per uploaded document, its owner's listing through ``ByOwner``.

An item is written when the upload is asked for (no status yet, with a TTL: an upload never made
disappears on its own), then moves through the pipeline's statuses. A status only ever moves
forward (``RANK``): SNS may deliver notices late or twice, and the pipeline records the analysis
and failures itself, so a late ``indexed`` never overwrites ``analysed``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Optional

from chalicelib.protocol import DocumentStatus
from chalicelib.store.items import Item, Table, from_item, now_ms, to_item

BY_OWNER = "ByOwner"  # the global index: an owner's documents, newest first
LIST_LIMIT = 100  # documents per `documents` answer
RANK = {
    DocumentStatus.UPLOADED: 1,
    DocumentStatus.EXTRACTED: 2,
    DocumentStatus.INGESTING: 3,
    DocumentStatus.INDEXED: 4,
    DocumentStatus.ANALYSED: 5,
    DocumentStatus.FAILED: 6,
    DocumentStatus.DELETED: 7,
}


@dataclass(frozen=True)
class Document:
    document_id: str
    owner: str  # the verified user id
    file_name: str
    content_type: str
    size: int
    created_at: int  # epoch ms
    status: Optional[DocumentStatus] = None  # None: asked for, not uploaded yet
    updated_at: int = 0  # epoch ms of the last status
    code: Optional[str] = None
    message: Optional[str] = None
    analysis: Optional[Dict[str, Any]] = None

    def brief(self) -> Dict[str, Any]:
        """What the pipeline carries and its notices say about the document (execution input)."""
        return {"documentId": self.document_id, "owner": self.owner, "fileName": self.file_name,
                "contentType": self.content_type, "size": self.size, "createdAt": self.created_at}


def _epoch_ms(value: Any, default: int) -> int:
    """``statusAt``: epoch ms from the app, or the ISO time Step Functions gives (``$$.State.EnteredTime``)."""
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return default
    return default


def _document(item: Item) -> Document:
    values = from_item(item)
    status = values.get("status")
    analysis = values.get("analysis")
    if isinstance(analysis, str):  # the pipeline records it as JSON text
        try:
            analysis = json.loads(analysis)
        except ValueError:
            analysis = None
    created_at = int(values.get("createdAt", 0))
    return Document(
        document_id=values["documentId"], owner=values["owner"], file_name=values.get("fileName", ""),
        content_type=values.get("contentType", ""), size=int(values.get("size", 0)), created_at=created_at,
        status=DocumentStatus(status) if status else None, updated_at=_epoch_ms(values.get("statusAt"), created_at),
        code=values.get("code"), message=values.get("message"), analysis=analysis if isinstance(analysis, dict) else None)


class DocumentStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._table = Table(dynamodb, table)

    @staticmethod
    def _key(document_id: str) -> Item:
        return {"documentId": {"S": document_id}}

    def create(self, document: Document, pending_for_s: int) -> None:
        """The record of an upload asked for; it expires unless the upload arrives."""
        self._table.put(to_item(**{
            "documentId": document.document_id, "owner": document.owner, "fileName": document.file_name,
            "contentType": document.content_type, "size": document.size, "createdAt": document.created_at,
            "expiresAt": document.created_at // 1000 + pending_for_s}), condition="attribute_not_exists(documentId)")

    def get(self, document_id: str) -> Optional[Document]:
        item = self._table.get(self._key(document_id))
        return _document(item) if item else None

    def owned(self, owner: str, limit: int = LIST_LIMIT) -> List[Document]:
        """The owner's uploaded documents, newest first (those never uploaded are left out)."""
        items, _ = self._table.query("#owner = :owner", {":owner": {"S": owner}}, limit, None, BY_OWNER, forward=False)
        return [document for document in map(_document, items) if document.status is not None]

    def record_status(self, document_id: str, status: DocumentStatus, at_ms: Optional[int] = None) -> bool:
        """Move the document to ``status`` unless it is already further on; True if it moved (or is there)."""
        rank = RANK[status]
        forward = "attribute_exists(#documentId) AND (attribute_not_exists(#statusRank) OR #statusRank <= :rank)"
        updated = self._table.update(
            self._key(document_id), forward,
            {"status": str(status), "statusRank": rank, "statusAt": at_ms or now_ms()},
            update="SET #status = :status, #statusRank = :statusRank, #statusAt = :statusAt REMOVE #expiresAt",
            values={":rank": {"N": str(rank)}})
        return updated is not None

    def delete(self, document_id: str) -> None:
        self._table.delete(self._key(document_id))
