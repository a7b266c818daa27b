"""S3's event notifications, as the uploads queue delivers them: which objects arrived (pure).

S3 may deliver a notification more than once, and sends ``s3:TestEvent`` when the notification
is set up. An object version names exactly one execution of the pipeline (``execution_name``),
so a notification delivered twice cannot start a second.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import List, Optional
from urllib.parse import unquote_plus

MAX_EXECUTION_NAME = 80  # Step Functions: 1-80 characters
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str  # decoded (S3 URL-encodes keys in notifications, spaces as '+')
    size: int
    version_id: Optional[str]
    sequencer: Optional[str]
    etag: Optional[str]


def created_objects(body: str) -> List[ObjectCreated]:
    """The ``ObjectCreated:*`` records of one notification; [] for a test event or anything else."""
    try:
        document = json.loads(body)
    except ValueError:
        raise ValueError("the message is not an S3 notification (not JSON)") from None
    if not isinstance(document, dict) or document.get("Event") == "s3:TestEvent":
        return []
    created = []
    for record in document.get("Records") or []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3") or {}
        item = s3.get("object") or {}
        created.append(ObjectCreated(
            bucket=str((s3.get("bucket") or {}).get("name", "")), key=unquote_plus(str(item.get("key", ""))),
            size=int(item.get("size", 0) or 0), version_id=item.get("versionId") or None,
            sequencer=item.get("sequencer") or None, etag=item.get("eTag") or None))
    return created


def execution_name(document_id: str, created: ObjectCreated) -> str:
    """One name per object version: the document and its version id (or, unversioned, the
    notification's sequencer, which S3 gives each write of a key). Names allow ``[A-Za-z0-9_-]``."""
    version = created.version_id or created.sequencer or created.etag or "0"
    name = f"{document_id}-{_NOT_NAME.sub('_', version)}"
    return name[:MAX_EXECUTION_NAME]
