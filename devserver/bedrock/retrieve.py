"""Retrieve (``bedrock-agent-runtime``): ``POST /knowledgebases/{knowledgeBaseId}/retrieve``.

Honours ``retrievalConfiguration.vectorSearchConfiguration``'s ``numberOfResults`` (default 5) and
``filter`` exactly (``filters``); the search itself is ``knowledge``'s word-match stand-in. Each
result is ``{content: {type, text}, location: {type: S3, s3Location: {uri}}, metadata, score}``,
best first. An unknown knowledge base is a 404 ``ResourceNotFoundException``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from devserver.bedrock import filters
from devserver.bedrock.errors import validation
from devserver.bedrock.knowledge import DEFAULT_RESULTS, KnowledgeBase, check_count, not_found

__all__ = ["OPERATION", "handle", "match"]

OPERATION = "Retrieve"
_PATH = re.compile(r"^/knowledgebases/([^/]+)/retrieve$")
_ID = re.compile(r"^[0-9a-zA-Z]{1,10}$")
_MAX_QUERY_CHARS = 20_000


def match(method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
    """(operation, URI labels decoded) for a Retrieve request (path still percent-encoded), else None."""
    found = _PATH.match(path) if method == "POST" else None
    return (OPERATION, tuple(map(unquote, found.groups()))) if found else None


def handle(knowledge: KnowledgeBase | None, operation: str, labels: tuple[str, ...],
           body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(200, the results); raises ``ServiceError`` for the error answers."""
    (knowledge_base_id,) = labels
    if not _ID.match(knowledge_base_id):
        raise validation(f"1 validation error detected: Value '{knowledge_base_id}' at 'knowledgeBaseId' failed "
                         "to satisfy constraint: Member must satisfy regular expression pattern: ^[0-9a-zA-Z]+$")
    query = (body.get("retrievalQuery") or {}).get("text")
    if not isinstance(query, str) or len(query) > _MAX_QUERY_CHARS:
        raise validation(f"retrievalQuery.text is required, at most {_MAX_QUERY_CHARS} characters")
    search = (body.get("retrievalConfiguration") or {}).get("vectorSearchConfiguration") or {}
    retrieval_filter, count = search.get("filter"), search.get("numberOfResults", DEFAULT_RESULTS)
    check_count(count, "retrievalConfiguration.vectorSearchConfiguration.numberOfResults")
    if retrieval_filter is not None:
        filters.check(retrieval_filter, "retrievalConfiguration.vectorSearchConfiguration.filter")
    if knowledge is None:
        raise not_found(f"Knowledge base {knowledge_base_id} does not exist.")
    knowledge.require(knowledge_base_id)
    results = [{**chunk.reference(), "score": score} for score, chunk in knowledge.search(query, count, retrieval_filter)]
    return 200, {"retrievalResults": results}
