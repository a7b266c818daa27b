"""The local Cognito (devserver/cognito.py) against moto's server, checked by the app's own verifier.

What `make run AUTH=cognito` relies on: moto's tokens carry the issuer the app is configured with,
the JWKS URL on loopback serves the key they are signed with, and an access token passes the checks
a deployed Cognito stage makes while an ID token, another client's token or a token without the
group does not.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from chalicelib.auth import AuthError, TokenVerifier
from chalicelib.settings import Settings
from devserver import tokens
from devserver.cognito import LocalPool, create_pool, state_file
from devserver.moto_server import MotoServer
from devserver.stack import free_port

GROUP = "chatters"


@pytest.fixture(scope="module")
def pool() -> Iterator[LocalPool]:
    moto = MotoServer("127.0.0.1", free_port()).start()
    try:
        yield create_pool(moto.url, "eu-west-1", required_group=GROUP)
    finally:
        moto.stop()


def verifier(pool: LocalPool) -> TokenVerifier:
    """The app's verifier configured as the local stack configures it (no HS256 secret)."""
    return TokenVerifier(Settings.from_env({"STAGE": "local", **pool.app_env()}))


def test_the_pools_access_token_passes_the_apps_checks(pool: LocalPool) -> None:
    token = pool.token("alice")
    header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert claims["iss"] == pool.issuer and pool.jwks_url.startswith("http://127.0.0.1:")
    assert (claims["token_use"], claims["client_id"], claims["cognito:groups"]) == ("access", pool.client_id, [GROUP])
    identity = verifier(pool).verify(token)
    assert identity.user_id == claims["sub"] and identity.claims["username"] == "alice"


def test_signing_in_again_reuses_the_user(pool: LocalPool) -> None:
    first, second = (jwt.decode(pool.token("bob"), options={"verify_signature": False}) for _ in range(2))
    assert first["sub"] == second["sub"]


def test_an_id_token_another_client_and_no_group_are_refused(pool: LocalPool) -> None:
    check = verifier(pool)
    id_token = pool.token("carol", token_use="id")
    assert jwt.decode(id_token, options={"verify_signature": False})["aud"] == pool.client_id
    with pytest.raises(AuthError, match="token_use"):
        check.verify(id_token)
    other_client = pool.create_app_client("another-app")
    with pytest.raises(AuthError, match="'client_id' claim names no accepted app client"):
        check.verify(pool.sign_in("carol", client_id=other_client)["AccessToken"])
    with pytest.raises(AuthError, match="required group"):
        check.verify(pool.sign_in("dave", join_group=False)["AccessToken"])


def test_make_token_reads_the_running_stacks_pool(pool: LocalPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("devserver.cognito.STATE_DIR", tmp_path)
    port = free_port()
    monkeypatch.setattr("sys.argv", ["tokens", "--auth", "cognito", "--port", str(port), "erin"])
    with pytest.raises(SystemExit, match="no AUTH=cognito stack on port"):
        tokens.main()
    saved = pool.save(state_file(port))
    assert LocalPool.load(saved.path) == pool  # addresses and ids only: nothing secret is kept
    assert set(json.loads(saved.path.read_text())) == {"endpoint", "region", "user_pool_id", "client_id", "required_group"}
    tokens.main()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and verifier(pool).verify(out[-1]).claims["username"] == "erin"
    saved.stop()
    assert not saved.path.exists()
