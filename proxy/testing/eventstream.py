"""Encoder for AWS eventstream frames (`application/vnd.amazon.eventstream`) for the fake Bedrock.

botocore ships only a decoder (`botocore.eventstream.EventStreamBuffer`) and no encoder, so this
test-side encoder is written by hand from the frame layout:

    [total length u32][headers length u32][prelude CRC32 u32]
    [headers][payload]
    [message CRC32 u32]

Integers are big-endian. The prelude CRC covers the first 8 bytes; the message CRC covers every byte
before it. Each header is `[name length u8][name][value type u8][value length u16][value]`; only the
string type (7) is produced, since that is all Bedrock puts in its headers.

Nothing here touches Django or the network: the functions turn headers and payload bytes into frame
bytes, and the fake upstream writes them.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping
from functools import lru_cache

HEADER_TYPE_STRING = 7

# Frame layout sizes: 12-byte prelude (two lengths + prelude CRC) and a 4-byte trailing CRC.
_PRELUDE_SIZE = 12
_MESSAGE_CRC_SIZE = 4

# Limits the decoder enforces (botocore `_MAX_HEADERS_LENGTH` / `_MAX_PAYLOAD_LENGTH`).
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Encode string headers in insertion order."""
    parts: list[bytes] = []
    for name, value in headers.items():
        name_bytes = name.encode("utf-8")
        value_bytes = value.encode("utf-8")
        if not 0 < len(name_bytes) <= 255:
            raise ValueError(f"eventstream header name must be 1-255 bytes: {name!r}")
        if len(value_bytes) > 0xFFFF:
            raise ValueError(f"eventstream header value too long for {name!r}")
        parts.append(
            struct.pack("!B", len(name_bytes))
            + name_bytes
            + struct.pack("!BH", HEADER_TYPE_STRING, len(value_bytes))
            + value_bytes
        )
    encoded = b"".join(parts)
    if len(encoded) > MAX_HEADERS_LENGTH:
        raise ValueError("eventstream headers exceed 128 KiB")
    return encoded


def encode_frame_with_encoded_headers(encoded_headers: bytes, payload: bytes) -> bytes:
    """Build one frame from already-encoded headers (lets callers cache the header bytes)."""
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError("eventstream payload exceeds 24 MiB")
    total_length = _PRELUDE_SIZE + len(encoded_headers) + len(payload) + _MESSAGE_CRC_SIZE
    lengths = struct.pack("!II", total_length, len(encoded_headers))
    prelude = lengths + struct.pack("!I", binascii.crc32(lengths))
    message = prelude + encoded_headers + payload
    return message + struct.pack("!I", binascii.crc32(message))


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """Build one eventstream frame with string headers and a raw payload."""
    return encode_frame_with_encoded_headers(encode_headers(headers), payload)


@lru_cache(maxsize=64)
def _event_headers(event_type: str) -> bytes:
    # Same header order as Bedrock's own frames.
    return encode_headers(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        }
    )


@lru_cache(maxsize=64)
def _exception_headers(exception_type: str) -> bytes:
    return encode_headers(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        }
    )


def event_frame(event_type: str, payload: bytes) -> bytes:
    """A `:message-type: event` frame, e.g. `contentBlockDelta` or `chunk`."""
    return encode_frame_with_encoded_headers(_event_headers(event_type), payload)


def exception_frame(exception_type: str, payload: bytes) -> bytes:
    """A `:message-type: exception` frame, e.g. `throttlingException` with `{"message": ...}`."""
    return encode_frame_with_encoded_headers(_exception_headers(exception_type), payload)


def error_frame(error_code: str, error_message: str) -> bytes:
    """A `:message-type: error` frame: code and message travel in headers, the payload is empty."""
    headers = {
        ":error-code": error_code,
        ":error-message": error_message,
        ":message-type": "error",
    }
    return encode_frame(headers, b"")
