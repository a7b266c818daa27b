"""The chat page signing in as on a deployed Cognito stage: authorization code + PKCE, in Debian's Chromium.

The local stack runs with AUTH=cognito: moto's user pool, and the hosted UI stand-in
(devserver/hosted_ui.py) whose sign-in form the test fills in. The page finds both in the
``config.json`` the stack serves next to it. The stand-in reports access tokens as living 4 s, so
the page renews its token with the refresh token (and reconnects with it) while the test watches.
That PKCE is enforced server-side (a wrong verifier is refused) is tests/devserver/test_hosted_ui.py.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devserver.hosted_ui import s256
from tests.support.browser import Page, page_of
from tests.support.faults import unique_user
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.integration

TOKEN_TTL_S = 4  # the page renews its access token halfway through: every 2 s
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")

# Every value in the page's localStorage and sessionStorage.
STORED = """() => [localStorage, sessionStorage].flatMap(
    (storage) => Object.keys(storage).map((key) => key + '=' + storage.getItem(key)))"""


@pytest.fixture(scope="module")
def cognito_stack() -> Iterator[Stack]:
    stack = start_stack(AUTH="cognito", CONTROL_INTERVAL_MS="100", HOSTED_UI_TOKEN_TTL_S=str(TOKEN_TTL_S))
    yield stack
    stop_stack(stack)


@pytest.fixture
def signin_page(browser_context: Any, cognito_stack: Stack) -> Iterator[Page]:
    with page_of(browser_context, cognito_stack) as page:
        yield page


def form_of(body: str) -> Dict[str, str]:
    return {key: values[0] for key, values in parse_qs(body).items()}


def token_in(socket_url: str) -> str:
    return parse_qs(urlsplit(socket_url).query)["token"][0]


def assert_no_token_stored(web: Page, tokens: List[str]) -> None:
    stored = web.page.evaluate(STORED)
    assert not [item for item in stored if JWT.search(item) or any(token in item for token in tokens)], stored


def test_sign_in_with_pkce_stream_refresh_reconnect_and_sign_out(signin_page: Page, cognito_stack: Stack) -> None:
    web = signin_page
    hosted_ui = cognito_stack.info["cognito"]["hosted_ui"]
    sockets: List[str] = []
    posts: List[Dict[str, str]] = []  # the forms the page sent to the token and revocation endpoints
    web.page.on("websocket", lambda socket: sockets.append(socket.url))
    web.page.on("request", lambda request: posts.append({"url": request.url, **form_of(request.post_data or "")})
                if request.method == "POST" and request.url.startswith(f"{hosted_ui}/oauth2/") else None)

    web.open()
    web.page.wait_for_selector("#status[data-state=signed-out]")
    assert web.page.locator("#sign-in").is_visible() and web.page.locator("#token-field").is_hidden()
    assert sockets == []

    web.page.click("#sign-in")
    web.page.wait_for_selector("#username")  # the stand-in's sign-in form
    authorize = urlsplit(web.page.url)
    asked = form_of(authorize.query)
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{hosted_ui}/oauth2/authorize"
    assert asked["response_type"] == "code" and asked["client_id"] == cognito_stack.info["cognito"]["client_id"]
    assert asked["redirect_uri"] == web.base_url and asked["scope"] == "openid email profile"
    assert asked["code_challenge_method"] == "S256" and len(asked["state"]) >= 16
    user = unique_user("signin")
    web.page.fill("#username", user)
    web.page.click("#approve")

    web.page.wait_for_selector("#status[data-state=open]")
    assert web.page.url == web.base_url  # the code and state left the address bar
    (exchange,) = posts
    assert exchange["url"] == f"{hosted_ui}/oauth2/token" and exchange["grant_type"] == "authorization_code"
    assert s256(exchange["code_verifier"]) == asked["code_challenge"] and exchange["redirect_uri"] == web.base_url
    assert web.page.locator("#user").inner_text() == user and web.page.locator("#sign-out").is_visible()
    first_token = token_in(sockets[0])
    assert web.page.evaluate("window.agentstream.signIn()")["user"] == user

    # A turn streams to done; the page renews its token meanwhile or after (every 2 s) and reconnects.
    prompt = "!slow 3 " + " ".join(f"w{i}" for i in range(30))
    web.ask(prompt)
    web.wait_state("done")
    assert web.turn()["text"] == f"You said: {prompt}"  # whole and once, across any reconnect
    web.page.wait_for_function("() => window.agentstream.signIn().refreshes >= 1 && window.agentstream.connected()")
    refreshes = [post for post in posts if post.get("grant_type") == "refresh_token"]
    assert refreshes and refreshes[0]["refresh_token"] and "code_verifier" not in refreshes[0]
    tokens = [token_in(url) for url in sockets]
    assert len(set(tokens)) >= 2 and tokens[-1] != first_token, "no reconnect with a renewed token"
    web.ask("after the refresh")  # on a connection opened with a renewed token
    web.wait_state("done")
    assert web.turn()["text"] == "You said: after the refresh"
    refresh_token = refreshes[0]["refresh_token"]
    assert_no_token_stored(web, tokens + [refresh_token])  # in memory only

    # Sign out: the refresh token is revoked, the hosted UI's logout sends the page back to itself.
    with web.page.expect_navigation(url=web.base_url):
        web.page.click("#sign-out")
    web.page.wait_for_selector("#status[data-state=signed-out]")
    assert web.page.evaluate("window.agentstream.signIn()") == {
        "configured": True, "ready": True, "signedIn": False, "user": "", "refreshes": 0}
    assert web.page.locator("#sign-in").is_visible() and web.page.locator("#sign-out").is_hidden()
    (revoke,) = [post for post in posts if post["url"] == f"{hosted_ui}/oauth2/revoke"]
    assert revoke["token"] == refresh_token
    assert f"{hosted_ui}/logout?client_id={asked['client_id']}" in "\n".join(web.requests)
    assert_no_token_stored(web, tokens + [refresh_token])
    refused = requests.post(f"{hosted_ui}/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "client_id": asked["client_id"], "refresh_token": refresh_token})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_a_code_that_this_tab_did_not_ask_for_is_not_redeemed(signin_page: Page) -> None:
    web = signin_page
    redeemed: List[str] = []
    web.page.on("request", lambda request: redeemed.append(request.url) if "/oauth2/token" in request.url else None)
    web.page.goto(web.base_url + "?code=stolen-code&state=forged")
    web.page.wait_for_selector("#notice:not([hidden])")
    assert "state mismatch" in web.page.locator("#notice-text").inner_text()
    assert web.page.url == web.base_url and redeemed == []
    assert web.page.locator("#status").get_attribute("data-state") == "signed-out"


def test_the_page_opened_as_index_html_returns_to_its_registered_url(signin_page: Page) -> None:
    """The app client registers the page's folder (``https://<id>.cloudfront.net/``): opened as
    ``/index.html`` the page still asks to come back there, or the sign-in would end in redirect_mismatch."""
    web = signin_page
    web.page.goto(web.base_url + "index.html")
    web.page.wait_for_selector("#status[data-state=signed-out]")
    web.page.click("#sign-in")
    web.page.wait_for_selector("#username")
    assert parse_qs(urlsplit(web.page.url).query)["redirect_uri"] == [web.base_url]
