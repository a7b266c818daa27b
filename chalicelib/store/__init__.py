"""DynamoDB, one store per table: connections, turns, rate-limit buckets, conversation history."""
from chalicelib.store.connections import Connection, ConnectionStore
from chalicelib.store.items import now_ms
from chalicelib.store.ratelimits import RateLimitStore
from chalicelib.store.turns import TurnExists, TurnStore

__all__ = ["Connection", "ConnectionStore", "RateLimitStore", "TurnExists", "TurnStore", "now_ms"]
