"""AWS clients, created lazily in one place.

boto3 is imported on first use, not at module import, so a handler pays only for the clients it
touches. Endpoints follow botocore's standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which is
how tests and the local stack point the unchanged app at moto and the emulators; the management
API's endpoint comes from the event (or ``MANAGEMENT_ENDPOINT_URL``).
"""
from __future__ import annotations

import threading
import time
from functools import cached_property
from typing import Any, Callable, Dict, Optional

from chalicelib.logs import logger
from chalicelib.settings import Settings


def management_endpoint(settings: Settings, api_id: str, stage: str) -> str:
    """The @connections endpoint of the API that owns a connection."""
    if settings.management_endpoint_url:
        return settings.management_endpoint_url.rstrip("/")
    suffix = "amazonaws.com.cn" if settings.region.startswith("cn-") else "amazonaws.com"
    return f"https://{api_id}.execute-api.{settings.region}.{suffix}/{stage}"


class AwsClients:
    """One boto3 session and the clients the app uses, each built on first access."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._management: Dict[str, Any] = {}

    @property
    def _pool_size(self) -> int:
        """A worker streams many turns at once, each holding a Bedrock stream and posting while its
        watcher reads DynamoDB: with botocore's default pool of 10 they would wait or reconnect."""
        return max(10, 2 * self._settings.worker_max_turns + 2)

    @cached_property
    def session(self) -> Any:
        import boto3

        return boto3.session.Session(region_name=self._settings.region)

    def _client(self, service: str, **config: Any) -> Any:
        from botocore.config import Config

        defaults = {"retries": {"mode": "standard", "max_attempts": 3}, "tcp_keepalive": True,
                    "max_pool_connections": self._pool_size}
        defaults.update(config)
        with self._lock:  # boto3 sessions are not thread-safe while creating clients
            return self.session.client(service, config=Config(**defaults))

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb", connect_timeout=2, read_timeout=5)

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs", connect_timeout=2, read_timeout=5)

    @cached_property
    def ssm(self) -> Any:
        return self._client("ssm", connect_timeout=2, read_timeout=5)

    def parameter(self, name: str) -> str:
        """An SSM parameter's value (a SecureString decrypted): the one place the app reads SSM."""
        return str(self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])

    @cached_property
    def events(self) -> Any:
        """EventBridge (turn events); its endpoint variable is ``AWS_ENDPOINT_URL_EVENTBRIDGE``."""
        return self._client("events", connect_timeout=2, read_timeout=5)

    @cached_property
    def s3(self) -> Any:
        """S3 (documents): SigV4, which presigned POSTs need, and a regional endpoint."""
        return self._client("s3", connect_timeout=2, read_timeout=30, signature_version="s3v4")

    @cached_property
    def stepfunctions(self) -> Any:
        """Step Functions (the document pipeline); its endpoint variable is ``AWS_ENDPOINT_URL_SFN``."""
        return self._client("stepfunctions", connect_timeout=2, read_timeout=5)

    @cached_property
    def bedrock_agent_runtime(self) -> Any:
        # An agent may think (call tools, search knowledge bases) for minutes between events.
        # Throttling before the stream is retried by botocore: exponential backoff with jitter.
        retries = {"mode": "standard", "max_attempts": self._settings.bedrock_max_attempts}
        return self._client("bedrock-agent-runtime", connect_timeout=5, read_timeout=600, retries=retries)

    @cached_property
    def bedrock_runtime(self) -> Any:
        retries = {"mode": "standard", "max_attempts": self._settings.bedrock_max_attempts}
        return self._client("bedrock-runtime", connect_timeout=5, read_timeout=600, retries=retries)

    @cached_property
    def bedrock_agentcore(self) -> Any:
        retries = {"mode": "standard", "max_attempts": self._settings.bedrock_max_attempts}
        return self._client("bedrock-agentcore", connect_timeout=5, read_timeout=900, retries=retries)

    def management(self, endpoint_url: str) -> Any:
        """The API Gateway management client for one API's @connections endpoint."""
        client = self._management.get(endpoint_url)
        if client is None:
            from botocore.config import Config

            with self._lock:
                client = self.session.client(
                    "apigatewaymanagementapi",
                    endpoint_url=endpoint_url,
                    config=Config(
                        # LimitExceededException (the client's buffer is full) is a throttling
                        # error to botocore: retried with backoff and jitter. Gone is final.
                        retries={"mode": "standard", "max_attempts": self._settings.post_max_attempts},
                        connect_timeout=2,
                        read_timeout=5,
                        tcp_keepalive=True,
                        max_pool_connections=self._pool_size,
                    ),
                )
                self._management[endpoint_url] = client
        return client


class CachedParameter:
    """An SSM parameter's value, read on first use and again once older than ``max_age_s``.

    Settings too large for a Lambda function's 4 KB environment (the system prompt) live in SSM;
    the environment names them. Every turn asks, so this reads SSM once per container and age,
    not per turn. A read that fails raises while nothing was read yet; after that a failed
    refresh keeps the value read before (and logs), so a passing SSM fault never fails turns
    that worked a moment ago.
    """

    def __init__(self, read: Callable[[], str], max_age_s: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()  # a worker's turns run in threads: one read at a time
        self._value: Optional[str] = None
        self._read_at = 0.0

    def get(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            now = self._clock()
            if self._value is not None and (self._max_age_s is None or now - self._read_at < self._max_age_s):
                return self._value
            try:
                value = self._read()
            except (BotoCoreError, ClientError):
                if self._value is None:
                    raise
                logger.warning("could not refresh an SSM parameter; keeping the value read before", exc_info=True)
                self._read_at = now  # try again after another max_age_s, not on every turn
                return self._value
            self._value, self._read_at = value, now
            return value
