"""The protocol's JSON Schema, the server's validation and docs/protocol.md say the same thing.

- every event builder's output validates, with the reference validator (jsonschema) and with the
  server's compiled one (fastjsonschema), and carries only documented fields;
- client messages: the schema and ``parse_client_message`` accept and refuse exactly the same
  messages over a generated corpus, and every refusal has words written for people;
- the constants in protocol.py are the schema's limits and error codes;
- every example in docs/protocol.md validates (or, in an ``invalid`` block, is refused by both).
"""
from __future__ import annotations

import inspect
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import jsonschema
import pytest

from chalicelib import protocol
from chalicelib.protocol import ProtocolError, parse_client_message

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
SCHEMA = protocol.schema()
DEFINITIONS = SCHEMA["definitions"]


def reference(definition: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(protocol.schema_for(definition))


def valid_both_ways(definition: str, value: Any) -> bool:
    """True if both validators accept ``value``; fails the test if they disagree."""
    by_reference = reference(definition).is_valid(value)
    try:
        protocol.validator(definition)(value)
        by_server = True
    except Exception:  # noqa: BLE001 - fastjsonschema's JsonSchemaValueException
        by_server = False
    assert by_reference == by_server, f"jsonschema says {by_reference}, fastjsonschema {by_server}: {value!r}"
    return by_reference


def event_definition(kind: str) -> Dict[str, Any]:
    (definition,) = [d for d in DEFINITIONS.values() if d.get("properties", {}).get("type", {}).get("const") == kind]
    return definition


def test_the_schema_is_a_valid_draft_07_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    for name in DEFINITIONS:
        jsonschema.Draft7Validator.check_schema(protocol.schema_for(name))
        protocol.validator(name)  # and the server's validator compiles every definition


def test_the_schema_ships_with_the_code_that_uses_it():
    assert protocol.SCHEMA_PATH.parent == ROOT / "chalicelib"  # chalice deploys chalicelib/ whole


def test_importing_the_protocol_does_not_compile_the_schema():
    code = "import sys, chalicelib.protocol as p; assert 'fastjsonschema' not in sys.modules; assert not p._validators"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- constants -------------------------------------------------------------------------------

def _error_codes() -> Dict[str, str]:
    """The error codes the server can send: protocol.ErrorCode, the one list chalicelib uses."""
    return {code.name: code.value for code in protocol.ErrorCode}


def test_error_codes_are_the_schema_s():
    assert sorted(set(_error_codes().values())) == sorted(DEFINITIONS["ErrorCode"]["enum"])


def test_limits_are_the_schema_s():
    ask = DEFINITIONS["AskMessage"]["properties"]
    assert ask["prompt"]["maxLength"] == protocol.MAX_PROMPT_CHARS
    assert DEFINITIONS["Id"]["maxLength"] == DEFINITIONS["OptionalId"]["maxLength"] == protocol.MAX_ID_CHARS
    assert DEFINITIONS["ReturnControlMessage"]["properties"]["results"]["maxItems"] == protocol.MAX_RESULTS
    assert sorted(DEFINITIONS["ToolResult"]["properties"]) == sorted(protocol._RESULT_KINDS)
    upload = DEFINITIONS["UploadMessage"]["properties"]
    assert upload["fileName"]["maxLength"] == DEFINITIONS["FileName"]["maxLength"] == protocol.MAX_FILE_NAME_CHARS
    assert upload["contentType"]["maxLength"] == protocol.MAX_CONTENT_TYPE_CHARS


def test_document_statuses_are_the_schema_s():
    assert [status.value for status in protocol.DocumentStatus] == DEFINITIONS["DocumentStatus"]["enum"]


def test_extraction_failures_are_document_failure_codes():
    from chalicelib.documents.extract import ExtractionReason

    pattern = re.compile(DEFINITIONS["DocumentFailure"]["pattern"])
    described = DEFINITIONS["DocumentFailure"]["description"]
    assert all(pattern.match(reason.value) and reason.value in described for reason in ExtractionReason)


def test_every_action_has_a_definition():
    actions = DEFINITIONS["ClientMessage"]["properties"]["action"]["enum"]
    branches = DEFINITIONS["ClientMessage"]["allOf"]
    assert [b["if"]["properties"]["action"]["const"] for b in branches] == actions


# ---- server events ---------------------------------------------------------------------------

STATS = {"chunks": 3, "characters": 12, "firstTokenMs": 40, "durationMs": 900, "queueMs": 12}
USAGE = {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12}
CONVERSE_STATS = {**STATS, "stopReason": "max_tokens", "usage": USAGE, "modelLatencyMs": 310}
PARAMETERS = [{"name": "q", "type": "string", "value": "x"}]
CONTROL = [{"functionInvocationInput": {"actionGroup": "g", "function": "f", "parameters": PARAMETERS}}]
FILE = {"name": "a.csv", "type": "text/csv", "size": 3, "content": "YWJj"}

# Every builder with every shape it is called with in chalicelib/ (the smallest and the fullest).
BUILT = {
    "accepted_event": [
        protocol.accepted_event("t1"),
        protocol.accepted_event("t1", "r1"),
        {**protocol.accepted_event("t1", "r1"), "duplicate": True},  # actions._duplicate
    ],
    "chunk_event": [protocol.chunk_event("t1", 1, "Hello"), protocol.chunk_event("t1", 10**6, "é" * 100)],
    "trace_event": [
        protocol.trace_event("t1", 2, {"kind": "rationale", "text": "why", "stage": "orchestration"}),
        protocol.trace_event("t1", 3, {"truncated": True, "bytes": 40000}),  # coalesce.Outbox._fit
    ],
    "return_control_event": [
        protocol.return_control_event("t1", 1, "inv-1", CONTROL),
        protocol.return_control_event("t1", 1, "i", []),
    ],
    "files_event": [
        protocol.files_event("t1", 1, [FILE]),
        protocol.files_event("t1", 2, [{"name": "big.bin", "type": "application/x", "size": 10**6, "note": "Too large"}]),
    ],
    "done_event": [
        protocol.done_event("t1", 5, "s1"),
        protocol.done_event("t1", 5, "s1", STATS),
        protocol.done_event("t1", 5, "s1", CONVERSE_STATS),  # turns.TurnRun._stats with a model's End
        protocol.done_event("t1", 1, "s1", {**STATS, "firstTokenMs": None, "characters": 0, "chunks": 0}),
    ],
    "error_event": [
        *[protocol.error_event(code, "What happened, for people.", True) for code in _error_codes().values()],
        *[protocol.error_event(code, "m", False, "t1", 4) for code in _error_codes().values()],
        protocol.error_event(protocol.ErrorCode.RATE_LIMITED, "Too fast.", True, retryAfterMs=1500, requestId="r1"),
        protocol.error_event(protocol.ErrorCode.QUOTA_EXCEEDED, "Spent.", True, retryAfterMs=19_800_000, requestId="r1"),
        protocol.error_event(protocol.ErrorCode.INTERRUPTED, "m", True, "t1"),  # turns._settle_redelivery: no seq
        protocol.error_event(protocol.ErrorCode.INTERRUPTED, "m", True, "t1", lastSeq=12),  # ... as far as known
        protocol.error_event(protocol.ErrorCode.SUPERSEDED, "m", False, "t1"),  # turns.run: a displaced follower
        ProtocolError("bad", request_id="r1").event(),
    ],
    "pong_event": [protocol.pong_event()],
    "usage_event": [
        protocol.usage_event(  # turns.metering.usage_event: no budgets, nothing used yet
            protocol.usage_period("2026-12-03", 0, 0, 0, None, 1),
            protocol.usage_period("2026-12", 0, 0, 0, None, 2_419_200_000),
        ),
        protocol.usage_event(
            protocol.usage_period("2026-12-31", 91_000, 9_500, 42, 100_000, 19_800_000),
            protocol.usage_period("2026-12", 1_200_000, 80_000, 700, 2_000_000, 19_800_000),
        ),
    ],
    "progress_event": [protocol.progress_event("t1", 10_000), protocol.progress_event("t1", 20_000, "calling an action group")],
    "upload_event": [
        protocol.upload_event("d1", "https://docs-bucket.s3.amazonaws.com/", {}, 1_790_000_000_000),
        protocol.upload_event(
            "0f8e5a3c9b7d4e21a6c5b4f3e2d1c0b9", "http://127.0.0.1:8000/s3/docs-bucket",
            {"key": "uploads/ab/0f8e/report.pdf", "Content-Type": "application/pdf", "policy": "eyJ...",
             "x-amz-signature": "9a0b"}, 1_790_000_300_000),
    ],
    "document_event": [
        *[protocol.document_event("d1", "a.txt", status) for status in protocol.DocumentStatus if status != "failed"],
        protocol.document_event("d1", "Q3 report.pdf", protocol.DocumentStatus.FAILED, "encrypted", "The PDF is protected."),
        protocol.document_event("d1", "a.md", protocol.DocumentStatus.ANALYSED,
                                analysis=protocol.document_analysis("Sales rose.", ["sales", "Q3"])),
        protocol.document_event("d1", "a.md", protocol.DocumentStatus.ANALYSED,
                                analysis=protocol.document_analysis("Nothing stands out.", [])),
    ],
    "documents_event": [
        protocol.documents_event([]),
        protocol.documents_event([
            protocol.document_entry("d1", "a.txt", protocol.DocumentStatus.INDEXED, 1_790_000_000_000),
            protocol.document_entry("d2", "b.pdf", protocol.DocumentStatus.FAILED, 1, "too_many_pages", "Too long."),
            protocol.document_entry("d3", "c.docx", protocol.DocumentStatus.ANALYSED, 2,
                                    analysis=protocol.document_analysis("S.", ["t"])),
        ]),
    ],
}


def test_every_event_builder_is_covered_here():
    builders = {name for name, value in vars(protocol).items() if name.endswith("_event") and inspect.isfunction(value)}
    assert builders == set(BUILT), "a new event builder: add it to BUILT and its definition to the schema"


@pytest.mark.parametrize("event", [e for events in BUILT.values() for e in events], ids=lambda e: e["type"])
def test_every_built_event_validates_and_carries_only_documented_fields(event):
    encoded = json.loads(protocol.encode(event))  # what travels
    assert valid_both_ways("ServerEvent", encoded)
    assert valid_both_ways("ServerFrame", encoded)
    definition = event_definition(event["type"])
    assert not set(encoded) - set(definition["properties"]), "an undocumented field"
    assert set(definition["required"]) <= set(encoded)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "chunk", "turnId": "t", "seq": 0, "text": "x"},
        {"type": "chunk", "turnId": "t", "seq": 1},
        {"type": "chunk", "turnId": "t", "seq": 1, "text": ""},
        {"type": "done", "turnId": "t", "seq": 1},
        {"type": "error", "code": "oops", "message": "m", "retryable": True},
        {"type": "error", "code": "internal", "message": "m", "retryable": "yes"},
        {"type": "accepted"},
        {"type": "usage", "day": {"period": "2026-12-03"}, "month": {}},
        {"type": "usage", "day": protocol.usage_period("2026-12-03", 1, 1, 1, 0, 1),  # a budget is never 0: null
         "month": protocol.usage_period("2026-12", 1, 1, 1, None, 1)},
        {"type": "wave"},
        {"turnId": "t"},
        {"type": "upload", "documentId": "d", "url": "https://b/", "fields": {"key": 1}, "expiresAt": 1},
        {"type": "upload", "documentId": "d", "url": "s3://b/k", "fields": {}, "expiresAt": 1},
        {"type": "upload", "documentId": "d", "url": "https://b/", "fields": {}},
        {"type": "document", "documentId": "d", "fileName": "a.txt", "status": "done"},
        {"type": "document", "documentId": "d", "fileName": "a.txt", "status": "failed"},  # without code and message
        {"type": "document", "documentId": "d", "fileName": "a.txt", "status": "failed", "code": "Bad Thing", "message": "m"},
        {"type": "document", "documentId": "d", "fileName": "", "status": "indexed"},
        {"type": "document", "documentId": "d", "fileName": "a", "status": "analysed", "analysis": {"summary": "s"}},
        {"type": "documents"},
        {"type": "documents", "documents": [{"documentId": "d", "fileName": "a", "status": "indexed"}]},  # no updatedAt
        {"type": "documents", "documents": [{"documentId": "d", "fileName": "a", "status": "failed", "updatedAt": 1}]},
    ],
)
def test_malformed_events_are_refused(event):
    assert not valid_both_ways("ServerEvent", event)


