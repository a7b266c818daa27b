"""Opaque page cursors for the REST API: where a page ended, as a client carries it to the next.

A cursor holds only the position (never the user: each store puts the caller's own keys back), so a
client can read and forge it without reaching anything but its own pages.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, Optional


def encode_cursor(position: Optional[Dict[str, Any]]) -> Optional[str]:
    if position is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: Optional[str], keys: Dict[str, type]) -> Optional[Dict[str, Any]]:
    """The position a cursor holds; ValueError unless it has exactly ``keys``, of their types."""
    if not cursor:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor this API gave") from None
    if not isinstance(position, dict) or set(position) != set(keys) or not all(
            isinstance(position[key], kind) and not isinstance(position[key], bool) for key, kind in keys.items()):
        raise ValueError("not a cursor this API gave")
    return position
