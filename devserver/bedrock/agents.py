"""InvokeAgent (``bedrock-agent-runtime``): validation and the ``completion`` event stream.

``POST /agents/{agentId}/agentAliases/{agentAliasId}/sessions/{sessionId}/text``. Without
``streamingConfigurations.streamFinalResponse=true`` the whole answer comes as ONE chunk at the
end (after the same total delay), like the real service. ``!kb WORDS`` answers from the knowledge
base (``knowledge``) through the filter of ``sessionState.knowledgeBaseConfigurations``, as an
agent associated with it retrieves.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from devserver.bedrock import filters
from devserver.bedrock.errors import validation
from devserver.bedrock.eventstream import event, exception
from devserver.bedrock.knowledge import DEFAULT_RESULTS, KnowledgeBase, check_count
from devserver.bedrock.scenarios import (
    NO_PASSAGES, STREAM_ERROR, STREAM_THROTTLE, Pacing, Plan, base_answer, parse_command, timed_pieces,
)

__all__ = ["MAX_INPUT_CHARS", "OPERATION", "PATH", "URI_LABELS", "AgentRequest", "completion", "parse_request"]

OPERATION = "InvokeAgent"
MAX_INPUT_CHARS = 25_000
#: The request path, labels still percent-encoded.
PATH = re.compile(r"^/agents/([^/]+)/agentAliases/([^/]+)/sessions/([^/]+)/text$")
URI_LABELS = ("agentId", "agentAliasId", "sessionId")
_ID_RE = re.compile(r"^[0-9a-zA-Z._:-]+$")


@dataclass(frozen=True)
class AgentRequest:
    """A validated InvokeAgent request: what to answer and how."""

    agent_id: str
    alias_id: str
    session_id: str
    memory_id: str | None
    prompt: str  # "" when answering returnControlInvocationResults
    command: str
    arg: float | None
    text: str
    streaming: bool
    trace: bool
    citations: tuple[dict[str, Any], ...] = ()  # ``!kb``: the passages' sources, sent as the last chunk's attribution

    @property
    def throttle_key(self) -> tuple[str, ...]:
        """``!throttle-once`` refuses a session's first request only."""
        return (OPERATION, self.session_id)

    def headers(self) -> dict[str, str]:
        """The response headers botocore maps to ``contentType``, ``sessionId`` and ``memoryId``."""
        headers = {
            "x-amzn-bedrock-agent-content-type": "application/json",
            "x-amz-bedrock-agent-session-id": self.session_id,
        }
        if self.memory_id is not None:
            headers["x-amz-bedrock-agent-memory-id"] = self.memory_id
        return headers


def parse_request(agent_id: str, alias_id: str, session_id: str, body: dict[str, Any],
                  max_input_chars: int = MAX_INPUT_CHARS, knowledge: KnowledgeBase | None = None) -> AgentRequest:
    """Validate as the service does (raising ``ServiceError``) and work out the answer (``!kb``: from ``knowledge``)."""
    _check_id("sessionId", session_id)
    if "memoryId" in body:
        _check_id("memoryId", body["memoryId"])
    state = body.get("sessionState") or {}
    results = state.get("returnControlInvocationResults")
    prompt = body.get("inputText")
    if prompt is None and not results:
        raise validation("inputText is required when sessionState.returnControlInvocationResults is absent")
    if prompt is not None and not isinstance(prompt, str):
        raise validation("inputText must be a string")
    if prompt is not None and len(prompt) > max_input_chars:
        raise validation(
            "1 validation error detected: Value at 'inputText' failed to satisfy constraint: "
            f"Member must have length less than or equal to {max_input_chars}"
        )
    command: str
    arg: float | None
    if results:
        command, arg, text = "", None, "You said: " + _results_text(results)
    else:
        assert prompt is not None  # refused above when there are no results
        command, arg = parse_command(prompt)
        text = base_answer(prompt, command, arg)
    request = AgentRequest(
        agent_id=agent_id, alias_id=alias_id, session_id=session_id, memory_id=body.get("memoryId"),
        prompt=prompt or "", command=command, arg=arg, text=text,
        streaming=(body.get("streamingConfigurations") or {}).get("streamFinalResponse") is True,
        trace=body.get("enableTrace") is True,
    )
    if command == "!kb":
        return _from_knowledge(request, state, knowledge)
    return request


def completion(request: AgentRequest, pacing: Pacing) -> Plan:
    """The ``completion`` stream: trace, returnControl, files and chunk events as the prompt asks."""
    command = request.command
    ids = {"agentId": request.agent_id, "agentAliasId": request.alias_id, "sessionId": request.session_id}
    if command == "!trace" and request.trace:
        for part in _trace_parts(request.prompt, request.text):
            yield event("trace", {**ids, "agentVersion": "DRAFT", "eventTime": _now(), "trace": part})
    if command == "!return-control":
        yield pacing.first_token_delay
        yield event("returnControl", _return_control(request.agent_id, request.prompt))
        return
    if command == "!files":
        csv = base64.b64encode(b"city,temperature\nOslo,3\n").decode("ascii")
        yield event("files", {"files": [{"name": "weather.csv", "type": "text/csv", "bytes": csv}]})
    if command == "!stream-throttle":
        yield pacing.first_token_delay
        yield exception(*STREAM_THROTTLE)
        return
    timed = timed_pieces(request.text, command, request.arg, pacing)
    if not request.streaming and command != "!stream-error":
        timed = [(sum(wait for wait, _ in timed), request.text)]
    for i, (wait, piece) in enumerate(timed, 1):
        yield wait
        payload: dict[str, Any] = {"bytes": base64.b64encode(piece.encode("utf-8")).decode("ascii")}
        if request.citations and i == len(timed):
            payload["attribution"] = {"citations": list(request.citations)}
        yield event("chunk", payload)
    if command == "!stream-error":
        yield pacing.chunk_delay
        yield exception(*STREAM_ERROR)
        return
    if request.trace:  # the orchestration model's invocation ends: its trace reports the tokens
        yield event("trace", {**ids, "agentVersion": "DRAFT", "eventTime": _now(), "trace": _usage_part(request)})


