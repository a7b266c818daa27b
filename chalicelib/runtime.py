"""The container's collaborators, built on first use and injectable.

Handlers ask ``get_runtime()`` for the stores (one per table), queue, verifier, backend and gateways; tests and the
local stack either point the default runtime at other endpoints (``AWS_ENDPOINT_URL_*``) or hand
in their own with ``set_runtime``.
"""
from __future__ import annotations

from functools import cached_property, partial
from typing import Callable, List, Optional

from chalicelib.auth import TokenVerifier
from chalicelib.aws import AwsClients, CachedParameter, management_endpoint
from chalicelib.backends import Backend
from chalicelib.gateway import Gateway
from chalicelib.settings import Settings, get_settings
from chalicelib.store import ConnectionStore, RateLimitStore, TurnStore, UsageStore
from chalicelib.store.conversations import ConversationStore
from chalicelib.store.documents import DocumentStore
from chalicelib.turns.queue import TurnQueue


class Runtime:
    def __init__(self, settings: Settings, clients: Optional[AwsClients] = None) -> None:
        self.settings = settings
        self.clients = clients or AwsClients(settings)

    @cached_property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(self.clients.dynamodb, self.settings.connections_table)

    @cached_property
    def turns(self) -> TurnStore:
        return TurnStore(self.clients.dynamodb, self.settings.turns_table, self.settings.turn_ttl_s)

    @cached_property
    def rate_limits(self) -> RateLimitStore:
        return RateLimitStore(self.clients.dynamodb, self.settings.rate_limits_table)

    @cached_property
    def usage(self) -> UsageStore:
        """Each user's token usage per day and month (on the rate-limits table)."""
        return UsageStore(self.clients.dynamodb, self.settings.rate_limits_table)

    @cached_property
    def conversations(self) -> ConversationStore:
        return ConversationStore(self.clients.dynamodb, self.settings.conversations_table, self.settings.turn_ttl_s)

    @cached_property
    def documents(self) -> DocumentStore:
        return DocumentStore(self.clients.dynamodb, self.settings.documents_table)

    def retrieve(self, query: str, user_id: str) -> List[str]:
        """Passages of the user's own documents for a query (Retrieve through the owner filter)."""
        from chalicelib.documents.retrieval import passages, retrieval_configuration

        response = self.clients.bedrock_agent_runtime.retrieve(
            knowledgeBaseId=self.settings.knowledge_base_id, retrievalQuery={"text": query[:1000]},
            retrievalConfiguration=retrieval_configuration(user_id))
        return passages(response)

    @cached_property
    def queue(self) -> TurnQueue:
        return TurnQueue(self.clients.sqs, self.settings.turn_queue_url)

    @cached_property
    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.settings, secret_loader=self._load_jwt_secret)

    def _load_jwt_secret(self) -> str:
        return self.clients.parameter(self.settings.jwt_secret_parameter)

    @cached_property
    def system_prompt(self) -> Optional[Callable[[], str]]:
        """Where the converse backend gets its system prompt on AWS: the SSM parameter
        ``SYSTEM_PROMPT_PARAMETER`` names, cached (None: ``SYSTEM_PROMPT`` holds the prompt itself)."""
        s = self.settings
        if not s.system_prompt_parameter:
            return None
        return CachedParameter(partial(self.clients.parameter, s.system_prompt_parameter), s.system_prompt_max_age_s).get

    @cached_property
    def backend(self) -> Backend:
        """The Bedrock API this stage talks to; the wire protocol is the same for each."""
        s = self.settings
        if s.backend == "converse":
            from chalicelib.backends.converse import ConverseBackend, ModelConfig
            from chalicelib.store.history import History

            history = History(self.clients.dynamodb, s.history_table, s.turn_ttl_s, s.history_max_turns, s.history_max_chars)
            model = ModelConfig(s.model_id, s.system_prompt, s.max_tokens, s.temperature, s.top_p, s.latency)
            retrieve = self.retrieve if s.knowledge_base_id else None
            return ConverseBackend(self.clients.bedrock_runtime, history, model, self.system_prompt, retrieve)
        if s.backend == "agentcore":
            from chalicelib.backends.agentcore import AgentCoreBackend

            return AgentCoreBackend(self.clients.bedrock_agentcore, s.agent_runtime_arn, s.agent_runtime_qualifier)
        from chalicelib.backends.agent import AgentBackend

        return AgentBackend(self.clients.bedrock_agent_runtime, s.agent_id, s.agent_alias_id, s.knowledge_base_id)

    def gateway(self, api_id: str, stage: str) -> Gateway:
        return Gateway(self.clients.management(management_endpoint(self.settings, api_id, stage)))


_runtime: Optional[Runtime] = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def set_runtime(runtime: Optional[Runtime]) -> None:
    """Replace (or with None, forget) the runtime: for tests and the local stack."""
    global _runtime
    _runtime = runtime
