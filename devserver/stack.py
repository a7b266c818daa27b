"""The whole local stack in one process, running the app's own code unchanged.

moto's server plays DynamoDB and SQS (provisioned from ``infra/data.json``) and EventBridge (turn
events, which a rule sends on to a queue tests read), the Bedrock emulator plays InvokeAgent and
ConverseStream, the API Gateway emulator serves the WebSocket, the REST API (``/local/v1/...``) and
the management API, and a poller plays Lambda's SQS event source. The app reaches all of them the way
it reaches AWS: through boto3, pointed here by the standard ``AWS_ENDPOINT_URL_<SERVICE>``
variables (and ``MANAGEMENT_ENDPOINT_URL``). Everything binds to 127.0.0.1. Tokens are HS256
development tokens, or with ``AUTH=cognito`` those of a user pool in the same moto server, checked
through its JWKS as on AWS (``devserver/cognito.py``), and a stand-in for its hosted UI that the
chat page signs in through (``devserver/hosted_ui.py``, served to the page by its ``config.json``).
"""
from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from devserver.cognito import LocalPool, create_pool, state_file
from devserver.hosted_ui import HostedUi
from devserver.tokens import issue_token, local_secret
from infra.page import CONFIG_KEY, config_document

LOCAL_HOST = "127.0.0.1"
AUTH_MODES = ("dev", "cognito")  # AUTH: HS256 development tokens, or Cognito's RS256 tokens via moto
LOCAL_RUNTIME_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/local_echo-0000000000"
ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("devserver")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


@dataclass
class StackConfig:
    """Every knob of the local stack; each is set by the environment variable of its name in capitals."""

    port: int = 8000  # PORT
    integration_timeout_s: float = 29.0  # INTEGRATION_TIMEOUT_S
    idle_timeout_s: float = 600.0  # IDLE_TIMEOUT_S
    max_connection_s: float = 7200.0  # MAX_CONNECTION_S
    post_latency_s: float = 0.0  # POST_LATENCY_S
    visibility_timeout_s: int = 60  # VISIBILITY_TIMEOUT_S (AWS: 6 x the worker timeout)
    worker_concurrency: int = 8  # WORKER_CONCURRENCY (the event source's maximum concurrency)
    first_token_delay_s: float = 0.0  # FIRST_TOKEN_DELAY_S (Bedrock emulator)
    chunk_delay_s: float = 0.02  # CHUNK_DELAY_S (Bedrock emulator)
    ingestion_delay_s: float = 1.5  # INGESTION_DELAY_S (Bedrock emulator: how long a knowledge base sync takes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "StackConfig":
        values: Dict[str, Any] = {}
        for field in fields(cls):
            raw = env.get(field.name.upper())
            if raw:
                values[field.name] = int(raw) if field.type == "int" else float(raw)
        return cls(**values)


