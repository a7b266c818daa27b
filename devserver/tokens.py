"""Tokens for the local stack, signed with a development secret kept out of git, or from its Cognito pool.

The secret is made on first use in ``.local/jwt-secret`` (git-ignored) and carries a marker that a
deployed stage refuses, so it can never end up guarding a real API. A stack started with
``AUTH=cognito`` accepts only its (moto) user pool's tokens instead: ``--auth cognito`` creates the
user there if needed and signs in (devserver/cognito.py).

    python -m devserver.tokens alice                              # an HS256 token for "alice", last line
    python -m devserver.tokens --auth cognito --port 8000 alice  # a Cognito access token from that stack's pool
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from chalicelib.settings import DEV_JWT_SECRET_MARKER

SECRET_FILE = Path(__file__).resolve().parent.parent / ".local" / "jwt-secret"


def local_secret(path: Path = SECRET_FILE) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEV_JWT_SECRET_MARKER + secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def issue_token(user: str, secret: str, ttl_s: int = 12 * 3600) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")


def cognito_token(user: str, port: int, token_use: str = "access") -> str:
    """A token from the user pool of the `make run AUTH=cognito` stack on WebSocket port ``port``."""
    from devserver.cognito import LocalPool, state_file

    path = state_file(port)
    if not path.exists():
        raise SystemExit(f"no AUTH=cognito stack on port {port} ({path} is missing): start `make run AUTH=cognito`"
                         " (and give `make token` the same PORT)")
    return LocalPool.load(path).token(user, token_use)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a token the local stack accepts.")
    parser.add_argument("user", nargs="?", default="alice")
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds (development tokens)")
    parser.add_argument("--auth", choices=("dev", "cognito"), default=os.environ.get("AUTH") or "dev",
                        help="dev: an HS256 development token; cognito: from the running stack's user pool")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000),
                        help="the stack's WebSocket port (cognito)")
    parser.add_argument("--token-use", choices=("access", "id"), default="access", help="the Cognito token (cognito)")
    args = parser.parse_args()
    if args.auth == "cognito":
        token = cognito_token(args.user, args.port, args.token_use)
        print(f"user {args.user}: signed in to the local user pool (created if needed, fresh generated password)",
              file=sys.stderr)
        print(token)
    else:
        print(issue_token(args.user, local_secret(), args.ttl))


if __name__ == "__main__":
    main()
