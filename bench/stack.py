"""The services the three relays share: DynamoDB and SQS (moto), an agent and an API Gateway.

moto's server runs in its own process (so its request handling never steals the emulators' time);
the Bedrock emulator (recording) and the API Gateway emulator run here, on 127.0.0.1 only. The
API Gateway emulator is given no handlers: it accepts every connection and serves the management
API, and the bench invokes the app's handlers itself (in the worker and probe processes), exactly
as Lambda would, with API Gateway-shaped events that name these real connections.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from devserver.stack import LOCAL_HOST, free_port

from bench.agent import RecordingBedrock

ROOT = Path(__file__).resolve().parent.parent
AGENT_ID = "BENCHAGENT"
AGENT_ALIAS_ID = "BENCHALIAS"
REGION = "us-east-1"
JWT_SECRET = "bench-only-secret-0123456789abcdef0123456789"
# Environment variables that could point a subprocess at a real account or another stack.
_FOREIGN = ("AWS_", "AGENT_", "JWT_", "MANAGEMENT_ENDPOINT_URL", "POWERTOOLS_", "BACKEND")


def clean_env(**extra: str) -> Dict[str, str]:
    """This process's environment without AWS credentials, endpoints or app settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class MotoServer:
    """moto's server (DynamoDB and SQS) in a subprocess, provisioned from ``infra/data.json``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://{LOCAL_HOST}:{self.port}"
        self._process: Optional[subprocess.Popen] = None
        self.resources: Any = None

    def start(self) -> "MotoServer":
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOCAL_HOST, "-p", str(self.port)],
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError("moto server did not start")
                time.sleep(0.1)
        import boto3

        from devserver.resources import provision

        kwargs = dict(endpoint_url=self.url, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench")
        self.dynamodb = boto3.client("dynamodb", **kwargs)
        self.sqs = boto3.client("sqs", **kwargs)
        self.resources = provision(self.dynamodb, self.sqs, prefix="bench")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class _NoHandlers:
    """An app without websocket handlers: API Gateway accepts every connection, routes nothing."""


@dataclass
class Edge:
    """One agent and one API Gateway with the workload's timings."""

    first_token_delay: float
    chunk_delay: float
    post_latency: float

    def start(self) -> "Edge":
        from devserver.apigw import ApiGatewayEmulator

        self.bedrock = RecordingBedrock(
            LOCAL_HOST, 0, first_token_delay=self.first_token_delay, chunk_delay=self.chunk_delay
        ).start()
        options: Dict[str, Any] = {}
        if "keep_messages" in inspect.signature(ApiGatewayEmulator).parameters:
            options["keep_messages"] = False  # the clients record what arrives; sizes are enough here
        self.gateway = ApiGatewayEmulator(
            _NoHandlers(), host=LOCAL_HOST, port=0, stage="local", post_latency=self.post_latency, **options
        ).start()
        return self

    def stop(self) -> None:
        self.gateway.stop()
        self.bedrock.stop()

    def connection_id(self, tag: str, timeout: float = 5.0) -> str:
        """The id API Gateway gave the open connection made with ``?bench=<tag>``."""
        return self.find_connection(self.gateway, tag, timeout)

    @staticmethod
    def find_connection(gateway: Any, tag: str, timeout: float = 5.0) -> str:
        from devserver.apigw.connection import State

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for connection_id, conn in gateway.connections.items():
                if conn.request.query.get("bench") == tag and conn.state is State.OPEN:
                    return connection_id
            time.sleep(0.002)
        raise TimeoutError(f"connection {tag} never opened")

    def app_env(self, moto: MotoServer, **extra: str) -> Dict[str, str]:
        """The environment a Lambda function of the app gets, pointed at this edge and ``moto``."""
        return clean_env(
            STAGE="local",
            JWT_SECRET=JWT_SECRET,
            AGENT_ID=AGENT_ID,
            AGENT_ALIAS_ID=AGENT_ALIAS_ID,
            AWS_ENDPOINT_URL_DYNAMODB=moto.url,
            AWS_ENDPOINT_URL_SQS=moto.url,
            AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME=self.bedrock.url,
            MANAGEMENT_ENDPOINT_URL=self.gateway.management_url,
            # One bench user asks many times: keep the per-user limits out of the way.
            RATE_LIMIT_PER_S="1000",
            RATE_LIMIT_BURST="100000",
            MAX_TURNS_IN_FLIGHT="1000",
            **moto.resources.env(),
            **extra,
        )
