"""Amazon Cognito for the local stack (`make run AUTH=cognito`), played by moto's server.

moto's cognito-idp issues RS256 tokens shaped as Cognito's (an access token names its app client in
``client_id`` and says ``token_use: access``; an ID token names it in ``aud``) and serves each pool's
``/<pool id>/.well-known/jwks.json``, so the app verifies them with its JWKS code exactly as a
deployed stage does: nothing in the app knows it is local. While the stack runs, it keeps what
`make token` needs (moto's address, the pool, the app client; no secret) in
``.local/cognito-<port>.json`` (git-ignored), one file per WebSocket port.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from infra.signin import sign_in

STATE_DIR = Path(__file__).resolve().parent.parent / ".local"
POOL_NAME = "agentstream-local"
CLIENT_NAME = "agentstream-local"
# The flows `make token` and the tests sign in with; the deployed page uses the authorization code flow.
AUTH_FLOWS = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]


def state_file(port: int) -> Path:
    """Where the stack on WebSocket port ``port`` describes its pool for `make token`."""
    return STATE_DIR / f"cognito-{port}.json"


def cognito_client(endpoint: str, region: str) -> Any:
    """A cognito-idp client for moto only: its endpoint and dummy credentials, never an account's."""
    import boto3

    return boto3.client("cognito-idp", endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="local", aws_secret_access_key="local", aws_session_token=None)


@dataclass(frozen=True)
class LocalPool:
    """A user pool and its app client in the local moto server."""

    endpoint: str  # moto's server, http://127.0.0.1:<port>
    region: str
    user_pool_id: str
    client_id: str
    required_group: str = ""

    @property
    def issuer(self) -> str:
        """What moto (like Cognito) puts in ``iss``: the pool's regional Cognito URL."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        """The pool's key set, served by moto on loopback (Cognito serves it at ``<issuer>/.well-known/jwks.json``)."""
        return f"{self.endpoint}/{self.user_pool_id}/.well-known/jwks.json"

    def app_env(self, token_use: str = "access") -> Dict[str, str]:
        """The app's settings for this pool (chalicelib/settings.py), as a deployed Cognito stage has them."""
        return {
            "JWT_ISSUER": self.issuer,
            "JWT_JWKS_URL": self.jwks_url,
            "JWT_TOKEN_USE": token_use,
            "JWT_CLIENT_ID": self.client_id,
            "JWT_REQUIRED_GROUP": self.required_group,
        }

    def client(self) -> Any:
        return cognito_client(self.endpoint, self.region)

    def create_app_client(self, name: str) -> str:
        """Another app client of the same pool (its tokens must be refused: tests)."""
        created = self.client().create_user_pool_client(
            UserPoolId=self.user_pool_id, ClientName=name, GenerateSecret=False, ExplicitAuthFlows=AUTH_FLOWS)
        return str(created["UserPoolClient"]["ClientId"])

    def sign_in(self, user: str, client_id: Optional[str] = None, join_group: bool = True) -> Dict[str, Any]:
        """Cognito's ``AuthenticationResult`` for ``user`` (created if needed), signed in with
        ADMIN_USER_PASSWORD_AUTH as `make token STAGE=...` signs in to a deployed pool (infra/signin.py).

        Each call gives the user a fresh generated password through the admin API and signs in with
        it at once, so no password is kept or shown. ``join_group`` adds the user to the required group.
        """
        group = self.required_group if join_group else ""
        # Local users are throwaway: each sign-in sets a fresh password (reset), none is ever shown.
        return sign_in(self.client(), self.user_pool_id, client_id or self.client_id, user, group=group, reset=True).tokens

    def token(self, user: str, token_use: str = "access") -> str:
        """An access token (or with ``token_use="id"`` an ID token) for ``user`` from the app client."""
        result = self.sign_in(user)
        return str(result["AccessToken"] if token_use == "access" else result["IdToken"])

    def save(self, path: Path) -> "SavedPool":
        """Write the pool's description for `make token`; the returned handle's ``stop()`` removes it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))
        return SavedPool(path)

    @classmethod
    def load(cls, path: Path) -> "LocalPool":
        """The pool a running `make run AUTH=cognito` saved."""
        return cls(**json.loads(path.read_text()))


@dataclass
class SavedPool:
    """A saved pool description; stopping the stack removes it, so `make token` never reads a stale one."""

    path: Path

    def stop(self) -> None:
        self.path.unlink(missing_ok=True)


def create_pool(endpoint: str, region: str, required_group: str = "") -> LocalPool:
    """A user pool (self sign-up off, as deployed) with one app client without a secret, and the group."""
    cognito = cognito_client(endpoint, region)
    pool_id = cognito.create_user_pool(
        PoolName=POOL_NAME, AdminCreateUserConfig={"AllowAdminCreateUserOnly": True})["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName=CLIENT_NAME, GenerateSecret=False, ExplicitAuthFlows=AUTH_FLOWS,
    )["UserPoolClient"]["ClientId"]
    if required_group:
        cognito.create_group(UserPoolId=pool_id, GroupName=required_group)
    return LocalPool(endpoint, region, pool_id, client_id, required_group)
