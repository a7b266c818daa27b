"""A stand-in for Cognito's hosted UI on 127.0.0.1: a local and test tool only, never deployed.

`make run AUTH=cognito` starts it next to moto's user pool (devserver/cognito.py) so the chat page
signs in exactly as on a deployed stage, with the OAuth 2.0 authorization code flow and PKCE:

    GET  /oauth2/authorize  a one-field form (any user name signs in; the user is created in moto's
                            pool if needed), or with ``auto_user`` (HOSTED_UI_USER) approved at once;
                            redirects to the registered ``redirect_uri`` with a one-time ``code``
                            bound to the client id, the redirect URI and the S256 ``code_challenge``
    POST /oauth2/token      ``authorization_code`` (checks ``code_verifier``: its SHA-256 must be the
                            challenge) or ``refresh_token``; answers moto-issued access, ID and refresh
                            tokens, as Cognito's token endpoint does
    POST /oauth2/revoke     revokes a refresh token (a later refresh with it is refused)
    GET  /logout            redirects to a registered ``logout_uri``

What it does not do: passwords (moto signs the user in with a fresh generated one, never shown),
other flows, scopes (it accepts them and ignores them), consent. ``token_ttl_s``
(HOSTED_UI_TOKEN_TTL_S) makes it report a shorter ``expires_in`` than the tokens' own ``exp``, so a
test sees the page refresh within seconds.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, Optional, Sequence, Set, Tuple
from urllib.parse import parse_qs, urlencode, urlsplit

from devserver.cognito import LocalPool
from devserver.serving import BackgroundServer

CODE_LIFETIME_S = 300.0  # Cognito's authorization codes last 5 minutes
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636's code_verifier


def s256(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier``: BASE64URL(SHA-256(verifier)), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthError(Exception):
    """An OAuth 2.0 error answer (RFC 6749 5.2): its code and the HTTP status it goes with."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.status = status


@dataclass
class Grant:
    """What an authorization code stands for until it is redeemed, once."""

    client_id: str
    redirect_uri: str
    challenge: str
    tokens: Dict[str, Any]  # moto's AuthenticationResult
    expires_at: float


