"""SSE encoding, the usage sniffer over raw Anthropic streams, and the usage normaliser."""

from __future__ import annotations

import json
import logging
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import jsonio
from proxy.translation import sse
from proxy.translation.sse import (
    SSEUsageSniffer,
    Usage,
    as_token_count,
    encode_sse,
    merge_delta_usage,
    normalize_usage,
    usage_from_message,
)

MODEL = "claude-sonnet-4-5-20250929"


def _events(
    text: str = "Héllo, wörld! 日本語 🎉", *, input_tokens: int = 12
) -> list[dict[str, Any]]:
    """A realistic stream: thinking, text (multibyte), a tool call, pings, cumulative usage."""
    return [
        {
            "type": "message_start",
            "message": {
                "id": "msg_01XYZ",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 200,
                    "cache_read_input_tokens": 1000,
                },
            },
        },
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me think… 思考"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQBCkYIBxgCKkA="},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": text},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            # Text that looks like the events the sniffer parses must not fool it.
            "delta": {"type": "text_delta", "text": '"type":"message_delta" "usage" 999'},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Zürich"}'},
        },
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"type": "", "stop_reason": "tool_use", "stop_sequence": None},
            "usage": {
                "output_tokens": 87,
                "input_tokens": None,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": None,
            },
        },
        {"type": "message_stop"},
    ]


def _stream(
    events: list[dict[str, Any]],
    *,
    crlf: bool = False,
    event_lines: bool = True,
    pretty: bool = False,
) -> bytes:
    out = bytearray()
    for event in events:
        if pretty:
            payload = json.dumps(event, ensure_ascii=False)
            frame = (f"event: {event['type']}\n" if event_lines else "") + f"data: {payload}\n\n"
            out += frame.encode()
        elif event_lines:
            out += encode_sse(event["type"], event)
        else:
            out += encode_sse(event["type"], event).split(b"\n", 1)[1]
    data = bytes(out)
    return data.replace(b"\n", b"\r\n") if crlf else data


def _expected(events: list[dict[str, Any]]) -> Usage:
    """Usage computed straight from the event dicts, the way the SDK accumulates it."""
    counts = dict.fromkeys(sse.USAGE_FIELDS, 0)
    for event in events:
        if event["type"] == "message_start":
            counts = normalize_usage(event["message"]["usage"]).as_dict()
        elif event["type"] == "message_delta":
            merge_delta_usage(counts, event["usage"])
    return Usage(**counts)


def _sniff(chunks: list[bytes], **kwargs: Any) -> SSEUsageSniffer:
    sniffer = SSEUsageSniffer(**kwargs)
    for chunk in chunks:
        sniffer.feed(chunk)
    sniffer.close()
    return sniffer


# -- encode_sse --------------------------------------------------------------------------------


def test_encode_sse_is_compact_utf8() -> None:
    frame = encode_sse("content_block_delta", {"type": "t", "text": "é 🎉", "n": [1, 2]})
    assert (
        frame
        == 'event: content_block_delta\ndata: {"type":"t","text":"é 🎉","n":[1,2]}\n\n'.encode()
    )


def test_encode_sse_round_trips() -> None:
    data = {"type": "message_stop", "nested": {"a": None, "b": True}}
    event_line, data_line, blank, end = encode_sse("message_stop", data).split(b"\n")
    assert (event_line, blank, end) == (b"event: message_stop", b"", b"")
    assert json.loads(data_line.removeprefix(b"data: ")) == data


def test_encode_sse_writes_what_orjson_refuses() -> None:
    """A lone surrogate (a model's broken emoji) and an integer beyond 64 bits are valid JSON
    values: the frame carries them (escaped) instead of failing the stream."""
    data = {"type": "content_block_delta", "text": "half \ud83c", "n": 2**70}
    frame = encode_sse("content_block_delta", data)
    data_line = frame.split(b"\n")[1]
    assert data_line.isascii()
    assert json.loads(data_line.removeprefix(b"data: ")) == data


# -- the sniffer -------------------------------------------------------------------------------


def test_sniffer_reads_a_whole_stream() -> None:
    events = _events()
    sniffer = _sniff([_stream(events)])
    assert sniffer.usage == Usage(
        input_tokens=12,
        output_tokens=87,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=200,
    )
    assert sniffer.usage == _expected(events)
    assert sniffer.model == MODEL
    assert sniffer.message_id == "msg_01XYZ"
    assert sniffer.stop_reason == "tool_use"
    assert sniffer.saw_message_start is True
    assert sniffer.saw_message_stop is True
    assert sniffer.error is None
    assert sniffer.skipped_events == 0
    assert sniffer.buffered_bytes == 0


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("event_lines", [True, False])
@pytest.mark.parametrize("pretty", [False, True])
def test_sniffer_byte_by_byte(crlf: bool, event_lines: bool, pretty: bool) -> None:
    events = _events()
    data = _stream(events, crlf=crlf, event_lines=event_lines, pretty=pretty)
    sniffer = _sniff([data[i : i + 1] for i in range(len(data))])
    assert sniffer.usage == _expected(events)
    assert (sniffer.model, sniffer.stop_reason, sniffer.saw_message_stop) == (
        MODEL,
        "tool_use",
        True,
    )