def test_api_gateway_s_own_frames_are_server_frames_but_not_events():
    frame = {"message": "Endpoint request timed out", "connectionId": "c=", "requestId": "r="}
    assert valid_both_ways("ServerFrame", frame)
    assert not valid_both_ways("ServerEvent", frame)


# ---- client messages: schema and parser agree ----------------------------------------------

GOOD_ID = ["t", "a" * 128, "ünï-çødé"]
BAD_ID = ["", "a" * 129, 7, 1.5, True, [], {}]
FIELD_VALUES: Dict[str, Tuple[List[Any], List[Any]]] = {
    # field: (values accepted, values refused); None means "absent" for optional fields
    "prompt": (
        ["Hi", " x ", "a" * 25_000, "é" * 25_000, "<script>"],
        ["", "   ", "\n\t", "\u200b\ufeff", "\u00a0\u200d\u2060", "a" * 25_001, 1, None, [], {}, False],
    ),
    "conversationId": ([*GOOD_ID, None], BAD_ID),
    "requestId": ([*GOOD_ID, None], BAD_ID),
    "trace": ([True, False, None], ["yes", 1, 0, []]),
    "turnId": (GOOD_ID, [*BAD_ID, None]),
    "fromSeq": ([0, 1, 10**6, None], [-1, 1.5, "3", True, []]),
    # An upload's shape only: kinds, content types and the size limit are documents.upload's (tests/unit/documents).
    "fileName": (["a.pdf", "x" * 255, "Rapport d'été.docx", "no-extension"], ["", "x" * 256, 7, [], None]),
    "contentType": (["application/pdf", "text/html; charset=utf-8", "x" * 255], ["", "x" * 256, 1, {}, None]),
    "size": ([1, 10 * 1024 * 1024, 10**12], [0, -1, 1.5, "10", True, None]),
    "documentId": (GOOD_ID, [*BAD_ID, None]),
    "invocationId": (GOOD_ID, [*BAD_ID, None]),
    "results": (
        [[{"functionResult": {}}], [{"apiResult": {"x": 1}}] * 20, [{"functionResult": {}, "other": 1}]],
        [[], [{}], [{"functionResult": {}}] * 21, [{"functionResult": 1}], [{"functionResult": {}, "apiResult": {}}],
         "x", None, [1]],
    ),
}
SHAPES = {
    "ask": {"prompt": "Hi"},
    "resume": {"action": "resume", "turnId": "t"},
    "cancel": {"action": "cancel", "turnId": "t"},
    "return_control": {"action": "return_control", "turnId": "t", "invocationId": "i", "results": [{"functionResult": {}}]},
    "ping": {"action": "ping"},
    "usage": {"action": "usage"},
    "upload": {"action": "upload", "fileName": "a.pdf", "contentType": "application/pdf", "size": 1},
    "documents": {"action": "documents"},
    "delete": {"action": "delete", "documentId": "d"},
}
FIELDS_OF = {
    "ask": ["prompt", "conversationId", "requestId", "trace"],
    "resume": ["turnId", "fromSeq"],
    "cancel": ["turnId"],
    "return_control": ["turnId", "invocationId", "results"],
    "ping": [],
    "usage": [],
    "upload": ["fileName", "contentType", "size"],
    "documents": [],
    "delete": ["documentId"],
}
REQUIRED = {"prompt", "turnId", "invocationId", "results", "fileName", "contentType", "size", "documentId"}


