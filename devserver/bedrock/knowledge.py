"""The emulated knowledge base: one S3 data source, the index its syncs build, and its ingestion jobs.

What the documents pipeline and the app rely on, as Bedrock does it:

* An ingestion job syncs the data source in the background: ``STARTING``, then ``IN_PROGRESS``
  (the bucket is read now), then ``COMPLETE`` or ``FAILED``, taking ``ingestion_delay`` seconds
  in all (half in each phase). One job per data source at a time: starting another while one is
  running is a ``ConflictException``. ``StopIngestionJob`` ends a running job as ``STOPPED``
  without touching the index.
* A sync makes the index match the bucket as it is now: new documents are added, changed ones
  (text or sidecar attributes) replaced, and documents no longer in the bucket removed, with the
  job's statistics counting each.
* **Failure injection:** a document whose text contains ``!ingest-fail`` (``FAIL_MARKER``) fails
  to ingest, as does one with an unreadable sidecar: it is counted in
  ``numberOfDocumentsFailed`` and named in ``failureReasons``, it stays as it was in the index
  (absent if new), the rest of the sync still applies, and the job ends ``FAILED``. A bucket that
  cannot be read fails the whole job and changes nothing.
* Each S3 object is one chunk (the pipeline chunks before uploading): retrieval returns its whole
  text, its ``s3://`` location and its metadata, the sidecar's attributes plus Bedrock's own
  ``x-amz-bedrock-kb-source-uri``, ``-chunk-id`` and ``-data-source-id`` (filters see them too).
* Search is a deterministic stand-in for vector search: a chunk's score is the share of the
  query's distinct words (case-insensitive) that it contains; a chunk sharing none is no match.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from devserver.bedrock import filters
from devserver.bedrock.datasource import DataSourceError, SourceDocument, read_documents, s3_client
from devserver.bedrock.errors import ServiceError, validation

__all__ = [
    "ACTIVE", "DEFAULT_INGESTION_DELAY", "DEFAULT_RESULTS", "FAIL_MARKER", "LOCAL_DATA_SOURCE_ID",
    "LOCAL_DOCUMENTS_BUCKET", "LOCAL_KNOWLEDGE_BASE_ID", "STATISTICS",
    "Chunk", "IngestionJob", "KnowledgeBase", "KnowledgeBaseConfig", "check_count", "not_found", "words",
]

LOCAL_KNOWLEDGE_BASE_ID = "LOCALKB001"  # ids are 10 characters of [0-9a-zA-Z], as Bedrock's
LOCAL_DATA_SOURCE_ID = "LOCALDS001"
LOCAL_DOCUMENTS_BUCKET = "agentstream-local-documents"
DEFAULT_INGESTION_DELAY = 1.5
DEFAULT_RESULTS = 5  # Bedrock's default numberOfResults
FAIL_MARKER = "!ingest-fail"
#: A job's statistics, as ``IngestionJobStatistics`` names them.
STATISTICS = (
    "numberOfDocumentsScanned", "numberOfMetadataDocumentsScanned", "numberOfNewDocumentsIndexed",
    "numberOfModifiedDocumentsIndexed", "numberOfMetadataDocumentsModified", "numberOfDocumentsDeleted",
    "numberOfDocumentsFailed", "numberOfDocumentsSkipped",
)
#: The statuses during which a job holds its data source (another start is a conflict).
ACTIVE = ("STARTING", "IN_PROGRESS", "STOPPING")
_WORD = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    """The distinct words of a text, lowercased: what search and ``!kb`` compare."""
    return frozenset(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class KnowledgeBaseConfig:
    """One knowledge base with one S3 data source, as the local stack sets it up."""

    s3_endpoint_url: str  # the moto server
    bucket: str = LOCAL_DOCUMENTS_BUCKET
    inclusion_prefix: str = "kb/"
    knowledge_base_id: str = LOCAL_KNOWLEDGE_BASE_ID
    data_source_id: str = LOCAL_DATA_SOURCE_ID
    region: str = "us-east-1"
    ingestion_delay: float = DEFAULT_INGESTION_DELAY  # seconds a sync takes, start to end


@dataclass(frozen=True)
class Chunk:
    """An indexed chunk: one S3 object's text and the metadata retrieval returns and filters read."""

    key: str
    text: str
    attributes: dict[str, Any]
    metadata: dict[str, Any]
    words: frozenset[str]

    @classmethod
    def of(cls, document: SourceDocument, config: KnowledgeBaseConfig) -> Chunk:
        uri = f"s3://{config.bucket}/{document.key}"
        metadata = {
            **document.attributes,
            "x-amz-bedrock-kb-source-uri": uri,
            "x-amz-bedrock-kb-chunk-id": str(uuid.uuid5(uuid.NAMESPACE_URL, uri)),
            "x-amz-bedrock-kb-data-source-id": config.data_source_id,
        }
        return cls(document.key, document.text, dict(document.attributes), metadata, words(document.text))

    @property
    def uri(self) -> str:
        return str(self.metadata["x-amz-bedrock-kb-source-uri"])

    def reference(self) -> dict[str, Any]:
        """As Retrieve's results and InvokeAgent's citations carry it (``content``, ``location``, ``metadata``)."""
        return {
            "content": {"type": "TEXT", "text": self.text},
            "location": {"type": "S3", "s3Location": {"uri": self.uri}},
            "metadata": dict(self.metadata),
        }