def test_sniffer_every_two_way_split() -> None:
    events = _events()
    data = _stream(events, crlf=True)
    expected = _expected(events)
    for cut in range(len(data) + 1):
        sniffer = _sniff([data[:cut], data[cut:]])
        assert sniffer.usage == expected, cut
        assert sniffer.saw_message_stop, cut


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=300),
    input_tokens=st.integers(min_value=0, max_value=2**40),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    crlf=st.booleans(),
    event_lines=st.booleans(),
)
def test_sniffer_random_splits_match_whole_parse(
    text: str, input_tokens: int, cuts: list[int], crlf: bool, event_lines: bool
) -> None:
    events = _events(text, input_tokens=input_tokens)
    data = _stream(events, crlf=crlf, event_lines=event_lines)
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert b"".join(chunks) == data

    whole = _sniff([data])
    split = _sniff(chunks)
    assert split.usage == whole.usage == _expected(events)
    assert (split.model, split.message_id, split.stop_reason, split.saw_message_stop) == (
        whole.model,
        whole.message_id,
        whole.stop_reason,
        whole.saw_message_stop,
    )


def test_sniffer_only_parses_the_events_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []

    def spy_loads(data: bytes) -> Any:
        parsed.append(data)
        return json.loads(data)

    monkeypatch.setattr(sse, "jsonio", types.SimpleNamespace(loads=spy_loads, dumps=jsonio.dumps))
    for event_lines in (True, False):
        parsed.clear()
        _sniff([_stream(_events(), event_lines=event_lines)])
        types_parsed = [json.loads(data)["type"] for data in parsed]
        assert types_parsed == ["message_start", "message_delta"]


def test_sniffer_reports_an_error_event() -> None:
    events = _events()[:3] + [
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ]
    sniffer = _sniff([_stream(events)])
    assert sniffer.error == ("overloaded_error", "Overloaded")
    assert sniffer.saw_message_stop is False
    assert sniffer.usage == Usage(
        input_tokens=12,
        output_tokens=1,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=200,
    )


def test_sniffer_error_event_with_odd_body() -> None:
    sniffer = _sniff([b'event: error\ndata: {"type":"error","error":{}}\n\n'])
    assert sniffer.error == ("api_error", "")
    sniffer = _sniff([b'event: error\ndata: {"type":"error","error":"nope"}\n\n'])
    assert sniffer.error is None


def test_sniffer_ignores_malformed_and_unexpected_data() -> None:
    stream = (
        b"event: message_start\ndata: {not json\n\n"
        b"event: message_start\ndata: [1, 2]\n\n"
        b'event: message_start\ndata: {"type":"message_start","message":"x"}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":null,"usage":null}\n\n'
        b": a comment line\n"
        b"id: 7\nretry: 100\n\n"
        b"event: message_stop\n\n"  # no data: not a message_stop
    )
    sniffer = _sniff([stream])
    assert sniffer.usage == Usage()
    assert sniffer.skipped_events == 1
    assert sniffer.saw_message_start is False
    assert sniffer.saw_message_stop is False
    assert sniffer.stop_reason is None


def test_sniffer_joins_multiline_data() -> None:
    stream = (
        b"event: message_start\n"
        b'data: {"type":"message_start",\n'
        b'data: "message":{"id":"m","model":"x","usage":{"input_tokens":5}}}\n\n'
    )
    sniffer = _sniff([stream])
    assert sniffer.usage.input_tokens == 5
    assert sniffer.model == "x"


def test_sniffer_close_handles_an_unterminated_last_event() -> None:
    tail = (
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":4}}'
    )
    sniffer = SSEUsageSniffer()
    sniffer.feed(tail)
    assert sniffer.stop_reason is None
    sniffer.close()
    assert sniffer.stop_reason == "end_turn"
    assert sniffer.usage.output_tokens == 4
    # Closing twice changes nothing.
    sniffer.close()
    assert sniffer.usage.output_tokens == 4


