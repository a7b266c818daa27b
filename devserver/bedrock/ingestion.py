"""bedrock-agent's ingestion jobs (the knowledge base's control plane), as boto3's ``bedrock-agent`` client calls them.

=====================  ======  ==============================================================================
operation              method  path
=====================  ======  ==============================================================================
StartIngestionJob      PUT     ``/knowledgebases/{knowledgeBaseId}/datasources/{dataSourceId}/ingestionjobs/``
ListIngestionJobs      POST    ``/knowledgebases/{knowledgeBaseId}/datasources/{dataSourceId}/ingestionjobs/``
GetIngestionJob        GET     ``/knowledgebases/{kbId}/datasources/{dsId}/ingestionjobs/{ingestionJobId}``
StopIngestionJob       POST    ``/knowledgebases/{kbId}/datasources/{dsId}/ingestionjobs/{ingestionJobId}/stop``
=====================  ======  ==============================================================================

Start and Stop answer 202, the others 200; errors are restJson (``x-amzn-ErrorType``):
``ResourceNotFoundException`` 404, ``ConflictException`` 409, ``ValidationException`` 400. What a job
does is ``knowledge``'s.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from devserver.bedrock.errors import validation
from devserver.bedrock.knowledge import IngestionJob, KnowledgeBase, not_found

__all__ = ["handle", "match"]

_JOBS = r"^/knowledgebases/([^/]+)/datasources/([^/]+)/ingestionjobs"
_ROUTES = (
    ("PUT", re.compile(_JOBS + "/?$"), "StartIngestionJob"),
    ("POST", re.compile(_JOBS + "/?$"), "ListIngestionJobs"),
    ("GET", re.compile(_JOBS + "/([^/]+)$"), "GetIngestionJob"),
    ("POST", re.compile(_JOBS + "/([^/]+)/stop$"), "StopIngestionJob"),
)
_ID = re.compile(r"^[0-9a-zA-Z]{10}$")


def match(method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
    """(operation, URI labels decoded) for an ingestion-job request (path still percent-encoded), else None."""
    for route_method, pattern, operation in _ROUTES:
        if method == route_method and (found := pattern.match(path)):
            return operation, tuple(map(unquote, found.groups()))
    return None


def handle(knowledge: KnowledgeBase | None, operation: str, labels: tuple[str, ...],
           body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of one operation; raises ``ServiceError`` for the error answers."""
    for name, value in zip(("knowledgeBaseId", "dataSourceId", "ingestionJobId"), labels, strict=False):
        if not _ID.match(value):
            raise validation(f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
                             "constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z]{10}")
    if knowledge is None:
        raise not_found(f"Knowledge base {labels[0]} does not exist.")
    knowledge.require(labels[0], labels[1])
    if operation == "StartIngestionJob":
        job = knowledge.start_job(body.get("clientToken"), body.get("description"))
        return 202, {"ingestionJob": _job(job)}
    if operation == "GetIngestionJob":
        return 200, {"ingestionJob": _job(knowledge.job(labels[2]))}
    if operation == "StopIngestionJob":
        return 202, {"ingestionJob": _job(knowledge.stop_job(labels[2]))}
    return 200, _list(knowledge.jobs(), body)


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _job(job: IngestionJob, summary: bool = False) -> dict[str, Any]:
    """``IngestionJob`` (``IngestionJobSummary``: without ``failureReasons``)."""
    shape: dict[str, Any] = {
        "knowledgeBaseId": job.knowledge_base_id,
        "dataSourceId": job.data_source_id,
        "ingestionJobId": job.job_id,
        "status": job.status,
        "statistics": dict(job.statistics),
        "startedAt": _timestamp(job.started_at),
        "updatedAt": _timestamp(job.updated_at),
    }
    if job.description:
        shape["description"] = job.description
    if job.failure_reasons and not summary:
        shape["failureReasons"] = list(job.failure_reasons)
    return shape


def _list(jobs: list[IngestionJob], body: dict[str, Any]) -> dict[str, Any]:
    """ListIngestionJobs: ``filters`` (STATUS EQ), ``sortBy`` (STATUS or STARTED_AT), ``maxResults``, ``nextToken``."""
    for item in body.get("filters") or []:
        if item.get("attribute") != "STATUS" or item.get("operator") != "EQ":
            raise validation("filters: only attribute STATUS with operator EQ exists")
        jobs = [job for job in jobs if job.status in (item.get("values") or [])]
    sort = body.get("sortBy") or {"attribute": "STARTED_AT", "order": "ASCENDING"}
    if sort.get("attribute") not in ("STATUS", "STARTED_AT") or sort.get("order") not in ("ASCENDING", "DESCENDING"):
        raise validation("sortBy: attribute STATUS or STARTED_AT, order ASCENDING or DESCENDING")
    if sort["attribute"] == "STATUS":
        jobs.sort(key=lambda job: job.status)  # stable: in start order within a status
    if sort["order"] == "DESCENDING":
        jobs.reverse()
    size = body.get("maxResults", 1000)
    token = body.get("nextToken") or "0"
    if not isinstance(size, int) or not 1 <= size <= 1000 or not token.isdigit():
        raise validation("maxResults must be 1 to 1000 and nextToken one this operation returned")
    start = int(token)
    page: dict[str, Any] = {"ingestionJobSummaries": [_job(job, summary=True) for job in jobs[start:start + size]]}
    if start + size < len(jobs):
        page["nextToken"] = str(start + size)
    return page
