"""Bedrock Agents (InvokeAgent), streamed with ``streamFinalResponse``.

Without ``streamFinalResponse`` the whole answer arrives as one chunk at the end, which is the
very problem this project exists to solve; with it, the agent's final answer streams as it is
generated.
"""
from __future__ import annotations

import codecs
from typing import Any, Dict, Iterator

from chalicelib.protocol import AGENT_ERROR
from chalicelib.backends import BackendEvent, End, Failure, ReturnControl, TextDelta, Trace, TurnRequest, classify_error


class AgentBackend:
    def __init__(self, client: Any, agent_id: str, agent_alias_id: str) -> None:
        self._client = client
        self._agent_id = agent_id
        self._agent_alias_id = agent_alias_id

    def _params(self, request: TurnRequest) -> Dict[str, Any]:
        params: Dict[str, Any] = {
            "agentId": self._agent_id,
            "agentAliasId": self._agent_alias_id,
            "sessionId": request.session_id,
            "inputText": request.prompt,
            "enableTrace": request.trace,
            "streamingConfigurations": {"streamFinalResponse": True},
        }
        if request.memory_id:
            params["memoryId"] = request.memory_id
        return params

    def stream(self, request: TurnRequest) -> Iterator[BackendEvent]:
        from botocore.exceptions import BotoCoreError, ClientError, EventStreamError

        try:
            # botocore has already retried retryable errors (standard mode) when this raises.
            response = self._client.invoke_agent(**self._params(request))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            yield classify_error(error.get("Code", "ClientError"), error.get("Message", ""))
            return
        except BotoCoreError as exc:
            yield Failure(AGENT_ERROR, f"Could not reach the agent ({type(exc).__name__}).", True)
            return

        # A multi-byte character may straddle two chunks; decode incrementally.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for event in response["completion"]:
                if "chunk" in event:
                    text = decoder.decode(event["chunk"].get("bytes", b""))
                    if text:
                        yield TextDelta(text)
                elif "trace" in event:
                    yield Trace(event["trace"].get("trace", {}))
                elif "returnControl" in event:
                    control = event["returnControl"]
                    yield ReturnControl(control.get("invocationId", ""), control.get("invocationInputs", []))
        except EventStreamError as exc:
            error = exc.response.get("Error", {})
            yield classify_error(error.get("Code", "EventStreamError"), error.get("Message", ""))
            return
        except BotoCoreError as exc:  # the connection broke or timed out mid-stream
            yield Failure(AGENT_ERROR, f"The agent's stream broke ({type(exc).__name__}).", True)
            return
        finally:
            # Release the HTTP connection even when the caller stops early (e.g. on return of control).
            close = getattr(response["completion"], "close", None)
            if close is not None:
                close()
        tail = decoder.decode(b"", final=True)
        if tail:
            yield TextDelta(tail)
        yield End(session_id=response.get("sessionId") or request.session_id)