@dataclass
class IngestionJob:
    """One sync of the data source; the knowledge base hands out copies, never this object."""

    knowledge_base_id: str
    data_source_id: str
    job_id: str
    description: str | None
    delay: float
    status: str = "STARTING"
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    updated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    statistics: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATISTICS, 0))
    failure_reasons: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=lambda: ["STARTING"])  # every status it went through
    cancel: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    stop_requested: bool = False  # StopIngestionJob (else a cancel is the emulator stopping)

    def copy(self) -> IngestionJob:
        return replace(self, statistics=dict(self.statistics), failure_reasons=list(self.failure_reasons),
                       statuses=list(self.statuses))


class KnowledgeBase:
    """The knowledge base's state, shared by the server's threads and the jobs' threads (one lock)."""

    def __init__(self, config: KnowledgeBaseConfig) -> None:
        self.config = config
        self.ingestion_delay = config.ingestion_delay  # read when a job starts; tests may change it
        self._lock = threading.Lock()
        self._chunks: dict[str, Chunk] = {}  # by S3 key
        self._jobs: dict[str, IngestionJob] = {}  # in start order
        self._client_tokens: dict[str, str] = {}
        self._s3: Any = None

    # resources

    def require(self, knowledge_base_id: str, data_source_id: str | None = None) -> None:
        """``ResourceNotFoundException`` unless these are this knowledge base's (and data source's) ids."""
        if knowledge_base_id != self.config.knowledge_base_id:
            raise not_found(f"Knowledge base {knowledge_base_id} does not exist.")
        if data_source_id is not None and data_source_id != self.config.data_source_id:
            raise not_found(f"Data source {data_source_id} does not exist in knowledge base {knowledge_base_id}.")

    # ingestion jobs

    def start_job(self, client_token: str | None = None, description: str | None = None) -> IngestionJob:
        """Start a sync in the background; the same ``clientToken`` again answers the same job."""
        with self._lock:
            if client_token and client_token in self._client_tokens:
                return self._jobs[self._client_tokens[client_token]].copy()
            running = [job for job in self._jobs.values() if job.status in ACTIVE]
            if running:
                raise ServiceError(409, "ConflictException", (
                    f"Data source {self.config.data_source_id} already has ingestion job {running[0].job_id} "
                    f"in status {running[0].status}; one job per data source runs at a time."))
            job = IngestionJob(self.config.knowledge_base_id, self.config.data_source_id,
                               uuid.uuid4().hex[:10].upper(), description, self.ingestion_delay)
            self._jobs[job.job_id] = job
            if client_token:
                self._client_tokens[client_token] = job.job_id
        threading.Thread(target=self._run, args=(job,), name=f"kb-ingestion-{job.job_id}", daemon=True).start()
        return job.copy()

    def job(self, job_id: str) -> IngestionJob:
        with self._lock:
            return self._job(job_id).copy()

    def jobs(self) -> list[IngestionJob]:
        """Every job, oldest first."""
        with self._lock:
            return [job.copy() for job in self._jobs.values()]

    def stop_job(self, job_id: str) -> IngestionJob:
        """Ask a running job to stop: ``STOPPING`` now, ``STOPPED`` once its thread notices."""
        with self._lock:
            job = self._job(job_id)
            if job.status not in ("STARTING", "IN_PROGRESS"):
                raise ServiceError(409, "ConflictException", f"Ingestion job {job_id} is {job.status}: nothing to stop.")
            job.stop_requested = True
            self._set(job, "STOPPING")
            job.cancel.set()
            return job.copy()

    def close(self) -> None:
        """The emulator stops: running jobs end ``FAILED`` so that no job holds the data source forever."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()

    # retrieval

    def chunks(self) -> list[Chunk]:
        """The index, in key order."""
        with self._lock:
            return [self._chunks[key] for key in sorted(self._chunks)]

    def search(self, query: str, count: int, retrieval_filter: dict[str, Any] | None) -> list[tuple[float, Chunk]]:
        """(score, chunk) for the ``count`` best chunks the filter admits, best first, then by URI."""
        wanted = words(query)
        hits = []
        for chunk in self.chunks():
            shared = len(wanted & chunk.words)
            if shared and filters.admits(retrieval_filter, chunk.metadata):
                hits.append((shared / len(wanted), chunk))
        hits.sort(key=lambda hit: (-hit[0], hit[1].uri))
        return hits[:count]

    def passages(self, text: str, count: int, retrieval_filter: dict[str, Any] | None) -> list[Chunk]:
        """The first ``count`` chunks (by URI) the filter admits that contain every word of ``text``."""
        wanted = words(text)
        return [chunk for chunk in self.chunks()
                if wanted <= chunk.words and filters.admits(retrieval_filter, chunk.metadata)][:count]

    # the jobs' threads

    def _job(self, job_id: str) -> IngestionJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise not_found(f"Ingestion job {job_id} does not exist.")
        return job

    def _set(self, job: IngestionJob, status: str) -> None:
        job.status, job.updated_at = status, datetime.now(timezone.utc)
        job.statuses.append(status)

    def _client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                self._s3 = s3_client(self.config.s3_endpoint_url, self.config.region)
            return self._s3

    def _run(self, job: IngestionJob) -> None:
        try:
            self._sync(job)
        except Exception as err:  # noqa: BLE001 - an emulator bug must not leave the data source busy forever
            with self._lock:
                job.failure_reasons.append(f"emulator error: {err!r}")
                self._set(job, "FAILED")

    def _sync(self, job: IngestionJob) -> None:
        if job.cancel.wait(job.delay / 2):
            return self._cancelled(job)
        with self._lock:
            if job.cancel.is_set():
                return self._cancelled_locked(job)
            self._set(job, "IN_PROGRESS")
        try:
            documents = read_documents(self._client(), self.config.bucket, self.config.inclusion_prefix)
        except DataSourceError as err:
            with self._lock:
                job.failure_reasons.append(str(err))
                self._set(job, "FAILED")
            return None
        if job.cancel.wait(job.delay / 2):
            return self._cancelled(job)
        with self._lock:
            if job.cancel.is_set():
                return self._cancelled_locked(job)
            job.statistics = self._index(documents, job.failure_reasons)
            self._set(job, "FAILED" if job.statistics["numberOfDocumentsFailed"] else "COMPLETE")
        return None

    def _cancelled(self, job: IngestionJob) -> None:
        with self._lock:
            self._cancelled_locked(job)

    def _cancelled_locked(self, job: IngestionJob) -> None:
        if job.stop_requested:
            self._set(job, "STOPPED")
        else:
            job.failure_reasons.append("The emulator stopped during the sync.")
            self._set(job, "FAILED")

    def _index(self, documents: list[SourceDocument], failures: list[str]) -> dict[str, int]:
        """Make the index match the documents (under the lock); the statistics of doing so."""
        stats = dict.fromkeys(STATISTICS, 0)
        stats["numberOfDocumentsScanned"] = len(documents)
        stats["numberOfMetadataDocumentsScanned"] = sum(document.has_sidecar for document in documents)
        for document in documents:
            uri = f"s3://{self.config.bucket}/{document.key}"
            reason = document.error or (FAIL_MARKER in document.text and f"the document contains {FAIL_MARKER} (emulated)")
            if reason:
                stats["numberOfDocumentsFailed"] += 1
                failures.append(f"Failed to ingest {uri}: {reason}")
                continue
            old, new = self._chunks.get(document.key), Chunk.of(document, self.config)
            if old is None:
                stats["numberOfNewDocumentsIndexed"] += 1
            elif old.text != new.text:
                stats["numberOfModifiedDocumentsIndexed"] += 1
            elif old.attributes != new.attributes:
                stats["numberOfMetadataDocumentsModified"] += 1
            self._chunks[document.key] = new
        present = {document.key for document in documents}
        for key in [key for key in self._chunks if key not in present]:
            del self._chunks[key]
            stats["numberOfDocumentsDeleted"] += 1
        return stats


def not_found(message: str) -> ServiceError:
    """A 404 ``ResourceNotFoundException``."""
    return ServiceError(404, "ResourceNotFoundException", message)


def check_count(count: Any, where: str) -> None:
    """``numberOfResults`` is 1 to 100."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise validation(f"{where} must be an integer from 1 to 100")
