"""Turn, Bedrock session and memory ids, derived on the server from the verified user.

A client names a conversation, never a session: the session id is a keyed digest of the user and
the conversation name, so one user can never continue, read or resume another user's session.
Both ids fit InvokeAgent's rule (2-100 characters of ``[0-9a-zA-Z._:-]``).
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Optional


def encode_parts(*parts: str) -> str:
    """Join parts so that no two different tuples give the same string.

    Each part has its backslashes and NULs escaped before the parts are NUL-joined, so a part
    that holds a NUL (a ``sub`` claim may) cannot pass for a separator. Parts without either
    character join exactly as before, so existing session ids do not change.
    """
    return "\0".join(part.replace("\\", "\\\\").replace("\0", "\\0") for part in parts)


def _digest(*parts: str) -> str:
    return hashlib.sha256(encode_parts(*parts).encode("utf-8")).hexdigest()[:48]


def session_id(user_id: str, conversation_id: Optional[str], connection_id: str) -> str:
    """One session per (user, conversation); without a conversation name, one per connection."""
    if conversation_id is None:
        return "c-" + _digest("connection", user_id, connection_id)
    return "s-" + _digest("conversation", user_id, conversation_id)


def memory_id(user_id: str) -> str:
    """One long-term memory per user, as Bedrock recommends."""
    return "m-" + _digest("memory", user_id)


def turn_id(user_id: str, request_id: Optional[str]) -> str:
    """A client's idempotency key names one turn per user; without one every ask is new."""
    if request_id is None:
        return uuid.uuid4().hex
    return _digest("turn", user_id, request_id)[:32]