class LocalStack:
    """Start with ``start()``; ``stop()`` ends everything it started."""

    def __init__(self, config: StackConfig, env: Optional[Dict[str, str]] = None) -> None:
        self.config = config
        self.env = env if env is not None else os.environ  # the process environment the app reads
        # Real Bedrock when the chosen backend's target is configured (and credentials exist).
        target = {"agent": ("AGENT_ID", "AGENT_ALIAS_ID"), "converse": ("MODEL_ID",), "agentcore": ("AGENT_RUNTIME_ARN",)}
        self.backend = self.env.get("BACKEND", "agent")
        self.use_real_bedrock = all(self.env.get(name) for name in target.get(self.backend, ("-",)))
        self._started: list = []
        self.auth = self.env.get("AUTH") or "dev"
        if self.auth not in AUTH_MODES:
            raise ValueError(f"AUTH must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}")
        self.secret = ""
        self.cognito: Optional[LocalPool] = None
        self.hosted_ui: Optional[HostedUi] = None

    def start(self) -> "LocalStack":
        import boto3

        env = self.env
        if not self.use_real_bedrock:
            # Dummy credentials: nothing here may reach a real account by accident.
            env.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
            env.pop("AWS_SESSION_TOKEN", None)
            env.pop("AWS_PROFILE", None)
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        env.setdefault("AWS_REGION", env["AWS_DEFAULT_REGION"])

        region = env["AWS_REGION"]
        stage = env.setdefault("STAGE", "local")

        from devserver.lambda_api import LambdaApi, configured_timeouts
        from devserver.moto_server import MotoServer
        from infra.stack import function_name

        # Lambda's Invoke API for the app's functions (the document pipeline's tasks): up first, since
        # the moto server, where the state machine runs, forwards to it; it serves once the app is imported.
        self.lambda_api = LambdaApi(LOCAL_HOST, name_prefix=function_name(stage, ""), region=region,
                                    timeouts=configured_timeouts()).start()
        self._started.append(self.lambda_api)
        bedrock_port = 0 if self.use_real_bedrock else free_port()
        moto = MotoServer(LOCAL_HOST, free_port(), lambda_url=self.lambda_api.url,
                          bedrock_url=f"http://{LOCAL_HOST}:{bedrock_port}" if bedrock_port else "").start()
        self._started.append(moto)
        self.moto = moto
        moto_url = moto.url
        env["AWS_ENDPOINT_URL_DYNAMODB"] = moto_url
        env["AWS_ENDPOINT_URL_SQS"] = moto_url
        env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = moto_url
        env["AWS_ENDPOINT_URL_S3"] = moto_url  # documents, and the knowledge base's data source
        env["AWS_ENDPOINT_URL_SFN"] = moto_url  # the document pipeline (moto runs its executions)
        env["AWS_ENDPOINT_URL_SNS"] = moto_url

        from devserver.resources import provision, subscribe_turn_events

        dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=region)
        sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=region)
        self.resources = provision(dynamodb, sqs, visibility_timeout=self.config.visibility_timeout_s)
        env.update(self.resources.env())
        # Turn events go to moto's EventBridge, where a rule sends them to a queue (TURN_EVENT_BUS= turns them off).
        bus = env.setdefault("TURN_EVENT_BUS", "default")
        events = boto3.client("events", endpoint_url=moto_url, region_name=region)
        self.turn_events_queue_url = subscribe_turn_events(events, sqs, bus) if bus else None

        from devserver.bedrock.knowledge import LOCAL_DATA_SOURCE_ID, LOCAL_DOCUMENTS_BUCKET, LOCAL_KNOWLEDGE_BASE_ID

        documents_bucket = env.setdefault("DOCUMENTS_BUCKET", LOCAL_DOCUMENTS_BUCKET)
        if not self.use_real_bedrock:
            from devserver.bedrock import BedrockEmulator, KnowledgeBaseConfig

            # One knowledge base whose S3 data source (DOCUMENTS_BUCKET, prefix kb/) is in moto.
            knowledge_base = KnowledgeBaseConfig(
                moto_url, bucket=documents_bucket, region=region, ingestion_delay=self.config.ingestion_delay_s,
            )
            bedrock = BedrockEmulator(
                LOCAL_HOST,
                bedrock_port,
                first_token_delay=self.config.first_token_delay_s,
                chunk_delay=self.config.chunk_delay_s,
                knowledge_base=knowledge_base,
            ).start()
            self._started.append(bedrock)
            for service in ("BEDROCK_AGENT_RUNTIME", "BEDROCK_RUNTIME", "BEDROCK_AGENTCORE", "BEDROCK_AGENT"):
                env[f"AWS_ENDPOINT_URL_{service}"] = bedrock.url
            env.setdefault("KNOWLEDGE_BASE_ID", knowledge_base.knowledge_base_id)
            env.setdefault("KNOWLEDGE_BASE_DATA_SOURCE_ID", knowledge_base.data_source_id)
            env.setdefault("AGENT_ID", "LOCALAGENT")
            env.setdefault("AGENT_ALIAS_ID", "LOCALALIAS")
            env.setdefault("MODEL_ID", "local.echo-model")
            env.setdefault("AGENT_RUNTIME_ARN", LOCAL_RUNTIME_ARN)
            self.bedrock = bedrock

        # The document pipeline (docs/documents.md): bucket, queues, table, topic and the state machine
        # from infra/documents.asl.json, which the moto server runs (the knowledge base: the emulator's;
        # with real Bedrock its ingestion steps have nowhere to go and fail).
        from botocore.config import Config

        from devserver.documents import provision_documents

        path_style = Config(s3={"addressing_style": "path"})
        self.documents = provision_documents(
            lambda service: boto3.client(service, endpoint_url=moto_url, region_name=region, config=path_style),
            bucket=documents_bucket, stage=stage, region=region,
            knowledge_base_id=env.get("KNOWLEDGE_BASE_ID") or LOCAL_KNOWLEDGE_BASE_ID,
            data_source_id=env.get("KNOWLEDGE_BASE_DATA_SOURCE_ID") or LOCAL_DATA_SOURCE_ID,
        )
        env.update(self.documents.env())
        env.setdefault("DOCUMENT_POLL_S", "1")  # seconds between GetIngestionJob calls (an emulated sync: INGESTION_DELAY_S)

        if self.auth == "cognito":
            # Only the pool's RS256 tokens, verified through its JWKS as on AWS: no HS256 secret at all.
            self.cognito = create_pool(moto_url, region, env.get("JWT_REQUIRED_GROUP", ""))
            for name in ("JWT_SECRET", "JWT_SECRET_PARAMETER", "JWT_AUDIENCE"):
                env.pop(name, None)
            env.update(self.cognito.app_env(env.get("JWT_TOKEN_USE") or "access"))
        else:
            self.secret = local_secret()
            env.setdefault("JWT_SECRET", self.secret)

        from devserver.apigw import ApiGatewayEmulator

        port = self.config.port or free_port()
        static = ROOT / "client" / "web"
        # The management endpoint is known before the emulator starts: same host, port and stage.
        env["MANAGEMENT_ENDPOINT_URL"] = f"http://{LOCAL_HOST}:{port}/local"

        import app as app_module  # imported only now: the app reads its settings from env

        self.app = app_module.app
        gateway = ApiGatewayEmulator(
            self.app,
            host=LOCAL_HOST,
            port=port,
            stage="local",
            integration_timeout=self.config.integration_timeout_s,
            idle_timeout=self.config.idle_timeout_s,
            max_connection_duration=self.config.max_connection_s,
            post_latency=self.config.post_latency_s,
            static_dir=str(static) if static.is_dir() else None,
        ).start()
        self._started.append(gateway)
        self.gateway = gateway
        if self.cognito is not None:  # for `make token AUTH=cognito PORT=...`; removed when the stack stops
            self._started.append(self.cognito.save(state_file(gateway.port)))
            self._serve_sign_in(gateway)

        from devserver.poller import SqsPoller

        # The batch size is the app's own event source setting (TURN_WORKER_BATCH_SIZE), as Lambda reads it.
        from chalice.app import SQSEventConfig

        (source,) = [s for s in self.app.event_sources if isinstance(s, SQSEventConfig) and s.name == "turn_worker"]
        poller = SqsPoller(
            sqs,
            self.resources.turn_queue_url,
            self.app.handler_map["turn_worker"],
            batch_size=source.batch_size,
            max_concurrency=self.config.worker_concurrency,
            region=region,
        ).start()
        self._started.append(poller)
        self.poller = poller

        # The document pipeline's functions: its tasks through the Lambda API, the uploads queue and the
        # topic through pollers (each only once the app has the function).
        from devserver.documents import document_pollers
        from devserver.lambda_api import app_functions

        self.lambda_api.serve(app_functions(self.app))
        self.document_pollers = document_pollers(self.app, sqs, self.documents, region=region,
                                                 timeouts=self.lambda_api.timeouts)
        for document_poller in self.document_pollers:
            self._started.append(document_poller.start())

        from devserver.control import ControlServer

        self.control = ControlServer(LOCAL_HOST, self.apply_faults, self.poller.stats).start()
        self._started.append(self.control)
        return self

    def _serve_sign_in(self, gateway: Any) -> None:
        """The hosted UI stand-in (devserver/hosted_ui.py) and the page's ``config.json`` naming it.

        The page (client/web/) signs in through it with the authorization code flow and PKCE, as it
        does through Cognito's hosted UI once deployed; its URL is the one callback and sign-out URL.
        """
        assert self.cognito is not None
        page = f"http://{LOCAL_HOST}:{gateway.port}/"
        ttl = self.env.get("HOSTED_UI_TOKEN_TTL_S")
        self.hosted_ui = HostedUi(self.cognito, [page], LOCAL_HOST, auto_user=self.env.get("HOSTED_UI_USER", ""),
                                  token_ttl_s=int(ttl) if ttl else None).start()
        self._started.append(self.hosted_ui)
        config = config_document(gateway.ws_url, self.cognito.region, self.hosted_ui.url, self.cognito.client_id,
                                 rest_url=gateway.rest_url)
        gateway.generated_files[CONFIG_KEY] = json.dumps(config).encode()

    def apply_faults(self, faults: Dict[str, Any]) -> Dict[str, Any]:
        """Inject the faults ``devserver/control.py`` documents; answers what was applied."""
        known = {"fail_posts", "status", "error", "connection", "throttle_dynamodb", "matching", "kill_worker_after_s",
                 "kill_turn", "kill_worker", "drop"}
        unknown = set(faults) - known
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        if "fail_posts" in faults:
            self.gateway.faults.fail_next_posts(
                int(faults["fail_posts"]),
                status=int(faults.get("status", 429)),
                error=str(faults.get("error", "LimitExceededException")),
                connection_id=faults.get("connection"),
            )
        if "throttle_dynamodb" in faults:
            self.moto.throttle_dynamodb(int(faults["throttle_dynamodb"]), str(faults.get("matching") or ""))
        if "kill_worker_after_s" in faults:
            self.poller.kill_next_invocation(float(faults["kill_worker_after_s"]), str(faults.get("kill_turn") or ""))
        killed = self.poller.kill_now() if faults.get("kill_worker") else None
        if "drop" in faults:
            self.gateway.drop(str(faults["drop"]))
        return {"applied": sorted(faults), **({} if killed is None else {"killed": killed})}

    def stop(self) -> None:
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - stop the rest regardless
                log.exception("could not stop %s", type(part).__name__)

    def describe(self) -> Dict[str, Any]:
        """What a client or a test needs to talk to the stack."""
        return {
            "url": self.gateway.ws_url,
            "port": self.gateway.port,
            "management_url": self.gateway.management_url,
            "rest_url": self.gateway.rest_url,
            "bedrock": "real" if self.use_real_bedrock else self.bedrock.url,
            "queue_url": self.resources.turn_queue_url,
            "worker": {"batch_size": self.poller.batch_size, "max_concurrency": self.config.worker_concurrency},
            "dead_letter_queue_url": self.resources.dead_letter_queue_url,
            "dynamodb": self.env["AWS_ENDPOINT_URL_DYNAMODB"],
            "moto": self.moto.url,
            "turn_events_queue_url": self.turn_events_queue_url,
            "documents": {
                "bucket": self.documents.bucket,
                "table": self.documents.table,
                "uploads_queue_url": self.documents.uploads_queue_url,
                "topic_arn": self.documents.topic_arn,
                "notices_queue_url": self.documents.notices_queue_url,
                "state_machine_arn": self.documents.state_machine_arn,
                "lambda_url": self.lambda_api.url,
            },
            "control_url": self.control.url,
            "auth": self.auth,
            **({} if self.cognito is None else {"cognito": {**asdict(self.cognito), "issuer": self.cognito.issuer,
                                                           "jwks_url": self.cognito.jwks_url,
                                                           "hosted_ui": self.hosted_ui.url if self.hosted_ui else ""}}),
            "token": self.cognito.token("alice") if self.cognito else issue_token("alice", self.secret),
        }

    def _auth_arg(self) -> str:
        """What `make token` / `make chat` need to reach this stack's pool ("" for development tokens)."""
        if self.cognito is None:
            return ""
        return "AUTH=cognito " + ("" if self.gateway.port == 8000 else f"PORT={self.gateway.port} ")

    def _sign_in_lines(self) -> List[str]:
        pool = self.cognito
        if pool is None:
            return []
        group = f", group {pool.required_group} required" if pool.required_group else ""
        return [f"  sign-in     Cognito (moto) pool {pool.user_pool_id}, app client {pool.client_id}, "
                f"{self.env.get('JWT_TOKEN_USE')} tokens{group}"]

    def banner(self) -> str:
        info = self.describe()
        return "\n".join(
            [
                "agentstream local stack is up (Ctrl-C stops everything)",
                f"  WebSocket   {info['url']}",
                f"  REST        {info['rest_url']}/v1/turns   (Authorization: Bearer <token>)",
                f"  Bedrock     {info['bedrock']}   (BACKEND={self.backend})",
                f"  DynamoDB    {info['dynamodb']}   SQS {info['queue_url']}",
                f"  turn events {info['turn_events_queue_url'] or 'off (TURN_EVENT_BUS is empty)'}",
                f"  documents   s3://{self.documents.bucket}   pipeline {self.documents.state_machine_arn}",
                f"  token       {info['token']}   (user alice; `make token {self._auth_arg()}user=NAME` for others)",
                *self._sign_in_lines(),
                f"  web page    http://{LOCAL_HOST}:{info['port']}/"
                + ("   (Sign in: the local hosted UI stand-in, any user name)" if self.cognito else f"#token={info['token']}"),
                f"  chat        make chat {self._auth_arg()}     (or: wscat -c '{info['url']}?token={info['token']}')",
                "  try         {\"prompt\": \"hello\"}   {\"prompt\": \"!slow 40 a long answer\"}",
                "READY " + json.dumps(info),
            ]
        )
