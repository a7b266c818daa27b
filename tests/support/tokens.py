"""Signed test tokens."""
from __future__ import annotations

import time
from typing import Any

import jwt

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def make_token(sub: str = "alice", secret: str = SECRET, ttl: int = 300, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + ttl, **claims}
    payload = {key: value for key, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)
