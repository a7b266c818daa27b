"""Typed settings, read from the environment once per Lambda container.

Every knob the app has lives here, so a reader sees the whole configuration surface in one place
and tests build a ``Settings`` directly instead of patching the environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

# A little past API Gateway's 2-hour maximum connection duration, so a record whose
# $disconnect never ran still disappears on its own.
CONNECTION_TTL_S = 2 * 3600 + 300
# The local development secret; a deployed stage refuses to start with it.
DEV_JWT_SECRET_MARKER = "agentstream-local-dev-"
BACKENDS = ("agent", "converse", "agentcore")


class SettingsError(RuntimeError):
    """The environment does not describe a runnable app (a deploy mistake, not a client one)."""


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _csv(value: str) -> Tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


# How each annotated type is read from its variable (an empty variable means "the default").
_PARSERS: Dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": _flag,
    "Optional[int]": int,
    "Optional[float]": float,
    "Tuple[str, ...]": _csv,
}


def env(*names: str, default: Any = None, secret: bool = False) -> Any:
    """A setting read from the first of ``names`` that is set; the default is written only here."""
    return field(default=default, repr=not secret, metadata={"env": names})


@dataclass(frozen=True)
class Settings:
    stage: str = env("STAGE", default="local")
    region: str = env("AWS_REGION", "AWS_DEFAULT_REGION", default="us-east-1")
    connections_table: str = env("CONNECTIONS_TABLE", default="agentstream-connections")
    turns_table: str = env("TURNS_TABLE", default="agentstream-turns")
    turn_queue_url: str = env("TURN_QUEUE_URL", default="")
    # agent (InvokeAgent) | converse (ConverseStream) | agentcore (InvokeAgentRuntime)
    backend: str = env("BACKEND", default="agent")
    agent_id: str = env("AGENT_ID", default="")
    agent_alias_id: str = env("AGENT_ALIAS_ID", default="")
    agent_memory: bool = env("AGENT_MEMORY", default=False)
    # BACKEND=converse: the model, its settings, and the server-side history's bounds.
    model_id: str = env("MODEL_ID", default="")
    # The system prompt itself (the local stack), or on AWS the name of the SSM parameter holding it:
    # a long prompt would not fit the 4 KB a Lambda function's environment may hold. Read from SSM on
    # first use and again once older than SYSTEM_PROMPT_MAX_AGE_S, so a changed prompt reaches warm workers.
    system_prompt: str = env("SYSTEM_PROMPT", default="")
    system_prompt_parameter: str = env("SYSTEM_PROMPT_PARAMETER", default="")
    system_prompt_max_age_s: int = env("SYSTEM_PROMPT_MAX_AGE_S", default=300)
    max_tokens: Optional[int] = env("MAX_TOKENS")
    temperature: Optional[float] = env("TEMPERATURE")
    top_p: Optional[float] = env("TOP_P")
    latency: str = env("LATENCY", default="")
    history_table: str = env("HISTORY_TABLE", default="agentstream-history")
    # GET /v1/answers: how long a one-shot question's answer is served again without the agent, and
    # how long the request waits for a new answer before it answers 202 (under API Gateway's 29 s).
    answer_cache_ttl_s: int = env("ANSWER_CACHE_TTL_S", default=300)
    answer_wait_s: float = env("ANSWER_WAIT_S", default=20.0)
    # Each user's conversations (the REST API lists them; an ask in a conversation records it).
    conversations_table: str = env("CONVERSATIONS_TABLE", default="agentstream-conversations")
    history_max_turns: int = env("HISTORY_MAX_TURNS", default=20)
    history_max_chars: int = env("HISTORY_MAX_CHARS", default=100_000)
    # BACKEND=agentcore: the runtime and, optionally, its endpoint qualifier.
    agent_runtime_arn: str = env("AGENT_RUNTIME_ARN", default="")
    agent_runtime_qualifier: str = env("AGENT_RUNTIME_QUALIFIER", default="")
    # JWT: HS256 with a shared secret (from the environment or an SSM SecureString), or
    # RS256/ES256 against an OIDC issuer's JWKS (Amazon Cognito and friends).
    jwt_secret: str = env("JWT_SECRET", default="", secret=True)
    jwt_secret_parameter: str = env("JWT_SECRET_PARAMETER", default="")
    jwks_url: str = env("JWT_JWKS_URL", default="")
    jwt_issuer: str = env("JWT_ISSUER", default="")
    jwt_audience: Tuple[str, ...] = env("JWT_AUDIENCE", default=())
    jwt_leeway_s: int = env("JWT_LEEWAY_S", default=30)
    # Amazon Cognito's own claims (chalicelib/auth.py): the kind of token ("access" or "id"; empty:
    # not checked), the app clients it may be issued to (access tokens name theirs in `client_id`,
    # ID tokens in `aud`; empty: not checked) and a group the user must be in (`cognito:groups`).
    jwt_token_use: str = env("JWT_TOKEN_USE", default="")
    jwt_client_id: Tuple[str, ...] = env("JWT_CLIENT_ID", default=())
    jwt_required_group: str = env("JWT_REQUIRED_GROUP", default="")
    # Empty means "derive from the event's apiId, stage and region", as on AWS.
    management_endpoint_url: str = env("MANAGEMENT_ENDPOINT_URL", default="")
    # The WebSocket API's id, for what the REST API (/v1) sends through it: a turn asked over REST
    # and resumed on a socket, a REST cancel of a socket's turn. Its events carry the REST API's id.
    websocket_api_id: str = env("WEBSOCKET_API_ID", default="")
    # Relay coalescing: post at most once per interval unless a frame's worth is waiting.
    flush_interval_ms: int = env("FLUSH_INTERVAL_MS", default=50)
    max_frame_bytes: int = env("MAX_FRAME_BYTES", default=32 * 1024)
    # How often a running turn looks for cancel/resume requests, and saves its answer so far.
    control_interval_ms: int = env("CONTROL_INTERVAL_MS", default=500)
    checkpoint_interval_ms: int = env("CHECKPOINT_INTERVAL_MS", default=2000)
    # A running turn that has sent nothing for this long sends a `progress` event (0: never); it
    # also keeps the connection clear of API Gateway's 10-minute idle timeout.
    progress_interval_s: float = env("PROGRESS_INTERVAL_S", default=10.0)
    # Per-user token bucket, and a cap on one connection's turns in flight.
    rate_limits_table: str = env("RATE_LIMITS_TABLE", default="agentstream-rate-limits")
    rate_per_s: float = env("RATE_LIMIT_PER_S", default=0.5)
    rate_burst: int = env("RATE_LIMIT_BURST", default=10)
    max_turns_in_flight: int = env("MAX_TURNS_IN_FLIGHT", default=3)
    # ... and on all of one user's connections together, so one user cannot hold every worker.
    max_user_turns_in_flight: int = env("MAX_USER_TURNS_IN_FLIGHT", default=4)
    # Every other frame (ping, resume, cancel, return_control, invalid ones): at most this many
    # per connection and window, so floods cost neither DynamoDB reads nor replayed answers.
    frame_limit: int = env("FRAME_LIMIT", default=30)
    frame_window_s: int = env("FRAME_WINDOW_S", default=10)
    # Tokens (input + output, as the backend reports them) one user may use per UTC day and per
    # UTC month; past either, new turns are refused with `quota_exceeded` until it resets. 0: no limit.
    user_daily_token_budget: int = env("USER_DAILY_TOKEN_BUDGET", default=0)
    user_monthly_token_budget: int = env("USER_MONTHLY_TOKEN_BUDGET", default=0)
    # Attempts (first try included) botocore makes before an error reaches the app.
    bedrock_max_attempts: int = env("BEDROCK_MAX_ATTEMPTS", default=4)
    post_max_attempts: int = env("POST_MAX_ATTEMPTS", default=5)
    # The relay's own tries of one event (each one botocore's attempts), and its first pause,
    # before it closes a connection that keeps refusing the answer (its client then resumes).
    relay_post_attempts: int = env("RELAY_POST_ATTEMPTS", default=6)
    relay_retry_base_ms: int = env("RELAY_RETRY_BASE_MS", default=250)
    # One worker execution streams up to this many turns at once: its batch, then turns it takes
    # from the queue itself while a slot is free and at least WORKER_REFILL_RESERVE_S remain.
    worker_max_turns: int = env("WORKER_MAX_TURNS", default=10)
    worker_refill_reserve_s: int = env("WORKER_REFILL_RESERVE_S", default=600)
    # A record that could not start comes back after this many seconds, doubled per receive up to
    # the cap: a passing DynamoDB hiccup delays a turn by seconds, not by the visibility timeout.
    turn_retry_base_s: int = env("TURN_RETRY_BASE_S", default=2)
    turn_retry_max_s: int = env("TURN_RETRY_MAX_S", default=120)
    turn_ttl_s: int = env("TURN_TTL_S", default=7 * 24 * 3600)
    # The EventBridge bus (a name; "default" is the account's) each ended turn's TurnCompleted or
    # TurnFailed goes to, after its terminal event was posted. Empty: no turn events.
    turn_event_bus: str = env("TURN_EVENT_BUS", default="")
    # Documents (docs/documents.md): empty DOCUMENTS_BUCKET turns the feature off on a stage.
    documents_bucket: str = env("DOCUMENTS_BUCKET", default="")
    documents_table: str = env("DOCUMENTS_TABLE", default="agentstream-documents")
    document_pipeline_arn: str = env("DOCUMENT_PIPELINE_ARN", default="")
    # Where the pipeline ingests, and the one answers retrieve from (through the asker's owner filter).
    knowledge_base_id: str = env("KNOWLEDGE_BASE_ID", default="")
    # Seconds between the pipeline's GetIngestionJob calls (an ingestion takes tens of seconds on AWS).
    document_poll_s: int = env("DOCUMENT_POLL_S", default=10)
    max_upload_bytes: int = env("MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
    # How long a presigned upload stays usable.
    upload_url_ttl_s: int = env("UPLOAD_URL_TTL_S", default=300)
    log_content: bool = env("LOG_CONTENT", default=False)

    @property
    def heartbeat_timeout_ms(self) -> int:
        """A running turn whose last checkpoint is older than this has lost its worker."""
        return max(3 * self.checkpoint_interval_ms, 10 * self.control_interval_ms, 1000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """Every field from its variable; unset or empty variables keep the default."""
        values: Dict[str, Any] = {}
        for setting in fields(cls):
            raw = next((environ[name] for name in setting.metadata["env"] if environ.get(name)), None)
            if raw is not None:
                values[setting.name] = _PARSERS[str(setting.type)](raw)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse configurations that would run but be unsafe."""
        if self.stage != "local" and self.jwt_secret.startswith(DEV_JWT_SECRET_MARKER):
            raise SettingsError(
                f"stage {self.stage!r} is configured with the local development JWT secret; "
                "set JWT_SECRET_PARAMETER or JWT_JWKS_URL instead"
            )
        if self.backend not in BACKENDS:
            raise SettingsError(f"BACKEND must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.latency not in ("", "standard", "optimized"):
            raise SettingsError("LATENCY must be 'standard' or 'optimized'")
        if self.system_prompt and self.system_prompt_parameter:
            raise SettingsError("set SYSTEM_PROMPT (the prompt) or SYSTEM_PROMPT_PARAMETER (the SSM parameter that holds it), "
                                "not both")
        if self.jwks_url and not self.jwt_issuer:
            raise SettingsError("JWT_JWKS_URL needs JWT_ISSUER so tokens from other issuers are refused")
        if self.jwt_token_use not in ("", "access", "id"):
            raise SettingsError(f"JWT_TOKEN_USE must be 'access', 'id' or empty (not checked), not {self.jwt_token_use!r}")
        if self.jwt_token_use == "access" and self.jwt_audience:
            # Cognito access tokens have no `aud`: every one of them would be refused.
            raise SettingsError("JWT_TOKEN_USE=access: access tokens carry no 'aud' claim; name the app client in "
                                "JWT_CLIENT_ID and leave JWT_AUDIENCE empty")
        if not 0 <= self.answer_wait_s <= 25:  # the REST function's timeout; API Gateway's is 29 s
            raise SettingsError("ANSWER_WAIT_S must be 0 to 25 seconds, under the REST API's 29 s")
        if self.user_daily_token_budget < 0 or self.user_monthly_token_budget < 0:
            raise SettingsError("USER_DAILY_TOKEN_BUDGET and USER_MONTHLY_TOKEN_BUDGET must be 0 (no limit) or more")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The container's settings, read on first use (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()
