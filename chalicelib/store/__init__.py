"""DynamoDB, one store per table: connections, turns, rate-limit buckets (and usage), conversation history."""
from chalicelib.store.connections import Connection, ConnectionStore
from chalicelib.store.items import now_ms
from chalicelib.store.ratelimits import RateLimitStore
from chalicelib.store.turns import TurnExists, TurnStore
from chalicelib.store.usage import UsageStore

__all__ = ["Connection", "ConnectionStore", "RateLimitStore", "TurnExists", "TurnStore", "UsageStore", "now_ms"]