def corpus() -> Iterator[Tuple[Any, bool]]:
    """(message, should it be accepted) for every action x field x value, and more."""
    for action, base in SHAPES.items():
        yield base, True
        yield {**base, "unknown": {"deep": [1]}, "email": "x@example.com"}, True  # unknown fields are ignored
        for field in FIELDS_OF[action]:
            good, bad = FIELD_VALUES[field]
            for value in good:
                message = {k: v for k, v in base.items() if k != field}
                if value is not None or field not in REQUIRED:
                    message[field] = value
                yield message, True
            for value in bad:
                yield {**base, field: value}, False
            if field in REQUIRED:
                yield {k: v for k, v in base.items() if k != field}, False
    for action in [7, "", "ASK", "dance", ["ask"]]:
        yield {"action": action, "prompt": "Hi"}, False
    yield {"action": None, "prompt": "Hi"}, True  # null is the same as absent: an ask
    yield {"action": None}, False
    for not_an_object in [[], [1], "hi", 3, None, True]:
        yield not_an_object, False
    # Fields of another action are ignored, not mixed in.
    yield {"prompt": "Hi", "turnId": 7, "results": "x"}, True
    yield {"action": "ping", "prompt": ""}, True
    yield {"action": "documents", "documentId": 7, "size": "big"}, True
    yield {"action": "upload", "prompt": "Hi"}, False  # an upload with a prompt is still an upload
    for a, b in itertools.combinations(["Hi", "", 5], 2):
        yield {"prompt": a, "requestId": b if isinstance(b, str) and b else None}, bool(a == "Hi")


