"""Models called directly with ConverseStream, the conversation kept server-side.

The client sends only the new prompt; the history of its conversation (per user and
``conversationId``) is replayed from DynamoDB and the exchange appended when the answer is whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from chalicelib.protocol import ErrorCode
from chalicelib.backends import Events, End, Failure, TextDelta, TurnRequest, guarded
from chalicelib.documents.retrieval import with_context
from chalicelib.store.history import History, Message
from chalicelib.logs import logger

_GUARDRAIL_STOPS = ("guardrail_intervened", "content_filtered")
# SSM errors a later try may not meet (AccessDenied or ParameterNotFound need an operator).
_SSM_TRANSIENT = ("ThrottlingException", "InternalServerError")


@dataclass(frozen=True)
class ModelConfig:
    model_id: str
    system_prompt: str = ""
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    latency: str = ""  # "optimized" for latency-optimized inference where the model offers it


class ConverseBackend:
    """``system_prompt``, when given, reads the prompt (from SSM, on AWS) instead of ``model.system_prompt``."""

    def __init__(self, client: Any, history: History, model: ModelConfig,
                 system_prompt: Optional[Callable[[], str]] = None,
                 retrieve: Optional[Callable[[str, str], List[str]]] = None) -> None:
        self._client = client
        self._history = history
        self._model = model
        self._system_prompt = system_prompt or (lambda: model.system_prompt)
        # The asker's passages (Retrieve through their owner filter), put before the prompt.
        self._retrieve = retrieve

    def _params(self, messages: List[Message], system_prompt: str) -> Dict[str, Any]:
        model = self._model
        params: Dict[str, Any] = {"modelId": model.model_id, "messages": messages}
        if system_prompt:
            params["system"] = [{"text": system_prompt}]
        inference = {
            key: value
            for key, value in (("maxTokens", model.max_tokens), ("temperature", model.temperature), ("topP", model.top_p))
            if value is not None
        }
        if inference:
            params["inferenceConfig"] = inference
        if model.latency:
            params["performanceConfig"] = {"latency": model.latency}
        return params

    def stream(self, request: TurnRequest) -> Events:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            system_prompt = self._system_prompt()
        except (BotoCoreError, ClientError) as exc:
            logger.exception("could not read the system prompt")
            return _only(_prompt_failure(exc))
        prompt = request.prompt
        if self._retrieve is not None and request.user_id:
            try:
                prompt = with_context(prompt, self._retrieve(prompt, request.user_id))
            except (BotoCoreError, ClientError):
                logger.exception("could not search the user's documents")
                return _only(Failure(ErrorCode.AGENT_ERROR, "Your documents could not be searched just now; try again.",
                                     True))
        # The history keeps the question as asked; only this call sees the passages.
        messages = self._history.load(request.session_id) + [{"role": "user", "content": [{"text": prompt}]}]
        return guarded(
            lambda: self._client.converse_stream(**self._params(messages, system_prompt)), lambda r: self._read(r, request)
        )

    def _read(self, response: Dict[str, Any], request: TurnRequest) -> Events:
        stream = response["stream"]
        parts: List[str] = []
        stop_reason: Optional[str] = None
        metadata: Dict[str, Any] = {}
        try:
            for event in stream:
                if "contentBlockDelta" in event:
                    text = event["contentBlockDelta"].get("delta", {}).get("text")
                    if text:
                        parts.append(text)
                        yield TextDelta(text)
                elif "messageStop" in event:
                    stop_reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    metadata = event["metadata"]
        finally:
            stream.close()
        if stop_reason in _GUARDRAIL_STOPS:
            yield Failure(ErrorCode.GUARDRAIL, f"A guardrail stopped the answer ({stop_reason}).", False)
            return
        try:
            self._history.append(request.session_id, request.prompt, "".join(parts))
        except Exception:  # noqa: BLE001 - the answer is whole; only the next turn's context suffers
            logger.exception("could not save the conversation history")
        yield End(
            session_id=request.session_id,
            stop_reason=stop_reason,
            usage=metadata.get("usage"),
            latency_ms=(metadata.get("metrics") or {}).get("latencyMs"),
        )


def _prompt_failure(exc: Exception) -> Failure:
    """The turn's error when its system prompt cannot be read: the stage's fault, said plainly."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
        retryable = code in _SSM_TRANSIENT
    else:  # no answer from SSM: a network fault
        code, retryable = type(exc).__name__, True
    return Failure(ErrorCode.INTERNAL, f"The model's system prompt could not be read from SSM ({code}).", retryable)


def _only(event: Failure) -> Events:
    yield event
