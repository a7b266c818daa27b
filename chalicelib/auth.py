"""Token verification at $connect: the only place identity comes from.

HS256 tokens are checked against a shared secret; RS256/ES256 tokens against the issuer's JWKS
(Amazon Cognito and other OIDC issuers), with issuer and audience checks. Each key type accepts
only its own algorithms, so ``alg: none`` and algorithm confusion (an HS256 token signed with a
public key) are refused by construction. PyJWT is imported lazily: only $connect pays for it.

Amazon Cognito signs two kinds of token with the same key, so the signature alone does not say a
token was meant for this API. After the signature, expiry, issuer and audience, three optional
checks (settings ``JWT_TOKEN_USE``, ``JWT_CLIENT_ID``, ``JWT_REQUIRED_GROUP``) apply to every token:

- ``token_use`` must equal ``JWT_TOKEN_USE``. A Cognito stage requires ``access``: access tokens
  are what Cognito issues to call an API, while ID tokens describe the person (email, name) and
  would carry that into every ``?token=`` URL and its logs.
- the app client: an access token names it in ``client_id`` (it has no ``aud``), an ID token in
  ``aud``; which claim is read follows the token's own (signed) ``token_use``, so with
  ``JWT_TOKEN_USE`` empty a token without ``token_use`` is checked on ``aud``.
- ``cognito:groups`` must list ``JWT_REQUIRED_GROUP``.

Each refusal is an ``AuthError`` (a 401 at $connect) that names the failed check, never a claim's value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

from chalicelib.settings import DEV_JWT_SECRET_MARKER, Settings, SettingsError

HMAC_ALGORITHMS = ["HS256"]
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]
MAX_USER_ID_BYTES = 1024  # DynamoDB keys hold 2,048 bytes; identities are keys and parts of keys


class AuthError(Exception):
    """The token is missing or not acceptable; the message is safe to log (never the token)."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    claims: Dict[str, Any]


def token_from_request(query: Optional[Mapping[str, str]], headers: Optional[Mapping[str, str]]) -> Optional[str]:
    """The token from ``?token=`` or an ``Authorization: Bearer`` header (browsers cannot set headers)."""
    token = (query or {}).get("token")
    if token:
        return token
    for name, value in (headers or {}).items():
        if name.lower() == "authorization" and value:
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def usable_user_id(sub: Any) -> str:
    """The ``sub`` claim, if it can be stored and keyed on: else the token is refused (401).

    Every id derived from a user encodes it unambiguously (``turns.ids``), so any string is safe
    to derive from; what cannot be stored is text that is not UTF-8 (unpaired surrogates) or
    that is longer than a DynamoDB key may be, with room for the prefixes the stores add.
    """
    if not isinstance(sub, str) or not sub:
        raise AuthError("token has no usable 'sub' claim")
    try:
        size = len(sub.encode("utf-8"))
    except UnicodeEncodeError:
        raise AuthError("token refused: the 'sub' claim is not valid Unicode") from None
    if size > MAX_USER_ID_BYTES:
        raise AuthError(f"token refused: the 'sub' claim is longer than {MAX_USER_ID_BYTES} bytes")
    return sub


def check_cognito_claims(claims: Mapping[str, Any], settings: Settings) -> None:
    """Refuse a verified token of the wrong kind, app client or group (see the module docstring)."""
    token_use = claims.get("token_use")
    if settings.jwt_token_use and token_use != settings.jwt_token_use:
        raise AuthError(f"token refused: its 'token_use' is not {settings.jwt_token_use!r}")
    if settings.jwt_client_id:
        if token_use == "access":
            claim, issued_to = "client_id", claims.get("client_id")
            clients = [issued_to] if isinstance(issued_to, str) else []
        else:  # an ID token (or not Cognito's): the audience, a string or a list (RFC 7519)
            claim, issued_to = "aud", claims.get("aud")
            clients = [issued_to] if isinstance(issued_to, str) else issued_to if isinstance(issued_to, list) else []
        if not any(isinstance(client, str) and client in settings.jwt_client_id for client in clients):
            raise AuthError(f"token refused: its {claim!r} claim names no accepted app client")
    if settings.jwt_required_group:
        groups = claims.get("cognito:groups")
        if not isinstance(groups, list) or settings.jwt_required_group not in groups:
            raise AuthError("token refused: the user is not in the required group")


class TokenVerifier:
    """Verifies JWTs; the JWKS client (and its key cache) lives as long as the container."""

    def __init__(self, settings: Settings, secret_loader: Optional[Callable[[], str]] = None) -> None:
        self._settings = settings
        self._secret_loader = secret_loader
        self._secret: Optional[str] = settings.jwt_secret or None
        self._jwks_client: Any = None

    def verify(self, token: str) -> Identity:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg in HMAC_ALGORITHMS:
            key: Any = self._hmac_secret()
            algorithms = HMAC_ALGORITHMS
        elif alg in ASYMMETRIC_ALGORITHMS:
            key = self._signing_key(token)
            algorithms = ASYMMETRIC_ALGORITHMS
        else:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=list(settings.jwt_audience) or None,
                issuer=settings.jwt_issuer or None,
                leeway=settings.jwt_leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": bool(settings.jwt_audience)},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"token refused: {exc}") from None
        for name in ("exp", "nbf", "iat"):  # NumericDate is a JSON number (RFC 7519), never a string
            value = claims.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise AuthError(f"token refused: the {name!r} claim must be a number")
        check_cognito_claims(claims, settings)
        return Identity(user_id=usable_user_id(claims.get("sub")), claims=claims)

    def _hmac_secret(self) -> str:
        if self._secret is None and self._secret_loader is not None and self._settings.jwt_secret_parameter:
            loaded = self._secret_loader()
            if self._settings.stage != "local" and loaded.startswith(DEV_JWT_SECRET_MARKER):
                # The environment check (Settings.check) cannot see a secret kept in SSM.
                raise SettingsError(f"stage {self._settings.stage!r}: the JWT secret parameter holds the local development "
                                    "secret; put a secret of your own in it (docs/deploy.md)")
            self._secret = loaded
        if not self._secret:
            raise AuthError("HS256 tokens are not accepted: no secret is configured")
        return self._secret

    def _signing_key(self, token: str) -> Any:
        import jwt

        if not self._settings.jwks_url:
            raise AuthError("RS256/ES256 tokens are not accepted: no JWKS URL is configured")
        if self._jwks_client is None:
            self._jwks_client = jwt.PyJWKClient(self._settings.jwks_url, cache_jwk_set=True, lifespan=3600, timeout=5)
        try:
            return self._jwks_client.get_signing_key_from_jwt(token).key
        except jwt.PyJWTError as exc:
            raise AuthError(f"no signing key for token: {exc}") from None