CORPUS = list(corpus())


@pytest.mark.parametrize("message, accepted", CORPUS, ids=[json.dumps(m)[:60] for m, _ in CORPUS])
def test_the_schema_and_the_server_accept_the_same_messages(message, accepted):
    assert valid_both_ways("ClientMessage", message) is accepted
    try:
        parse_client_message(json.dumps(message))
        served = True
    except ProtocolError as error:
        served = False
        event = error.event()
        assert (event["code"], event["retryable"]) == (protocol.ErrorCode.INVALID_REQUEST, False)
        assert not error.message.startswith("The message does not follow the protocol"), "no words for this rule"
        assert valid_both_ways("ServerEvent", event)
    assert served is accepted


def test_a_refused_ask_names_its_request_id():
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(json.dumps({"prompt": "", "requestId": "r-9"}))
    assert caught.value.event()["requestId"] == "r-9"
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(json.dumps({"prompt": "", "requestId": 9}))
    assert "requestId" not in caught.value.event()


def test_a_tighter_prompt_limit_still_applies():
    with pytest.raises(ProtocolError, match="limit is 10"):
        parse_client_message(json.dumps({"prompt": "a" * 11}), max_prompt_chars=10)


# ---- docs/protocol.md ------------------------------------------------------------------------

def doc_examples() -> Iterator[Tuple[str, int, str]]:
    """(kind, line number, JSON text) for every line of a ```json client|server|invalid block."""
    kind = None
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        if kind is None:
            match = re.fullmatch(r"```json (client|server|invalid)", line.strip())
            if match:
                kind = match.group(1)
        elif line.strip() == "```":
            kind = None
        elif line.strip():
            yield kind, number, line.strip()


