"""The stream plumbing every provider shares: decoders cut upstream bytes at any boundary, and the
OpenAI passthrough reads usage (and hides the usage chunk the client did not ask for)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.providers.common import (
    NDJSONDecoder,
    SSEDataDecoder,
    SSEEventDecoder,
    StreamDecodeError,
)
from proxy.providers.openai.passthrough import _Events, _inspect

SSE = (
    b'data: {"id":"1","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive comment\n\n"
    b'data: {"id":"1","choices":[{"index":0,"delta":{"content":"lo \\u00e9"}}]}\r\n\r\n'
    b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,'
    b'"prompt_tokens_details":{"cached_tokens":3}}}\n\n'
    b"data: [DONE]\n\n"
)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in zip(points, points[1:], strict=False)]


@given(st.lists(st.integers(min_value=0, max_value=len(SSE)), max_size=12))
def test_sse_data_decoder_is_independent_of_chunking(cuts: list[int]) -> None:
    decoder = SSEDataDecoder()
    items = [item for chunk in _cut(SSE, cuts) for item in decoder.feed(chunk)] + decoder.close()
    assert [item["choices"] for item in items][:2] == [
        [{"index": 0, "delta": {"content": "Hel"}}],
        [{"index": 0, "delta": {"content": "lo é"}}],
    ]
    assert items[2]["usage"]["prompt_tokens"] == 7
    assert len(items) == 3
    assert decoder.done


def test_sse_data_decoder_refuses_garbage_and_endless_lines() -> None:
    with pytest.raises(StreamDecodeError):
        SSEDataDecoder().feed(b"data: {not json}\n")
    with pytest.raises(StreamDecodeError):
        SSEDataDecoder(max_line_bytes=10).feed(b"data: " + b"x" * 20)


def test_sse_event_decoder_names_anthropic_events() -> None:
    decoder = SSEEventDecoder()
    items = decoder.feed(
        b'event: ping\ndata: {"type":"ping"}\n\nevent: message_stop\ndata: {"type"'
    )
    items += decoder.feed(b':"message_stop"}\n\n')
    assert items == [("ping", {"type": "ping"}), ("message_stop", {"type": "message_stop"})]


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_ndjson_decoder_is_independent_of_chunking(cuts: list[int]) -> None:
    data = b'{"a":1}\n\n{"b":"\xc3\xa9"}\n{"c":[1,2]}'
    decoder = NDJSONDecoder()
    items = [item for chunk in _cut(data, cuts) for item in decoder.feed(chunk)] + decoder.close()
    assert items == [{"a": 1}, {"b": "é"}, {"c": [1, 2]}]


def test_ndjson_decoder_refuses_a_bad_line() -> None:
    with pytest.raises(StreamDecodeError):
        NDJSONDecoder().feed(b"{oops}\n")


@pytest.mark.parametrize("client_wants_usage", [True, False])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SSE)), max_size=10))
def test_openai_passthrough_relays_bytes_and_reads_usage(
    client_wants_usage: bool, cuts: list[int]
) -> None:
    events = _Events()
    relayed = b""
    usage = None
    for chunk in _cut(SSE, cuts):
        for block in events.feed(chunk):
            out, found, _ = _inspect(block, client_wants_usage=client_wants_usage)
            relayed += out
            usage = found or usage
    for block in events.close():
        out, found, _ = _inspect(block, client_wants_usage=client_wants_usage)
        relayed += out
        usage = found or usage
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (4, 3, 2)
    if client_wants_usage:
        # Byte for byte what the upstream sent (events without usage are never re-framed).
        assert relayed == SSE
    else:
        assert b'"usage"' not in relayed
        assert relayed.endswith(b"data: [DONE]\n\n")
        assert b'"Hel"' in relayed


def test_a_usage_field_inside_content_is_not_mistaken_for_the_usage_chunk() -> None:
    chunk = {"id": "1", "choices": [{"index": 0, "delta": {"content": '"usage": 5'}}]}
    block = b"data: " + json.dumps(chunk).encode() + b"\n\n"
    out, usage, _ = _inspect(block, client_wants_usage=False)
    assert usage is None
    assert out == block
