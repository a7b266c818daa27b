"""The hosted UI stand-in (devserver/hosted_ui.py) over HTTP, against moto's user pool.

What the browser test relies on and cannot see from the page: the code is bound to the PKCE
challenge, the client and the redirect URI and is used once; a wrong verifier is refused; refresh
and revocation work; it redirects only to registered URLs; its tokens pass the app's own checks.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Dict, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib.auth import TokenVerifier
from chalicelib.settings import Settings
from devserver.cognito import LocalPool, create_pool
from devserver.hosted_ui import HostedUi, pkce_pair, s256
from devserver.moto_server import MotoServer
from devserver.stack import free_port

PAGE = "http://127.0.0.1:9/"  # the page's address: a callback and sign-out URL, never fetched here


@pytest.fixture(scope="module")
def pool() -> Iterator[LocalPool]:
    moto = MotoServer("127.0.0.1", free_port()).start()
    try:
        yield create_pool(moto.url, "eu-west-1")
    finally:
        moto.stop()


@pytest.fixture(scope="module")
def hosted_ui(pool: LocalPool) -> Iterator[HostedUi]:
    ui = HostedUi(pool, [PAGE], auto_user="alice", token_ttl_s=5).start()
    yield ui
    ui.stop()


def authorize(ui: HostedUi, challenge: str, **overrides: str) -> requests.Response:
    params = {"response_type": "code", "client_id": ui.server.pool.client_id, "redirect_uri": PAGE,
              "scope": "openid email profile", "state": "s-1", "code_challenge": challenge,
              "code_challenge_method": "S256", **overrides}
    return requests.get(f"{ui.url}/oauth2/authorize", params=params, allow_redirects=False, timeout=10)


def code_for(ui: HostedUi) -> Tuple[str, str]:
    """(code, verifier) from an auto-approved authorization."""
    verifier, challenge = pkce_pair()
    answer = authorize(ui, challenge)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == PAGE
    query = parse_qs(back.query)
    assert query["state"] == ["s-1"]
    return query["code"][0], verifier


def token(ui: HostedUi, **form: str) -> requests.Response:
    return requests.post(f"{ui.url}/oauth2/token", data={"client_id": ui.server.pool.client_id, **form},
                         headers={"Origin": "http://127.0.0.1:9"}, timeout=10)


def redeem(ui: HostedUi, code: str, verifier: str) -> requests.Response:
    return token(ui, grant_type="authorization_code", code=code, redirect_uri=PAGE, code_verifier=verifier)


def app_accepts(pool: LocalPool, access_token: str) -> Dict[str, object]:
    return TokenVerifier(Settings.from_env({"STAGE": "local", **pool.app_env()})).verify(access_token).claims


def test_s256_is_rfc_7636s_example() -> None:
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_the_code_with_its_verifier_gives_tokens_the_app_accepts_once(hosted_ui: HostedUi, pool: LocalPool) -> None:
    code, verifier = code_for(hosted_ui)
    answer = redeem(hosted_ui, code, verifier)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9"  # the page calls it cross-origin
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 5  # token_ttl_s
    assert {"access_token", "id_token", "refresh_token"} <= set(tokens)
    assert app_accepts(pool, tokens["access_token"])["username"] == "alice"
    again = redeem(hosted_ui, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_wrong_verifier_is_refused_and_burns_the_code(hosted_ui: HostedUi) -> None:
    code, verifier = code_for(hosted_ui)
    other, _ = pkce_pair()
    for wrong in (other, verifier[:-1] + ("A" if verifier[-1] != "A" else "B"), "", "short"):
        refused = redeem(hosted_ui, code_for(hosted_ui)[0], wrong)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", wrong
        assert "access_token" not in refused.json()
    wrong_first = redeem(hosted_ui, code, other)
    assert wrong_first.status_code == 400
    assert redeem(hosted_ui, code, verifier).status_code == 400  # the right one, too late


def test_the_code_is_bound_to_its_redirect_uri_and_client(hosted_ui: HostedUi) -> None:
    code, verifier = code_for(hosted_ui)
    moved = token(hosted_ui, grant_type="authorization_code", code=code, redirect_uri=PAGE + "x",
                  code_verifier=verifier)
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_grant"
    code, verifier = code_for(hosted_ui)
    stranger = requests.post(f"{hosted_ui.url}/oauth2/token", timeout=10, data={
        "client_id": "another-client", "grant_type": "authorization_code", "code": code, "redirect_uri": PAGE,
        "code_verifier": verifier})
    assert stranger.status_code == 401 and stranger.json()["error"] == "invalid_client"


def test_authorize_refuses_unregistered_redirects_and_requires_s256(hosted_ui: HostedUi) -> None:
    _, challenge = pkce_pair()
    cases = [({"redirect_uri": "http://127.0.0.1:9/elsewhere"}, "invalid_request"),
             ({"client_id": "another-client"}, "invalid_client"),
             ({"code_challenge_method": "plain"}, "invalid_request"),
             ({"code_challenge": ""}, "invalid_request"),
             ({"response_type": "token"}, "unsupported_response_type")]
    for overrides, error in cases:
        answer = authorize(hosted_ui, challenge, **overrides)
        assert answer.status_code == 400 and answer.json()["error"] == error, overrides
        assert "Location" not in answer.headers


def test_refresh_gives_a_new_access_token_until_the_refresh_token_is_revoked(hosted_ui: HostedUi,
                                                                             pool: LocalPool) -> None:
    first = redeem(hosted_ui, *code_for(hosted_ui)).json()
    refreshed = token(hosted_ui, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["access_token"] != first["access_token"] and "refresh_token" not in new  # no rotation, as Cognito
    assert app_accepts(pool, new["access_token"])["username"] == "alice"
    revoked = requests.post(f"{hosted_ui.url}/oauth2/revoke", timeout=10,
                            data={"client_id": pool.client_id, "token": first["refresh_token"]})
    assert revoked.status_code == 200
    refused = token(hosted_ui, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    unknown = token(hosted_ui, grant_type="refresh_token", refresh_token="not-a-refresh-token")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"


def test_logout_redirects_only_to_a_registered_url(hosted_ui: HostedUi, pool: LocalPool) -> None:
    out = requests.get(f"{hosted_ui.url}/logout", params={"client_id": pool.client_id, "logout_uri": PAGE},
                       allow_redirects=False, timeout=10)
    assert out.status_code == 302 and out.headers["Location"] == PAGE
    elsewhere = requests.get(f"{hosted_ui.url}/logout", allow_redirects=False, timeout=10,
                             params={"client_id": pool.client_id, "logout_uri": "https://evil.example/"})
    assert elsewhere.status_code == 400 and "Location" not in elsewhere.headers


def test_without_an_auto_user_a_form_signs_in_the_name_given(pool: LocalPool) -> None:
    ui = HostedUi(pool, [PAGE]).start()
    try:
        verifier, challenge = pkce_pair()
        page = authorize(ui, challenge, state="s-2")
        assert page.status_code == 200 and 'id="username"' in page.text
        assert f'value="{challenge}"' in page.text  # the request travels in the form's hidden fields
        params = {"response_type": "code", "client_id": pool.client_id, "redirect_uri": PAGE, "state": "s-2",
                  "code_challenge": challenge, "code_challenge_method": "S256", "username": "bob"}
        signed_in = requests.post(f"{ui.url}/login", data=params, allow_redirects=False, timeout=10)
        assert signed_in.status_code == 302
        code = parse_qs(urlsplit(signed_in.headers["Location"]).query)["code"][0]
        tokens = redeem(ui, code, verifier).json()
        assert app_accepts(pool, tokens["access_token"])["username"] == "bob"
    finally:
        ui.stop()