def test_sniffer_skips_oversized_events_and_recovers() -> None:
    limit = 1024
    huge_start = {
        "type": "message_start",
        "message": {"id": "m", "model": "x", "usage": {"input_tokens": 9}, "pad": "x" * 5000},
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 3},
    }
    data = encode_sse("message_start", huge_start) + encode_sse("message_delta", delta)
    for chunk_size in (1, 7, 100, len(data)):
        sniffer = SSEUsageSniffer(max_event_bytes=limit)
        for i in range(0, len(data), chunk_size):
            sniffer.feed(data[i : i + chunk_size])
            assert sniffer.buffered_bytes <= limit
        sniffer.close()
        assert sniffer.skipped_events == 1
        assert sniffer.model is None
        assert sniffer.usage == Usage(output_tokens=3)
        assert sniffer.stop_reason == "end_turn"


def test_sniffer_oversized_multiline_event_is_skipped() -> None:
    line = b'data: "' + b"y" * 600 + b'"\n'
    stream = b"event: message_start\n" + line * 3 + b"\n"
    sniffer = _sniff([stream], max_event_bytes=1024)
    assert sniffer.skipped_events == 1
    assert sniffer.buffered_bytes == 0


def test_sniffer_does_not_buffer_content_deltas() -> None:
    sniffer = SSEUsageSniffer(max_event_bytes=1024)
    sniffer.feed(b"event: content_block_delta\n")
    sniffer.feed(
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'
    )
    for _ in range(1000):
        sniffer.feed(b"z" * 4096)
        assert sniffer.buffered_bytes == 0
    sniffer.feed(b'"}}\n\n')
    sniffer.close()
    # Skipping an event we never needed is not an oversized event.
    assert sniffer.skipped_events == 0
    assert sniffer.buffered_bytes == 0


def test_sniffer_without_event_lines_bounds_unknown_lines() -> None:
    big = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "q" * 5000},
    }
    data = _stream([big, *_events()], event_lines=False)
    sniffer = SSEUsageSniffer(max_event_bytes=2048)
    for i in range(0, len(data), 512):
        sniffer.feed(data[i : i + 512])
        assert sniffer.buffered_bytes <= 2048
    sniffer.close()
    assert sniffer.usage == _expected(_events())


def test_message_delta_keeps_values_it_does_not_repeat() -> None:
    stream = _stream(
        [
            {
                "type": "message_start",
                "message": {"usage": {"input_tokens": 40, "output_tokens": 1}},
            },
            {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 10}},
            {
                "type": "message_delta",
                "delta": {},
                "usage": {"input_tokens": 41, "output_tokens": 20},
            },
        ]
    )
    assert _sniff([stream]).usage == Usage(input_tokens=41, output_tokens=20)


# -- usage helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        (None, Usage()),
        ("nope", Usage()),
        ({}, Usage()),
        (
            {
                "input_tokens": 3,
                "output_tokens": 4,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 6,
                "cache_creation": {"ephemeral_5m_input_tokens": 6},
                "service_tier": "standard",
            },
            Usage(3, 4, 5, 6),
        ),
        ({"input_tokens": None, "output_tokens": "7"}, Usage()),
        ({"input_tokens": 2.9, "output_tokens": True}, Usage(input_tokens=2)),
        ({"input_tokens": -5, "output_tokens": float("nan")}, Usage()),
        ({"output_tokens": float("inf")}, Usage()),
    ],
)
def test_normalize_usage(raw: Any, usage: Usage) -> None:
    assert normalize_usage(raw) == usage


def test_usage_as_dict_has_anthropic_field_names() -> None:
    assert Usage(1, 2, 3, 4).as_dict() == {
        "input_tokens": 1,
        "output_tokens": 2,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 4,
    }


@pytest.mark.parametrize(
    ("value", "count"), [(5, 5), (0, 0), (-1, 0), (1.5, 1), (None, 0), ("3", 0), (False, 0)]
)
def test_as_token_count(value: Any, count: int) -> None:
    assert as_token_count(value) == count


def test_usage_from_message() -> None:
    body = {
        "type": "message",
        "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 7},
    }
    assert usage_from_message(body) == Usage(
        input_tokens=10, output_tokens=2, cache_read_input_tokens=7
    )
    assert usage_from_message({"type": "message"}) == Usage()
    assert usage_from_message({"usage": [1]}) == Usage()


# -- the sniffer never breaks a stream ---------------------------------------------------------

DEEP = 100_000


def _deep_delta(depth: int = DEEP) -> bytes:
    return (
        b'event: message_delta\ndata: {"type":"message_delta","usage":'
        + b"[" * depth
        + b"]" * depth
        + b"}\n\n"
    )


