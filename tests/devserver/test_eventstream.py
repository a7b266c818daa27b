"""The emulator's event-stream encoder, checked with botocore's own decoder."""

import json
import struct
import zlib

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from devserver.bedrock.eventstream import encode_message, event, exception


def decode_all(data: bytes) -> list:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


# Encoded messages with string headers only, copied from botocore's unit tests
# (boto/botocore tests/unit/test_eventstream.py: EMPTY_MESSAGE,
# PAYLOAD_NO_HEADERS, PAYLOAD_ONE_STR_HEADER, ERROR_EVENT_MESSAGE and the
# initial-response frames of test_event_stream_initial_response), which carry
# AWS's published event-stream encoding test vectors.
VECTORS = [
    ({}, b"", b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff"),
    ({}, b"{'foo':'bar'}", b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96"),
    (
        {"content-type": "application/json"},
        b"{'foo':'bar'}",
        b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10"
        b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1",
    ),
    (
        {":message-type": "error", ":error-code": "code", ":error-message": "message"},
        b"",
        b"\x00\x00\x00\x52\x00\x00\x00\x42\xbf\x23\x63\x7e"
        b"\x0d:message-type\x07\x00\x05error"
        b"\x0b:error-code\x07\x00\x04code"
        b"\x0e:error-message\x07\x00\x07message"
        b"\x6b\x6c\xea\x3d",
    ),
    (
        {":message-type": "event", ":event-type": "initial-response", ":content-type": "text/json"},
        b'{"InitialResponse": "sometext"}',
        b"\x00\x00\x00~\x00\x00\x00O\xc5\xa3\xdd\xc6\r:message-type\x07\x00"
        b"\x05event\x0b:event-type\x07\x00\x10initial-response\r:content-type"
        b'\x07\x00\ttext/json{"InitialResponse": "sometext"}\xf6\x98$\x83',
    ),
]


@pytest.mark.parametrize("headers, payload, expected", VECTORS)
def test_matches_published_vectors(headers, payload, expected):
    assert encode_message(headers, payload) == expected


def test_botocore_decodes_headers_payload_and_crcs():
    headers = {":event-type": "chunk", ":content-type": "application/json", "x-ünicode": "välue"}
    payload = json.dumps({"bytes": "aGk="}).encode()
    data = encode_message(headers, payload)

    (message,) = decode_all(data)

    assert message.headers == headers
    assert message.payload == payload
    assert message.prelude.total_length == len(data)
    assert message.prelude.crc == zlib.crc32(data[:8])
    assert message.crc == struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_several_messages_split_anywhere():
    data = event("chunk", {"bytes": "YQ=="}) + exception("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    messages = []
    for i in range(0, len(data), 7):  # arrives in arbitrary pieces, like HTTP chunks
        buffer.add_data(data[i : i + 7])
        messages.extend(buffer)
    assert [m.headers[":message-type"] for m in messages] == ["event", "exception"]
    assert messages[0].headers[":event-type"] == "chunk"
    assert messages[1].headers[":exception-type"] == "throttlingException"
    assert json.loads(messages[1].payload) == {"message": "slow down"}
    assert messages[1].to_response_dict()["status_code"] == 400


@pytest.mark.parametrize("position", ["prelude", "headers", "payload", "message_crc"])
def test_corrupted_byte_fails_checksum(position):
    data = bytearray(event("chunk", {"bytes": "aGVsbG8="}))
    index = {"prelude": 9, "headers": 14, "payload": len(data) - 8, "message_crc": len(data) - 1}[position]
    data[index] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        decode_all(bytes(data))


def test_rejects_oversized_header_value():
    with pytest.raises(ValueError):
        encode_message({"x": "v" * 70_000}, b"")