def _from_knowledge(request: AgentRequest, state: dict[str, Any], knowledge: KnowledgeBase | None) -> AgentRequest:
    """``!kb WORDS``: the passages containing every word, each cited with the chunk it comes from.

    Only the chunks the filter of this knowledge base's entry in ``knowledgeBaseConfigurations``
    admits are searched, at most its ``numberOfResults``. Without such an entry there is no filter
    and every indexed chunk is searched, as the agent does: why the app must always send one.
    """
    retrieval_filter, count = _session_retrieval(state, knowledge)
    chunks = knowledge.passages(request.prompt[len("!kb"):], count, retrieval_filter) if knowledge else []
    if not chunks:
        return replace(request, text=NO_PASSAGES)
    passages = [chunk.text.strip() for chunk in chunks]
    citations, start = [], 0
    for passage, chunk in zip(passages, chunks, strict=True):
        span = {"start": start, "end": start + len(passage) - 1}
        citations.append({"generatedResponsePart": {"textResponsePart": {"text": passage, "span": span}},
                          "retrievedReferences": [chunk.reference()]})
        start += len(passage) + 2  # the blank line between passages
    return replace(request, text="\n\n".join(passages), citations=tuple(citations))


def _session_retrieval(state: dict[str, Any], knowledge: KnowledgeBase | None) -> tuple[dict[str, Any] | None, int]:
    """(filter, numberOfResults) of the knowledge base's first entry in ``knowledgeBaseConfigurations``."""
    configurations = state.get("knowledgeBaseConfigurations") or []
    if not isinstance(configurations, list):
        raise validation("sessionState.knowledgeBaseConfigurations must be a list")
    found: tuple[dict[str, Any] | None, int] | None = None
    for i, configuration in enumerate(configurations):
        where = f"sessionState.knowledgeBaseConfigurations[{i}]"
        if not isinstance(configuration, dict) or not isinstance(configuration.get("retrievalConfiguration"), dict):
            raise validation(f"{where} needs knowledgeBaseId and retrievalConfiguration")
        search = configuration["retrievalConfiguration"].get("vectorSearchConfiguration") or {}
        retrieval_filter, count = search.get("filter"), search.get("numberOfResults", DEFAULT_RESULTS)
        if retrieval_filter is not None:
            filters.check(retrieval_filter, f"{where}.retrievalConfiguration.vectorSearchConfiguration.filter")
        check_count(count, f"{where}.retrievalConfiguration.vectorSearchConfiguration.numberOfResults")
        ours = knowledge is not None and configuration.get("knowledgeBaseId") == knowledge.config.knowledge_base_id
        if found is None and ours:
            found = (retrieval_filter, count)
    return found or (None, DEFAULT_RESULTS)


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not 2 <= len(value) <= 100:
        raise validation(
            f"1 validation error detected: Value at '{name}' failed to satisfy constraint: "
            "Member must have length between 2 and 100"
        )
    if not _ID_RE.match(value):
        raise validation(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z._:-]+"
        )


def _results_text(results: list[Any]) -> str:
    """The text bodies of ``returnControlInvocationResults``, space-joined."""
    texts: list[str] = []
    for item in results:
        for result in item.values() if isinstance(item, dict) else ():
            bodies = (result.get("responseBody") if isinstance(result, dict) else None) or {}
            texts.extend(str(b.get("body", "")) for b in bodies.values() if isinstance(b, dict))
    return " ".join(texts)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _trace_parts(prompt: str, text: str) -> list[dict[str, Any]]:
    """Two orchestration steps (Trace is a union: one member per part)."""
    trace_id = str(uuid.uuid4()) + "-0"
    rationale = {"traceId": trace_id, "text": f"The user wrote {prompt!r}; I will echo it."}
    observation = {"traceId": trace_id, "type": "FINISH", "finalResponse": {"text": text}}
    return [{"orchestrationTrace": {"rationale": rationale}}, {"orchestrationTrace": {"observation": observation}}]


def _usage_part(request: AgentRequest) -> dict[str, Any]:
    """The orchestration step's ``modelInvocationOutput``, whose metadata carries the tokens it used."""
    usage = {"inputTokens": len(request.prompt.split()), "outputTokens": len(request.text.split())}
    output = {"traceId": str(uuid.uuid4()) + "-0", "rawResponse": {"content": request.text}, "metadata": {"usage": usage}}
    return {"orchestrationTrace": {"modelInvocationOutput": output}}


def _return_control(agent_id: str, prompt: str) -> dict[str, Any]:
    return {
        "invocationId": str(uuid.uuid4()),
        "invocationInputs": [{
            "functionInvocationInput": {
                "actionGroup": "EmulatorActions",
                "actionInvocationType": "RESULT",
                "agentId": agent_id,
                "function": "lookup",
                "parameters": [{"name": "query", "type": "string", "value": prompt}],
            }
        }],
    }
