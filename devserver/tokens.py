"""Tokens for the local stack, signed with a development secret kept out of git.

The secret is made on first use in ``.local/jwt-secret`` (git-ignored) and carries a marker that a
deployed stage refuses, so it can never end up guarding a real API.

    python -m devserver.tokens alice      # prints a token for user "alice" as its last line
"""
from __future__ import annotations

import argparse
import secrets
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


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a token the local stack accepts.")
    parser.add_argument("user", nargs="?", default="alice")
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    args = parser.parse_args()
    print(issue_token(args.user, local_secret(), args.ttl))


if __name__ == "__main__":
    main()