EXAMPLES = list(doc_examples())


def test_the_doc_has_examples_of_every_message_and_event():
    client = [json.loads(text) for kind, _, text in EXAMPLES if kind == "client"]
    server = [json.loads(text) for kind, _, text in EXAMPLES if kind == "server"]
    assert {m.get("action", "ask") for m in client} == set(SHAPES)
    assert {e["type"] for e in server if "type" in e} == {name[: -len("_event")] for name in BUILT}
    assert any("type" not in e for e in server), "an API Gateway frame"
    assert len([kind for kind, _, _ in EXAMPLES if kind == "invalid"]) >= 5


@pytest.mark.parametrize("kind, line, text", EXAMPLES, ids=[f"{k}@{n}" for k, n, _ in EXAMPLES])
def test_every_example_in_the_doc_is_right(kind, line, text):
    if kind == "client":
        assert valid_both_ways("ClientMessage", json.loads(text))
        parse_client_message(text)
    elif kind == "server":
        assert valid_both_ways("ServerFrame", json.loads(text))
        frame = json.loads(text)
        if "type" in frame:
            assert not set(frame) - set(event_definition(frame["type"])["properties"])
    else:
        with pytest.raises(ProtocolError):
            parse_client_message(text)
        try:
            message = json.loads(text)
        except ValueError:
            return  # not JSON at all
        assert not valid_both_ways("ClientMessage", message)


def test_the_doc_s_error_table_lists_every_code():
    table = re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    codes = [code for code in table if code in DEFINITIONS["ErrorCode"]["enum"]]
    assert sorted(codes) == sorted(DEFINITIONS["ErrorCode"]["enum"])
