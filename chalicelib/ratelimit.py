"""Token-bucket arithmetic for per-user rate limits (WebSocket APIs have no usage plans).

Pure: the bucket's state and the clock come in, the decision goes out, so the maths is tested
without DynamoDB; ``store.py`` keeps the state with optimistic, conditional writes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated_ms: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    bucket: Bucket  # the state to store when allowed
    retry_after_ms: int = 0


def decide(bucket: Optional[Bucket], now_ms: int, rate_per_s: float, burst: int) -> Decision:
    """Take one token if there is one; otherwise say how long until there will be."""
    if bucket is None:
        tokens = float(burst)
    else:
        elapsed_s = max(0, now_ms - bucket.updated_ms) / 1000
        tokens = min(float(burst), bucket.tokens + elapsed_s * rate_per_s)
    if tokens >= 1:
        return Decision(True, Bucket(tokens - 1, now_ms))
    wait_ms = math.ceil((1 - tokens) / rate_per_s * 1000) if rate_per_s > 0 else 60_000
    return Decision(False, Bucket(tokens, now_ms), max(1, wait_ms))
