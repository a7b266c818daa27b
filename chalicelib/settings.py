"""Typed settings, read from the environment once per Lambda container.

Every knob the app has lives here, so a reader sees the whole configuration surface in one place
and tests build a ``Settings`` directly instead of patching the environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Optional, Tuple, TypeVar

T = TypeVar("T")

# A little past API Gateway's 2-hour maximum connection duration, so a record whose
# $disconnect never ran still disappears on its own.
CONNECTION_TTL_S = 2 * 3600 + 300
# The local development secret; a deployed stage refuses to start with it.
DEV_JWT_SECRET_MARKER = "agentstream-local-dev-"
BACKENDS = ("agent", "converse", "agentcore")


class SettingsError(RuntimeError):
    """The environment does not describe a runnable app (a deploy mistake, not a client one)."""


def _flag(value: Optional[str], default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _optional(kind: Callable[[str], T], value: Optional[str]) -> Optional[T]:
    return kind(value) if value not in (None, "") else None


def _csv(value: Optional[str]) -> Tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    region: str = "us-east-1"
    connections_table: str = "agentstream-connections"
    turns_table: str = "agentstream-turns"
    turn_queue_url: str = ""
    backend: str = "agent"  # agent (InvokeAgent) | converse (ConverseStream) | agentcore (InvokeAgentRuntime)
    agent_id: str = ""
    agent_alias_id: str = ""
    agent_memory: bool = False
    # BACKEND=converse: the model, its settings, and the server-side history's bounds.
    model_id: str = ""
    system_prompt: str = ""
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    latency: str = ""
    history_table: str = "agentstream-history"
    history_max_turns: int = 20
    history_max_chars: int = 100_000
    # BACKEND=agentcore: the runtime and, optionally, its endpoint qualifier.
    agent_runtime_arn: str = ""
    agent_runtime_qualifier: str = ""
    # JWT: HS256 with a shared secret (from the environment or an SSM SecureString), or
    # RS256/ES256 against an OIDC issuer's JWKS (Amazon Cognito and friends).
    jwt_secret: str = field(default="", repr=False)
    jwt_secret_parameter: str = ""
    jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: Tuple[str, ...] = ()
    jwt_leeway_s: int = 30
    # Empty means "derive from the event's apiId, stage and region", as on AWS.
    management_endpoint_url: str = ""
    # Relay coalescing: post at most once per interval unless a frame's worth is waiting.
    flush_interval_ms: int = 50
    max_frame_bytes: int = 32 * 1024
    # How often a running turn looks for cancel/resume requests, and saves its answer so far.
    control_interval_ms: int = 500
    checkpoint_interval_ms: int = 2000
    # Per-user token bucket, and a cap on one connection's turns in flight.
    rate_limits_table: str = "agentstream-rate-limits"
    rate_per_s: float = 0.5
    rate_burst: int = 10
    max_turns_in_flight: int = 3
    # Attempts (first try included) botocore makes before an error reaches the app.
    bedrock_max_attempts: int = 4
    post_max_attempts: int = 5
    turn_ttl_s: int = 7 * 24 * 3600
    log_content: bool = False

    @property
    def heartbeat_timeout_ms(self) -> int:
        """A running turn whose last checkpoint is older than this has lost its worker."""
        return max(3 * self.checkpoint_interval_ms, 10 * self.control_interval_ms, 1000)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        get = env.get
        settings = cls(
            stage=get("STAGE", "local"),
            region=get("AWS_REGION") or get("AWS_DEFAULT_REGION") or "us-east-1",
            connections_table=get("CONNECTIONS_TABLE", cls.connections_table),
            turns_table=get("TURNS_TABLE", cls.turns_table),
            turn_queue_url=get("TURN_QUEUE_URL", ""),
            backend=get("BACKEND", "agent"),
            agent_id=get("AGENT_ID", ""),
            agent_alias_id=get("AGENT_ALIAS_ID", ""),
            agent_memory=_flag(get("AGENT_MEMORY")),
            model_id=get("MODEL_ID", ""),
            system_prompt=get("SYSTEM_PROMPT", ""),
            max_tokens=_optional(int, get("MAX_TOKENS")),
            temperature=_optional(float, get("TEMPERATURE")),
            top_p=_optional(float, get("TOP_P")),
            latency=get("LATENCY", ""),
            history_table=get("HISTORY_TABLE", cls.history_table),
            history_max_turns=int(get("HISTORY_MAX_TURNS", "20")),
            history_max_chars=int(get("HISTORY_MAX_CHARS", "100000")),
            agent_runtime_arn=get("AGENT_RUNTIME_ARN", ""),
            agent_runtime_qualifier=get("AGENT_RUNTIME_QUALIFIER", ""),
            jwt_secret=get("JWT_SECRET", ""),
            jwt_secret_parameter=get("JWT_SECRET_PARAMETER", ""),
            jwks_url=get("JWT_JWKS_URL", ""),
            jwt_issuer=get("JWT_ISSUER", ""),
            jwt_audience=_csv(get("JWT_AUDIENCE")),
            jwt_leeway_s=int(get("JWT_LEEWAY_S", "30")),
            management_endpoint_url=get("MANAGEMENT_ENDPOINT_URL", ""),
            flush_interval_ms=int(get("FLUSH_INTERVAL_MS", "50")),
            max_frame_bytes=int(get("MAX_FRAME_BYTES", str(32 * 1024))),
            control_interval_ms=int(get("CONTROL_INTERVAL_MS", "500")),
            checkpoint_interval_ms=int(get("CHECKPOINT_INTERVAL_MS", "2000")),
            rate_limits_table=get("RATE_LIMITS_TABLE", cls.rate_limits_table),
            rate_per_s=float(get("RATE_LIMIT_PER_S", "0.5")),
            rate_burst=int(get("RATE_LIMIT_BURST", "10")),
            max_turns_in_flight=int(get("MAX_TURNS_IN_FLIGHT", "3")),
            bedrock_max_attempts=int(get("BEDROCK_MAX_ATTEMPTS", "4")),
            post_max_attempts=int(get("POST_MAX_ATTEMPTS", "5")),
            turn_ttl_s=int(get("TURN_TTL_S", str(7 * 24 * 3600))),
            log_content=_flag(get("LOG_CONTENT")),
        )
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
        if self.jwks_url and not self.jwt_issuer:
            raise SettingsError("JWT_JWKS_URL needs JWT_ISSUER so tokens from other issuers are refused")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The container's settings, read on first use (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()
