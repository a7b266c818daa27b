"""Encoder for AWS event-stream messages (``application/vnd.amazon.eventstream``).

The Bedrock emulator needs to speak the exact binary framing that botocore
decodes, CRCs included, so that the app is tested against botocore's real
parser rather than a mock. Only string headers (type 7) are needed for that.

Message layout (all integers big-endian)::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers | payload | message CRC32 of everything before it (u32)

A header is: name length (u8), name, value type (u8, 7 = string),
value length (u16), value.
"""

from __future__ import annotations

import json
import struct
import zlib

__all__ = ["encode_message", "event", "exception"]

_STRING_TYPE = 7
# Same limits botocore's decoder enforces; failing here is clearer than there.
_MAX_HEADERS_LENGTH = 128 * 1024
_MAX_PAYLOAD_LENGTH = 16 * 1024**2


def _encode_headers(headers: dict[str, str]) -> bytes:
    """Encode string headers in dict order (the order is kept on the wire)."""
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        raw_value = value.encode("utf-8")
        if not 0 < len(raw_name) <= 255:
            raise ValueError(f"header name must be 1-255 bytes: {name!r}")
        if len(raw_value) > 0xFFFF:
            raise ValueError(f"header value too long for {name!r}")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING_TYPE, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """Frame one event-stream message with both CRC32 checksums."""
    encoded_headers = _encode_headers(headers)
    if len(encoded_headers) > _MAX_HEADERS_LENGTH:
        raise ValueError("headers exceed 128 KiB")
    if len(payload) > _MAX_PAYLOAD_LENGTH:
        raise ValueError("payload exceeds 16 MiB")
    total_length = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total_length, len(encoded_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def event(event_type: str, payload: dict) -> bytes:
    """A modelled event: botocore picks the union member from ``:event-type``."""
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        _json(payload),
    )


def exception(exception_type: str, message: str) -> bytes:
    """An in-stream modelled error: botocore raises ``EventStreamError`` with
    ``Error.Code`` set to ``exception_type`` (the member name, e.g.
    ``throttlingException``)."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        _json({"message": message}),
    )
