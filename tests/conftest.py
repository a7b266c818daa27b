"""Shared fixtures: moto-backed AWS, the fakes, a runtime wired to them, the Chalice test client."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test ever reaches real AWS: fake credentials, one region, no inherited endpoints."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def resources():
    from moto import mock_aws

    import boto3
    from devserver.resources import provision

    with mock_aws():
        yield provision(boto3.client("dynamodb"), boto3.client("sqs"))


@pytest.fixture
def management():
    from tests.support.fakes import FakeManagementApi

    return FakeManagementApi()


@pytest.fixture
def agent():
    from tests.support.fakes import FakeAgentRuntime

    return FakeAgentRuntime()


@pytest.fixture
def settings(resources):
    from chalicelib.settings import Settings
    from tests.support.tokens import SECRET

    return Settings(
        stage="local",
        connections_table=resources.connections_table,
        turns_table=resources.turns_table,
        rate_limits_table=resources.rate_limits_table,
        history_table=resources.history_table,
        conversations_table=resources.conversations_table,
        turn_queue_url=resources.turn_queue_url,
        agent_id="AGENT12345",
        agent_alias_id="ALIAS12345",
        jwt_secret=SECRET,
        flush_interval_ms=20,
        relay_retry_base_ms=1,
    )


@pytest.fixture
def runtime(settings, management, agent) -> Iterator:
    from chalicelib.runtime import Runtime, set_runtime
    from tests.support.fakes import FakeClients

    rt = Runtime(settings, FakeClients(settings, management, agent))
    set_runtime(rt)
    yield rt
    set_runtime(None)


@pytest.fixture
def client(runtime):
    from chalice.test import Client

    import app

    with Client(app.app, stage_name="dev", project_dir=str(ROOT)) as test_client:
        yield test_client


@pytest.fixture
def conn(client):
    """Connect a user on a connection id; returns a sender of frames on that connection."""
    import json

    from tests.support.events import ws_event
    from tests.support.tokens import make_token

    def _conn(connection_id="c1", user="alice"):
        client.lambda_.invoke("websocket_connect", ws_event("$connect", connection_id, query={"token": make_token(user)}))

        def send(**message):
            client.lambda_.invoke("websocket_message", ws_event("$default", connection_id, body=json.dumps(message)))

        return send

    return _conn
