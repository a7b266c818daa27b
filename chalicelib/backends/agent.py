"""Bedrock Agents (InvokeAgent), streamed with ``streamFinalResponse``.

Without ``streamFinalResponse`` the whole answer arrives as one chunk at the end, which is the
very problem this project exists to solve; with it, the agent's final answer streams as it is
generated. A turn paused for return of control continues here with the client's results.
"""
from __future__ import annotations

import codecs
from typing import Any, Dict

from chalicelib.documents.retrieval import knowledge_base_configurations
from chalicelib.backends import Events, End, Failure, Files, ReturnControl, TextDelta, Trace, TurnRequest, add_usage, guarded
from chalicelib.protocol import ErrorCode
from chalicelib.backends.agent_trace import compact_trace, phase_of, usage_of


class AgentBackend:
    def __init__(self, client: Any, agent_id: str, agent_alias_id: str, knowledge_base_id: str = "") -> None:
        self._client = client
        self._agent_id = agent_id
        self._agent_alias_id = agent_alias_id
        self._knowledge_base_id = knowledge_base_id

    def _params(self, request: TurnRequest) -> Dict[str, Any]:
        params: Dict[str, Any] = {
            "agentId": self._agent_id,
            "agentAliasId": self._agent_alias_id,
            "sessionId": request.session_id,
            # Always: the trace says what a silent agent is doing (progress events); it is
            # forwarded to the client only when the ask set ``trace``.
            "enableTrace": True,
            "streamingConfigurations": {"streamFinalResponse": True},
        }
        if request.control_results is not None:
            params["sessionState"] = {
                "invocationId": request.invocation_id,
                "returnControlInvocationResults": request.control_results,
            }
        else:
            params["inputText"] = request.prompt
        if self._knowledge_base_id and request.user_id:
            # The agent's knowledge base, searched through the asker's owner filter only.
            params.setdefault("sessionState", {})["knowledgeBaseConfigurations"] = knowledge_base_configurations(
                self._knowledge_base_id, request.user_id)
        if request.memory_id:
            params["memoryId"] = request.memory_id
        return params

    def stream(self, request: TurnRequest) -> Events:
        return guarded(lambda: self._client.invoke_agent(**self._params(request)), lambda r: self._read(r, request))

    def _read(self, response: Dict[str, Any], request: TurnRequest) -> Events:
        completion = response["completion"]
        # A multi-byte character may straddle two chunks; decode incrementally.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        usage = None
        try:
            for event in completion:
                if "chunk" in event:
                    text = decoder.decode(event["chunk"].get("bytes", b""))
                    if text:
                        yield TextDelta(text)
                elif "trace" in event:
                    part = event["trace"].get("trace", {})
                    usage = add_usage(usage, usage_of(part))
                    compact = compact_trace(part)
                    yield Trace(compact, phase_of(compact))
                elif "returnControl" in event:
                    control = event["returnControl"]
                    if not control.get("invocationId"):  # the client could never answer it
                        reason = "The agent asked for return of control without an invocation id."
                        yield Failure(ErrorCode.AGENT_ERROR, reason, False)
                        return
                    yield ReturnControl(control["invocationId"], control.get("invocationInputs", []))
                elif "files" in event:
                    yield Files(event["files"].get("files", []))
        finally:
            # Release the HTTP connection even when the caller stops early (a cancel, return of control).
            completion.close()
        tail = decoder.decode(b"", final=True)
        if tail:
            yield TextDelta(tail)
        yield End(session_id=response.get("sessionId") or request.session_id, usage=usage)
