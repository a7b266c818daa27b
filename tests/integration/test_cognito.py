"""`make run AUTH=cognito` end to end: moto's user pool signs RS256 tokens, the app checks them via the JWKS.

One extra stack for the module, started as `make run AUTH=cognito` starts it, with a group required
(JWT_REQUIRED_GROUP) so the group check is exercised over the wire too. Every refusal is a 401 at
the WebSocket handshake.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from devserver.cognito import LocalPool
from tests.support.stack import ROOT, Stack, answer_of, ask, assert_one_well_formed_turn, start_stack, stop_stack

pytestmark = pytest.mark.integration

GROUP = "chatters"


@pytest.fixture(scope="module")
def cognito_stack() -> Iterator[Stack]:
    started = start_stack(AUTH="cognito", JWT_REQUIRED_GROUP=GROUP)
    yield started
    stop_stack(started)


@pytest.fixture(scope="module")
def pool(cognito_stack: Stack) -> LocalPool:
    info = cognito_stack.info["cognito"]
    return LocalPool(info["endpoint"], info["region"], info["user_pool_id"], info["client_id"], info["required_group"])


def handshake_status(stack: Stack, token: str) -> int:
    """101 if the connection opens, else the status the handshake was refused with."""
    try:
        with stack.connect(token=token):
            pass
    except InvalidStatus as refused:
        return refused.response.status_code
    return 101


def streams(stack: Stack, token: str, prompt: str) -> None:
    with stack.connect(token=token) as ws:
        events = ask(ws, prompt)
    assert_one_well_formed_turn(events)
    assert events[-1]["type"] == "done" and answer_of(events) == f"You said: {prompt}"


def test_the_stack_is_configured_for_its_pool(cognito_stack: Stack, pool: LocalPool) -> None:
    assert cognito_stack.info["auth"] == "cognito" and pool.required_group == GROUP
    assert pool.jwks_url.startswith(cognito_stack.info["moto"] + "/")
    claims = jwt.decode(cognito_stack.info["token"], options={"verify_signature": False})
    assert jwt.get_unverified_header(cognito_stack.info["token"])["alg"] == "RS256"
    assert (claims["iss"], claims["token_use"], claims["client_id"]) == (pool.issuer, "access", pool.client_id)


def test_a_cognito_access_token_connects_and_a_turn_streams_to_done(cognito_stack: Stack, pool: LocalPool) -> None:
    streams(cognito_stack, pool.token("erin"), "hello from cognito")
    streams(cognito_stack, cognito_stack.info["token"], "and from alice")  # the one the banner prints


def test_an_id_token_is_refused_where_an_access_token_is_required(cognito_stack: Stack, pool: LocalPool) -> None:
    signed_in = pool.sign_in("frank")  # one sign-in: the same user, client and group; only the kind differs
    assert handshake_status(cognito_stack, signed_in["IdToken"]) == 401
    assert handshake_status(cognito_stack, signed_in["AccessToken"]) == 101


def test_a_token_of_another_app_client_is_refused(cognito_stack: Stack, pool: LocalPool) -> None:
    other_client = pool.create_app_client("another-app")
    assert handshake_status(cognito_stack, pool.sign_in("grace", client_id=other_client)["AccessToken"]) == 401
    assert handshake_status(cognito_stack, pool.sign_in("grace")["AccessToken"]) == 101


def test_a_user_outside_the_required_group_is_refused(cognito_stack: Stack, pool: LocalPool) -> None:
    assert handshake_status(cognito_stack, pool.sign_in("heidi", join_group=False)["AccessToken"]) == 401
    assert handshake_status(cognito_stack, pool.token("heidi")) == 101  # token() adds heidi to the group


def test_development_tokens_are_refused(cognito_stack: Stack) -> None:
    """AUTH=cognito drops the HS256 secret start_stack passed: only the pool's tokens get in."""
    assert handshake_status(cognito_stack, cognito_stack.token("alice")) == 401


def test_make_token_prints_a_token_the_stack_accepts(cognito_stack: Stack, tmp_path: Path) -> None:
    stamp = tmp_path / "installed"  # newer than the requirements: `make install` has nothing to do
    stamp.touch()
    result = subprocess.run(
        ["make", "-s", "token", "AUTH=cognito", f"PORT={cognito_stack.info['port']}", "user=ivan",
         f"BIN={Path(sys.executable).parent}", f"STAMP={stamp}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert jwt.decode(token, options={"verify_signature": False})["username"] == "ivan"
    streams(cognito_stack, token, "hello from make token")
