"""The Bedrock emulator's knowledge base, driven through boto3's real clients: ``bedrock-agent``
(ingestion jobs), ``bedrock-agent-runtime`` (Retrieve, InvokeAgent's ``!kb``) and S3 on moto's server.

One moto server and one emulator for the module; each test starts from an empty index (``fresh``),
and waits for jobs by polling GetIngestionJob, never by sleeping.
"""

import json
import uuid

import boto3
import pytest
from botocore.config import Config

from devserver.bedrock import BedrockEmulator, KnowledgeBaseConfig
from devserver.bedrock.knowledge import ACTIVE, FAIL_MARKER, LOCAL_DATA_SOURCE_ID, LOCAL_KNOWLEDGE_BASE_ID
from devserver.bedrock.scenarios import NO_PASSAGES
from devserver.moto_server import MotoServer
from devserver.stack import free_port
from tests.support.timing import wait_until

BUCKET = "agentstream-test-documents"
KB = {"knowledgeBaseId": LOCAL_KNOWLEDGE_BASE_ID, "dataSourceId": LOCAL_DATA_SOURCE_ID}
DELAY = 0.1  # seconds a sync takes here (the stack's default is 1.5)


def make_client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture(scope="module")
def moto():
    server = MotoServer("127.0.0.1", free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(moto):
    client = make_client("s3", moto.url)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def emu(moto):
    config = KnowledgeBaseConfig(moto.url, bucket=BUCKET, ingestion_delay=DELAY)
    with BedrockEmulator(chunk_delay=0.001, knowledge_base=config) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def control(emu):
    return make_client("bedrock-agent", emu.url)


@pytest.fixture(scope="module")
def runtime(emu):
    return make_client("bedrock-agent-runtime", emu.url)


@pytest.fixture
def fresh(s3, control):
    """An empty data source, synced: the index is empty and the next job's statistics are the test's own."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", ()):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    assert sync(control)["status"] == "COMPLETE"


def put(s3, key: str, text: str, **attributes) -> str:
    """A chunk object (and its metadata sidecar when it has attributes); its ``s3://`` URI."""
    s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    if attributes:
        sidecar = json.dumps({"metadataAttributes": attributes}).encode()
        s3.put_object(Bucket=BUCKET, Key=key + ".metadata.json", Body=sidecar)
    return f"s3://{BUCKET}/{key}"


def delete(s3, key: str) -> None:
    s3.delete_object(Bucket=BUCKET, Key=key)
    s3.delete_object(Bucket=BUCKET, Key=key + ".metadata.json")


def job(control, job_id: str) -> dict:
    return control.get_ingestion_job(**KB, ingestionJobId=job_id)["ingestionJob"]


def finished(control, job_id: str) -> dict:
    """The job once it has ended (COMPLETE, FAILED or STOPPED)."""
    return wait_until(lambda: (found := job(control, job_id))["status"] not in ACTIVE and found,
                      message=f"ingestion job {job_id} did not end")


def sync(control) -> dict:
    """Start a sync and return the job as it ended."""
    return finished(control, control.start_ingestion_job(**KB)["ingestionJob"]["ingestionJobId"])


def retrieve(runtime, query: str, retrieval_filter=None, count: int = 10) -> list[dict]:
    search: dict = {"numberOfResults": count}
    if retrieval_filter is not None:
        search["filter"] = retrieval_filter
    return runtime.retrieve(knowledgeBaseId=LOCAL_KNOWLEDGE_BASE_ID, retrievalQuery={"text": query},
                            retrievalConfiguration={"vectorSearchConfiguration": search})["retrievalResults"]


def uris(results: list[dict]) -> list[str]:
    return [result["location"]["s3Location"]["uri"] for result in results]


def owner_filter(owner: str) -> dict:
    return {"equals": {"key": "owner", "value": owner}}


def ask_kb(runtime, words: str, retrieval_filter=None, knowledge_base_id: str = LOCAL_KNOWLEDGE_BASE_ID,
           stream: bool = True) -> tuple[str, list[dict]]:
    """``!kb WORDS`` through InvokeAgent: (the answer, its chunk events)."""
    params: dict = {"agentId": "AGENT12345", "agentAliasId": "TSTALIASID", "sessionId": f"sess-{uuid.uuid4()}",
                    "inputText": f"!kb {words}"}
    if stream:
        params["streamingConfigurations"] = {"streamFinalResponse": True}
    if retrieval_filter is not None:
        search = {"vectorSearchConfiguration": {"filter": retrieval_filter}}
        params["sessionState"] = {"knowledgeBaseConfigurations": [
            {"knowledgeBaseId": knowledge_base_id, "retrievalConfiguration": search}]}
    chunks = [event["chunk"] for event in runtime.invoke_agent(**params)["completion"] if "chunk" in event]
    return "".join(chunk["bytes"].decode() for chunk in chunks), chunks


def test_a_sync_goes_through_its_statuses_and_counts_what_changed(emu, s3, control, runtime, fresh):
    put(s3, "kb/alice/d1/chunk-00001.txt", "Quarterly revenue grew.", owner="alice", documentId="d1", fileName="q.pdf")
    put(s3, "kb/alice/d1/chunk-00002.txt", "Costs fell.", owner="alice", documentId="d1", fileName="q.pdf")

    started = control.start_ingestion_job(**KB, description="first upload")
    assert started["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert started["ingestionJob"]["status"] == "STARTING"
    first = finished(control, started["ingestionJob"]["ingestionJobId"])

    assert first["status"] == "COMPLETE" and "failureReasons" not in first
    assert first["description"] == "first upload" and first["updatedAt"] >= first["startedAt"]
    assert first["statistics"] == {
        "numberOfDocumentsScanned": 2, "numberOfMetadataDocumentsScanned": 2, "numberOfNewDocumentsIndexed": 2,
        "numberOfModifiedDocumentsIndexed": 0, "numberOfMetadataDocumentsModified": 0, "numberOfDocumentsDeleted": 0,
        "numberOfDocumentsFailed": 0, "numberOfDocumentsSkipped": 0,
    }
    assert emu.knowledge.job(first["ingestionJobId"]).statuses == ["STARTING", "IN_PROGRESS", "COMPLETE"]

    put(s3, "kb/alice/d1/chunk-00001.txt", "Quarterly revenue grew a lot.", owner="alice", documentId="d1", fileName="q.pdf")
    put(s3, "kb/alice/d1/chunk-00002.txt", "Costs fell.", owner="alice", documentId="d1", fileName="renamed.pdf")
    put(s3, "kb/alice/d2/chunk-00001.txt", "A note without metadata.")
    second = sync(control)["statistics"]
    assert (second["numberOfDocumentsScanned"], second["numberOfMetadataDocumentsScanned"]) == (3, 2)
    assert (second["numberOfNewDocumentsIndexed"], second["numberOfModifiedDocumentsIndexed"],
            second["numberOfMetadataDocumentsModified"]) == (1, 1, 1)
    assert [r["content"]["text"] for r in retrieve(runtime, "revenue")] == ["Quarterly revenue grew a lot."]
    assert retrieve(runtime, "costs")[0]["metadata"]["fileName"] == "renamed.pdf"

    unchanged = sync(control)["statistics"]
    assert unchanged["numberOfDocumentsScanned"] == 3
    assert sum(unchanged.values()) == 3 + 2  # scanned, metadata scanned: nothing new, changed or deleted

    listed = control.list_ingestion_jobs(**KB, sortBy={"attribute": "STARTED_AT", "order": "DESCENDING"})
    summaries = listed["ingestionJobSummaries"]
    assert summaries[2]["ingestionJobId"] == first["ingestionJobId"]
    assert summaries[2]["statistics"] == first["statistics"]
    assert summaries[0]["startedAt"] >= summaries[1]["startedAt"] >= summaries[2]["startedAt"]
    page = control.list_ingestion_jobs(**KB, maxResults=1)
    assert len(page["ingestionJobSummaries"]) == 1 and page["nextToken"]


def test_a_second_job_while_one_runs_is_a_conflict_until_it_is_stopped(emu, s3, control, fresh):
    emu.knowledge.ingestion_delay = 60  # this job would run for a minute: the test stops it
    try:
        running = control.start_ingestion_job(**KB, clientToken="a" * 33)["ingestionJob"]
    finally:
        emu.knowledge.ingestion_delay = DELAY
    with pytest.raises(control.exceptions.ConflictException) as conflict:
        control.start_ingestion_job(**KB)
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert running["ingestionJobId"] in conflict.value.response["Error"]["Message"]
    # The same client token is the same request: the running job again, no conflict.
    again = control.start_ingestion_job(**KB, clientToken="a" * 33)["ingestionJob"]
    assert again["ingestionJobId"] == running["ingestionJobId"]

    stopping = control.stop_ingestion_job(**KB, ingestionJobId=running["ingestionJobId"])["ingestionJob"]
    assert stopping["status"] == "STOPPING"
    assert finished(control, running["ingestionJobId"])["status"] == "STOPPED"
    with pytest.raises(control.exceptions.ConflictException):
        control.stop_ingestion_job(**KB, ingestionJobId=running["ingestionJobId"])

    put(s3, "kb/alice/d1/chunk-00001.txt", "After the stop.", owner="alice")
    after = sync(control)
    assert after["status"] == "COMPLETE" and after["statistics"]["numberOfNewDocumentsIndexed"] == 1
    stopped = control.list_ingestion_jobs(**KB, filters=[{"attribute": "STATUS", "operator": "EQ", "values": ["STOPPED"]}])
    assert [s["ingestionJobId"] for s in stopped["ingestionJobSummaries"]] == [running["ingestionJobId"]]


def test_a_document_with_the_failure_marker_fails_the_job_and_stays_out_of_the_index(s3, control, runtime, fresh):
    good = put(s3, "kb/bob/d1/chunk-00001.txt", "Invoice for the garden shed.", owner="bob")
    bad = put(s3, "kb/bob/d2/chunk-00001.txt", f"Invoice {FAIL_MARKER} for the roof.", owner="bob")

    failed = sync(control)

    assert failed["status"] == "FAILED"
    assert failed["statistics"]["numberOfDocumentsFailed"] == 1
    assert failed["statistics"]["numberOfNewDocumentsIndexed"] == 1
    (reason,) = failed["failureReasons"]
    assert bad in reason and FAIL_MARKER in reason
    assert uris(retrieve(runtime, "invoice")) == [good]

    delete(s3, "kb/bob/d2/chunk-00001.txt")
    assert sync(control)["status"] == "COMPLETE"


def test_a_missing_bucket_fails_the_job_and_changes_nothing(s3, control, runtime, fresh):
    uri = put(s3, "kb/carol/d1/chunk-00001.txt", "Kept across the outage.", owner="carol")
    assert sync(control)["status"] == "COMPLETE"
    delete(s3, "kb/carol/d1/chunk-00001.txt")
    s3.delete_bucket(Bucket=BUCKET)
    try:
        failed = sync(control)
    finally:
        s3.create_bucket(Bucket=BUCKET)
    assert failed["status"] == "FAILED" and BUCKET in failed["failureReasons"][0]
    assert uris(retrieve(runtime, "outage")) == [uri]


def test_unknown_ids_are_resource_not_found(control, runtime):
    with pytest.raises(control.exceptions.ResourceNotFoundException) as missing:
        control.start_ingestion_job(knowledgeBaseId="NOSUCHKB00", dataSourceId=LOCAL_DATA_SOURCE_ID)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.start_ingestion_job(knowledgeBaseId=LOCAL_KNOWLEDGE_BASE_ID, dataSourceId="NOSUCHDS00")
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.get_ingestion_job(**KB, ingestionJobId="NOSUCHJOB0")
    with pytest.raises(control.exceptions.ValidationException):
        control.get_ingestion_job(**KB, ingestionJobId="not-an-id")
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.retrieve(knowledgeBaseId="NOSUCHKB00", retrievalQuery={"text": "anything"})


def test_retrieve_scores_by_shared_words_and_honours_each_filter_operator(s3, control, runtime, fresh):
    def doc(name: str, text: str, **attributes) -> str:
        return put(s3, f"kb/{attributes.get('owner', 'nobody')}/{name}/chunk-00001.txt", text, **attributes)

    a = doc("a", "apple banana cherry", owner="alice", fileName="fruit.txt", pages=3, tags=["food", "sweet"], public=True)
    b = doc("b", "apple banana", owner="bob", fileName="fruit-notes.md", pages=10, tags=["food"], public=False)
    c = doc("c", "apple", owner="carol", fileName="orchard.txt", pages=7, tags=["trees"])
    d = doc("d", "apple in a file without metadata")
    assert sync(control)["status"] == "COMPLETE"

    ranked = retrieve(runtime, "Apple banana cherry")
    assert uris(ranked) == [a, b, c, d]
    assert [round(r["score"], 3) for r in ranked] == [1.0, 0.667, 0.333, 0.333]
    assert ranked[0]["content"] == {"type": "TEXT", "text": "apple banana cherry"}
    assert ranked[0]["metadata"]["owner"] == "alice" and ranked[0]["metadata"]["x-amz-bedrock-kb-source-uri"] == a
    assert uris(retrieve(runtime, "apple", count=2)) == [a, b]  # numberOfResults; equal scores in URI order
    assert retrieve(runtime, "durian") == []  # no shared word, no match

    cases = [
        ({"equals": {"key": "owner", "value": "bob"}}, [b]),
        ({"equals": {"key": "owner", "value": "Bob"}}, []),  # case-sensitive
        ({"equals": {"key": "public", "value": True}}, [a]),
        ({"equals": {"key": "pages", "value": 3}}, [a]),
        ({"notEquals": {"key": "owner", "value": "bob"}}, [a, c, d]),  # without the key: not equal
        ({"in": {"key": "owner", "value": ["alice", "carol"]}}, [a, c]),
        ({"notIn": {"key": "owner", "value": ["alice", "carol"]}}, [b, d]),
        ({"startsWith": {"key": "fileName", "value": "fruit"}}, [a, b]),
        ({"stringContains": {"key": "fileName", "value": ".txt"}}, [a, c]),
        ({"stringContains": {"key": "tags", "value": "wee"}}, [a]),  # a member of a list containing it
        ({"listContains": {"key": "tags", "value": "food"}}, [a, b]),
        ({"greaterThan": {"key": "pages", "value": 3}}, [b, c]),
        ({"greaterThanOrEquals": {"key": "pages", "value": 7}}, [b, c]),
        ({"lessThan": {"key": "pages", "value": 7}}, [a]),
        ({"lessThanOrEquals": {"key": "pages", "value": 7}}, [a, c]),
        ({"andAll": [{"listContains": {"key": "tags", "value": "food"}},
                     {"notEquals": {"key": "owner", "value": "alice"}}]}, [b]),
        ({"orAll": [{"equals": {"key": "owner", "value": "carol"}},
                    {"andAll": [{"equals": {"key": "owner", "value": "alice"}},
                                {"lessThan": {"key": "pages", "value": 5}}]}]}, [a, c]),
        ({"equals": {"key": "x-amz-bedrock-kb-source-uri", "value": d}}, [d]),  # Bedrock's own keys too
    ]
    for retrieval_filter, expected in cases:
        assert sorted(uris(retrieve(runtime, "apple", retrieval_filter))) == sorted(expected), retrieval_filter

    # What botocore cannot check (the value is a JSON document), the service refuses.
    for bad in ({"in": {"key": "owner", "value": "alice"}}, {"greaterThan": {"key": "pages", "value": "3"}},
                {"startsWith": {"key": "fileName", "value": 3}}):
        with pytest.raises(runtime.exceptions.ValidationException):
            retrieve(runtime, "apple", bad)


def test_a_deleted_document_leaves_the_index_on_the_next_sync(s3, control, runtime, fresh):
    kept = put(s3, "kb/alice/d1/chunk-00001.txt", "The lighthouse keeper's log.", owner="alice")
    put(s3, "kb/alice/d2/chunk-00001.txt", "The lighthouse was painted red.", owner="alice")
    assert sync(control)["status"] == "COMPLETE"
    assert len(retrieve(runtime, "lighthouse")) == 2

    delete(s3, "kb/alice/d2/chunk-00001.txt")
    assert len(retrieve(runtime, "lighthouse")) == 2  # until the next sync
    resync = sync(control)

    assert resync["statistics"]["numberOfDocumentsDeleted"] == 1
    assert uris(retrieve(runtime, "lighthouse")) == [kept]
    assert ask_kb(runtime, "painted", owner_filter("alice"))[0] == NO_PASSAGES


def test_kb_answers_only_from_the_chunks_the_owner_filter_admits(s3, control, runtime, fresh):
    alice = put(s3, "kb/alice/d1/chunk-00001.txt", "Project Falcon budget: 40 thousand.\n", owner="alice", documentId="d1")
    put(s3, "kb/alice/d1/chunk-00002.txt", "Project Falcon ships in May.", owner="alice", documentId="d1")
    put(s3, "kb/bob/d9/chunk-00001.txt", "Project Heron budget: 12 thousand.", owner="bob", documentId="d9")
    assert sync(control)["status"] == "COMPLETE"

    answer, chunks = ask_kb(runtime, "falcon BUDGET", owner_filter("alice"))
    assert answer == "Project Falcon budget: 40 thousand."
    assert len(chunks) > 1  # streamed, about a word per chunk
    (citation,) = chunks[-1]["attribution"]["citations"]
    assert citation["generatedResponsePart"]["textResponsePart"]["text"] == answer
    assert citation["retrievedReferences"][0]["location"]["s3Location"]["uri"] == alice

    # User B sees nothing of A's, whatever B asks.
    assert ask_kb(runtime, "falcon", owner_filter("bob"))[0] == NO_PASSAGES
    assert ask_kb(runtime, "budget", owner_filter("bob"))[0] == "Project Heron budget: 12 thousand."
    assert ask_kb(runtime, "budget", owner_filter("carol"))[0] == NO_PASSAGES
    assert ask_kb(runtime, "falcon", owner_filter("alice"))[0] == (
        "Project Falcon budget: 40 thousand.\n\nProject Falcon ships in May.")
    assert ask_kb(runtime, "falcon", owner_filter("alice"), stream=False)[1][0]["bytes"].decode().startswith("Project")

    # No configuration for this knowledge base means no filter: everyone's chunks. Why the app must send one.
    everyone = "Project Falcon budget: 40 thousand.\n\nProject Heron budget: 12 thousand."
    assert ask_kb(runtime, "budget")[0] == everyone
    assert ask_kb(runtime, "budget", owner_filter("bob"), knowledge_base_id="OTHERKB001")[0] == everyone

    with pytest.raises(runtime.exceptions.ValidationException):
        ask_kb(runtime, "budget", {"in": {"key": "owner", "value": "bob"}})