@dataclass
class AuthorizationServer:
    """The hosted UI's rules, apart from HTTP: codes, PKCE, refresh, revocation, logout."""

    pool: LocalPool
    redirect_uris: Sequence[str]  # the app client's callback URLs, also its sign-out URLs
    token_ttl_s: Optional[int] = None
    _grants: Dict[str, Grant] = field(default_factory=dict)
    _revoked: Set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check_authorize(self, params: Dict[str, str]) -> None:
        """Refuse what Cognito refuses before anyone signs in (PKCE is required here, S256 only)."""
        if params.get("client_id") != self.pool.client_id:
            raise OAuthError("invalid_client", "unknown client_id")
        if params.get("redirect_uri") not in self.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not a callback URL of this app client")
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise OAuthError("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")

    def approve(self, user: str, params: Dict[str, str]) -> str:
        """Sign ``user`` in (moto) and return where to send the browser: the redirect URI with a code."""
        self.check_authorize(params)
        with self._lock:  # one boto3 client at a time: creating them is not thread-safe
            tokens = self.pool.sign_in(user)
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[code] = Grant(params["client_id"], params["redirect_uri"], params["code_challenge"],
                                       tokens, time.monotonic() + CODE_LIFETIME_S)
        answer = {"code": code, **({"state": params["state"]} if params.get("state") else {})}
        return params["redirect_uri"] + ("&" if "?" in params["redirect_uri"] else "?") + urlencode(answer)

    def token(self, form: Dict[str, str]) -> Dict[str, Any]:
        """The token endpoint: ``authorization_code`` with PKCE, or ``refresh_token``."""
        if form.get("client_id") != self.pool.client_id:
            raise OAuthError("invalid_client", "unknown client_id", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._redeem(form)
        if grant_type == "refresh_token":
            return self._refresh(form.get("refresh_token", ""))
        raise OAuthError("unsupported_grant_type", "authorization_code or refresh_token")

    def _redeem(self, form: Dict[str, str]) -> Dict[str, Any]:
        with self._lock:  # a code is used once, whatever the outcome (a wrong verifier burns it too)
            grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.expires_at < time.monotonic():
            raise OAuthError("invalid_grant", "unknown, used or expired code")
        if grant.client_id != form["client_id"] or grant.redirect_uri != form.get("redirect_uri"):
            raise OAuthError("invalid_grant", "the code was issued to another client or redirect_uri")
        verifier = form.get("code_verifier", "")
        if not VERIFIER.fullmatch(verifier) or not secrets.compare_digest(s256(verifier), grant.challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        tokens = grant.tokens
        return self._answer(tokens, refresh_token=tokens["RefreshToken"])

    def _refresh(self, refresh_token: str) -> Dict[str, Any]:
        with self._lock:
            if not refresh_token or refresh_token in self._revoked:
                raise OAuthError("invalid_grant", "unknown or revoked refresh token")
            cognito = self.pool.client()
            try:
                result = cognito.initiate_auth(ClientId=self.pool.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                                               AuthParameters={"REFRESH_TOKEN": refresh_token})
            except cognito.exceptions.NotAuthorizedException as refused:
                raise OAuthError("invalid_grant", "unknown or revoked refresh token") from refused
        return self._answer(result["AuthenticationResult"])  # like Cognito without rotation: no new refresh token

    def _answer(self, tokens: Dict[str, Any], refresh_token: str = "") -> Dict[str, Any]:
        expires_in = int(tokens.get("ExpiresIn", 3600))
        answer = {"access_token": tokens["AccessToken"], "id_token": tokens["IdToken"], "token_type": "Bearer",
                  "expires_in": min(expires_in, self.token_ttl_s) if self.token_ttl_s else expires_in}
        return {**answer, **({"refresh_token": refresh_token} if refresh_token else {})}

    def revoke(self, form: Dict[str, str]) -> None:
        """Cognito's revocation endpoint: the refresh token can no longer be used."""
        if form.get("client_id") != self.pool.client_id:
            raise OAuthError("invalid_client", "unknown client_id", 401)
        with self._lock:
            self._revoked.add(form.get("token", ""))

    def logout(self, params: Dict[str, str]) -> str:
        """Where ``/logout`` sends the browser: a registered sign-out URL, never anywhere else."""
        if params.get("client_id") != self.pool.client_id:
            raise OAuthError("invalid_client", "unknown client_id")
        if params.get("logout_uri") not in self.redirect_uris:
            raise OAuthError("invalid_request", "logout_uri is not a sign-out URL of this app client")
        return params["logout_uri"]


FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in (local stand-in)</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; form-action 'self' {origins}">
</head><body>
<h1>Sign in</h1>
<p>Local stand-in for Cognito's hosted UI (<code>make run AUTH=cognito</code>): any user name signs in;
the user is created in the local pool if needed. Never deployed.</p>
<form method="post" action="/login">{hidden}
<label>User name <input id="username" name="username" autocomplete="username" required autofocus></label>
<button type="submit" id="approve">Sign in</button>
</form></body></html>
"""


class HostedUi(BackgroundServer):
    """The stand-in's HTTP server; ``start()`` serves on a daemon thread, ``stop()`` ends it."""

    def __init__(self, pool: LocalPool, redirect_uris: Sequence[str], host: str = "127.0.0.1", port: int = 0,
                 auto_user: str = "", token_ttl_s: Optional[int] = None) -> None:
        self.server = AuthorizationServer(pool, list(redirect_uris), token_ttl_s)
        origins = {"{0.scheme}://{0.netloc}".format(urlsplit(uri)) for uri in redirect_uris}
        rules = self.server

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path, _, query = self.path.partition("?")
                params = _single(parse_qs(query))
                try:
                    if path == "/oauth2/authorize":
                        rules.check_authorize(params)
                        if auto_user:
                            self._redirect(rules.approve(auto_user, params))
                        else:
                            self._form(params)
                    elif path == "/logout":
                        self._redirect(rules.logout(params))
                    else:
                        self._json(404, {"error": "not_found"})
                except OAuthError as refused:
                    self._json(refused.status, {"error": refused.error, "error_description": str(refused)})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = _single(parse_qs(self.rfile.read(length).decode("utf-8")))
                try:
                    if self.path == "/login":
                        user = form.pop("username", "").strip()
                        if not user:
                            raise OAuthError("invalid_request", "a user name is needed")
                        self._redirect(rules.approve(user, form))
                    elif self.path == "/oauth2/token":
                        self._json(200, rules.token(form))
                    elif self.path == "/oauth2/revoke":
                        rules.revoke(form)
                        self._json(200, {})
                    else:
                        self._json(404, {"error": "not_found"})
                except OAuthError as refused:
                    self._json(refused.status, {"error": refused.error, "error_description": str(refused)})

            def do_OPTIONS(self) -> None:  # noqa: N802 - a CORS preflight for the token endpoints
                self.send_response(204)
                self._cors()
                self.send_header("Access-Control-Allow-Methods", "POST")
                self.send_header("Access-Control-Allow-Headers", "Content-Type")
                self.end_headers()

            def _cors(self) -> None:
                origin = self.headers.get("Origin", "")
                if origin in origins:  # the page calls the token endpoints from its own origin
                    self.send_header("Access-Control-Allow-Origin", origin)
                    self.send_header("Vary", "Origin")

            def _json(self, status: int, body: Dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self._cors()
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _form(self, params: Dict[str, str]) -> None:
                hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                 for k, v in params.items())
                # form-action covers the redirect after the post too: back to the page's origin.
                data = FORM.format(hidden=hidden, origins=" ".join(sorted(origins))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass  # its URLs carry codes

        super().__init__(host, port, Handler, "hosted-ui")  # its url: the page's ``cognitoDomain``


def _single(values: Dict[str, list]) -> Dict[str, str]:
    """A query or form's fields, each once (its first value)."""
    return {key: str(found[0]) for key, found in values.items() if found}


def pkce_pair() -> Tuple[str, str]:
    """A fresh (verifier, S256 challenge), as the page makes them (for tests and scripts)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)