def test_deeply_nested_data_is_skipped_and_the_rest_of_the_stream_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = _events()
    data = _stream(events[:-2]) + _deep_delta() + _deep_delta() + _stream(events[-2:])
    with caplog.at_level(logging.WARNING, logger="proxy.translation.sse"):
        whole = _sniff([data])
        chunked = _sniff([data[i : i + 4096] for i in range(0, len(data), 4096)])
    for sniffer in (whole, chunked):
        assert sniffer.usage == _expected(events)
        assert (sniffer.stop_reason, sniffer.saw_message_stop) == ("tool_use", True)
        assert sniffer.failures == 2
        assert sniffer.skipped_events == 2
        assert sniffer.buffered_bytes == 0
    # Logged once per stream, not once per bad event.
    assert [r.name for r in caplog.records].count("proxy.translation.sse") == 2


def test_any_failure_inside_the_sniffer_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    sniffer = SSEUsageSniffer()
    original = sniffer._handle_line
    failing = {"left": 3}

    def flaky(line: bytes) -> None:
        if line.startswith(b"data:") and failing["left"]:
            failing["left"] -= 1
            raise MemoryError("no room")
        original(line)

    monkeypatch.setattr(sniffer, "_handle_line", flaky)
    events = _events()
    junk = b'event: message_delta\ndata: {"usage": 1}\n\n' * 3
    sniffer.feed(junk + b"event: message_delta\ndata: partial")
    sniffer.feed(b"\n\n" + _stream(events))
    monkeypatch.setattr(sniffer, "_close", lambda: 1 / 0)
    sniffer.close()
    assert sniffer.failures == 4
    assert sniffer.usage == _expected(events)
    assert sniffer.saw_message_stop


_DIGITS = st.integers(min_value=1, max_value=6000).map(lambda n: b"9" * n)
_NUMBER = st.one_of(
    _DIGITS,
    st.sampled_from([b"1e999", b"-1e999", b"-5", b"1.5e308", b"NaN", b"Infinity", b"0x10"]),
)
_GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.integers(min_value=900, max_value=120_000).map(_deep_delta),
    st.integers(min_value=900, max_value=120_000).map(
        lambda depth: b'data: {"type":"message_start","message":' + b"{" * depth + b"\n\n"
    ),
    _NUMBER.map(
        lambda number: (
            b'event: message_delta\ndata: {"type":"message_delta","usage":'
            b'{"output_tokens":' + number + b',"input_tokens":' + number + b"}}\n\n"
        )
    ),
    _NUMBER.map(
        lambda number: (
            b'data: {"type":"message_start","message":{"model":"m","usage":'
            b'{"input_tokens":' + number + b"}}}\n\n"
        )
    ),
    # Invalid UTF-8 where text is expected, and in names.
    st.binary(min_size=1, max_size=8).map(
        lambda raw: (
            b'event: message_start\ndata: {"type":"message_start","message":{"model":"'
            + b"\xff\xfe"
            + raw
            + b'"}}\n\nevent: \xc3\x28'
            + raw
            + b"\n"
        )
    ),
    st.sampled_from(
        [
            b"event: error\ndata: " + b'{"type":"error","error":' * 2000 + b"\n\n",
            b"data: \r\n\r\n",
            b"\r\r\r\n\n",
            b"event: message_stop\ndata: " + b"x" * 300_000 + b"\n\n",
        ]
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    garbage=st.lists(_GARBAGE, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=2_000_000), max_size=30),
    crlf=st.booleans(),
)
def test_fuzzed_streams_never_raise_and_a_good_stream_after_them_is_read(
    garbage: list[bytes], cuts: list[int], crlf: bool
) -> None:
    """Whatever comes before it, in whatever chunks, the sniffer neither raises nor holds more
    than its bound, and an intact stream after a blank line is read exactly."""
    events = _events()
    data = b"".join(garbage) + b"\n\n" + _stream(events, crlf=crlf)
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]

    sniffer = SSEUsageSniffer()
    for chunk in chunks:
        sniffer.feed(chunk)
        assert sniffer.buffered_bytes <= sse.DEFAULT_MAX_EVENT_BYTES
    sniffer.close()

    assert sniffer.usage == _expected(events)
    assert (sniffer.model, sniffer.stop_reason, sniffer.saw_message_stop) == (
        MODEL,
        "tool_use",
        True,
    )
    assert all(isinstance(value, int) and value >= 0 for value in sniffer.usage.as_dict().values())


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    sniffer = SSEUsageSniffer(max_event_bytes=256)
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        sniffer.feed(data[a:b])
        assert sniffer.buffered_bytes <= 256
    sniffer.close()
    assert all(value >= 0 for value in sniffer.usage.as_dict().values())
