"""ConverseStream events -> Anthropic SSE events.

Realistic Bedrock event sequences (payloads carry the random ``p`` padding key, as on the wire)
go in; the exact Anthropic event sequence is asserted. Every emitted event is validated with the
anthropic SDK's event types and assembled with the SDK's own stream accumulator into a Message.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from proxy.tests.test_translation_support import MESSAGE_STOP
from proxy.tests.test_translation_support import block_start as a_start
from proxy.tests.test_translation_support import block_stop as a_stop
from proxy.tests.test_translation_support import delta as a_delta
from proxy.translation.converse_common import sanitise_tool_name
from proxy.translation.converse_stream import ConverseStreamTranslator, SSEEvent

Event = tuple[str, dict[str, Any]]
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)


# --- Bedrock events -------------------------------------------------------------------------------


def b(event_type: str, **payload: Any) -> Event:
    return event_type, {**payload, "p": "abcdefgh"}


def message_start() -> Event:
    return b("messageStart", role="assistant")


def text(index: int, value: str) -> Event:
    return b("contentBlockDelta", contentBlockIndex=index, delta={"text": value})


def tool_start(index: int, tool_id: str = "tooluse_abc", name: str = "get_weather") -> Event:
    start = {"toolUse": {"toolUseId": tool_id, "name": name}}
    return b("contentBlockStart", contentBlockIndex=index, start=start)


def tool_input(index: int, fragment: str) -> Event:
    return b("contentBlockDelta", contentBlockIndex=index, delta={"toolUse": {"input": fragment}})


def reasoning(index: int, **delta: Any) -> Event:
    return b("contentBlockDelta", contentBlockIndex=index, delta={"reasoningContent": delta})


def block_stop(index: int) -> Event:
    return b("contentBlockStop", contentBlockIndex=index)


def message_stop(reason: str = "end_turn", **extra: Any) -> Event:
    return b("messageStop", stopReason=reason, **extra)


def metadata(inputs: int = 12, outputs: int = 40, read: int = 0, write: int = 0) -> Event:
    usage = {
        "inputTokens": inputs,
        "outputTokens": outputs,
        "totalTokens": inputs + outputs + read + write,
        "cacheReadInputTokens": read,
        "cacheWriteInputTokens": write,
    }
    return b("metadata", usage=usage, metrics={"latencyMs": 900})


# --- Anthropic events expected --------------------------------------------------------------------

ZERO_USAGE = {
    "input_tokens": 0,
    "output_tokens": 0,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}
MESSAGE_START: SSEEvent = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_bdrk_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": ZERO_USAGE,
        },
    },
)


def a_text(index: int, value: str) -> SSEEvent:
    return a_delta(index, type="text_delta", text=value)


def a_json(index: int, fragment: str) -> SSEEvent:
    return a_delta(index, type="input_json_delta", partial_json=fragment)


def a_message_delta(
    reason: str = "end_turn",
    *,
    inputs: int = 12,
    outputs: int = 40,
    read: int = 0,
    write: int = 0,
    sequence: str | None = None,
) -> SSEEvent:
    usage = {
        "input_tokens": inputs,
        "output_tokens": outputs,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    }
    return "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": sequence},
        "usage": usage,
    }


TEXT_START = {"type": "text", "text": ""}
THINKING_START = {"type": "thinking", "thinking": "", "signature": ""}


def tool_block(tool_id: str = "tooluse_abc", name: str = "get_weather") -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {}}


# --- helpers --------------------------------------------------------------------------------------


def translator(**kwargs: Any) -> ConverseStreamTranslator:
    return ConverseStreamTranslator(model="claude-sonnet-4-5", message_id="msg_bdrk_1", **kwargs)


def run(events: list[Event], *, finish: bool = True, **kwargs: Any) -> list[SSEEvent]:
    stream = translator(**kwargs)
    out: list[SSEEvent] = []
    for event_type, payload in events:
        out += stream.feed(event_type, payload)
    if finish:
        out += stream.finish()
    return out


def assemble(events: list[SSEEvent]) -> Message:
    """Validate each event with the SDK's types; build the final Message with its accumulator."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        assert data["type"] == name
        json.dumps(data)  # serialisable as an SSE data line
        event = STREAM_EVENT.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.to_dict())


def assert_well_formed(events: list[SSEEvent]) -> None:
    """Anthropic's event grammar: start, contiguous blocks each start..stop, delta, stop."""
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_delta") == 1
    open_blocks: set[int] = set()
    next_index = 0
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert data["index"] == next_index
            open_blocks.add(data["index"])
            next_index += 1
            block = data["content_block"]
            assert block["type"] != "text" or block["text"] == ""
        elif name == "content_block_delta":
            assert data["index"] in open_blocks
        elif name == "content_block_stop":
            open_blocks.remove(data["index"])
        else:
            pytest.fail(f"unexpected {name}")
    assert not open_blocks


# --- exact sequences ------------------------------------------------------------------------------

SEQUENCES: list[tuple[str, list[Event], list[SSEEvent], list[dict[str, Any]]]] = [
    (
        "text",
        [message_start(), text(0, "Hel"), text(0, "lo"), block_stop(0), message_stop(), metadata()],
        [
            MESSAGE_START,
            a_start(0, TEXT_START),
            a_text(0, "Hel"),
            a_text(0, "lo"),
            a_stop(0),
            a_message_delta(),
            MESSAGE_STOP,
        ],
        [{"type": "text", "text": "Hello"}],
    ),
    (
        "tool use with input deltas",
        [
            message_start(),
            tool_start(0),
            tool_input(0, '{"city":'),
            tool_input(0, '"Paris"}'),
            block_stop(0),
            message_stop("tool_use"),
            metadata(read=1000),
        ],
        [
            MESSAGE_START,
            a_start(0, tool_block()),
            a_json(0, '{"city":'),
            a_json(0, '"Paris"}'),
            a_stop(0),
            a_message_delta("tool_use", read=1000),
            MESSAGE_STOP,
        ],
        [
            {
                "type": "tool_use",
                "id": "tooluse_abc",
                "name": "get_weather",
                "input": {"city": "Paris"},
            }
        ],
    ),
    (
        "tool use without input deltas ends up {}",
        [
            message_start(),
            tool_start(0, name="list_files"),
            block_stop(0),
            message_stop("tool_use"),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, tool_block(name="list_files")),
            a_json(0, "{}"),
            a_stop(0),
            a_message_delta("tool_use"),
            MESSAGE_STOP,
        ],
        [{"type": "tool_use", "id": "tooluse_abc", "name": "list_files", "input": {}}],
    ),
    (
        "reasoning with signature, then text",
        [
            message_start(),
            reasoning(0, text="Let me "),
            reasoning(0, text="think."),
            reasoning(0, signature="EqQBsig"),
            block_stop(0),
            text(1, "Answer."),
            block_stop(1),
            message_stop(),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, THINKING_START),
            a_delta(0, type="thinking_delta", thinking="Let me "),
            a_delta(0, type="thinking_delta", thinking="think."),
            a_delta(0, type="signature_delta", signature="EqQBsig"),
            a_stop(0),
            a_start(1, TEXT_START),
            a_text(1, "Answer."),
            a_stop(1),
            a_message_delta(),
            MESSAGE_STOP,
        ],
        [
            {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBsig"},
            {"type": "text", "text": "Answer."},
        ],
    ),
    (
        "signature-only reasoning",
        [
            message_start(),
            reasoning(0, text=""),
            reasoning(0, signature="sig"),
            block_stop(0),
            message_stop(),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, THINKING_START),
            a_delta(0, type="signature_delta", signature="sig"),
            a_stop(0),
            a_message_delta(),
            MESSAGE_STOP,
        ],
        [{"type": "thinking", "thinking": "", "signature": "sig"}],
    ),
    (
        "redacted reasoning is buffered into one start/stop pair",
        [
            message_start(),
            reasoning(0, redactedContent="RW5jcnlwdGVk"),
            block_stop(0),
            text(1, "Hi"),
            block_stop(1),
            message_stop(),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, {"type": "redacted_thinking", "data": "RW5jcnlwdGVk"}),
            a_stop(0),
            a_start(1, TEXT_START),
            a_text(1, "Hi"),
            a_stop(1),
            a_message_delta(),
            MESSAGE_STOP,
        ],
        [{"type": "redacted_thinking", "data": "RW5jcnlwdGVk"}, {"type": "text", "text": "Hi"}],
    ),
    (
        "text after toolUse with skipped Bedrock indexes",
        [
            message_start(),
            tool_start(1),
            tool_input(1, "{}"),
            block_stop(1),
            text(3, "Done."),
            block_stop(3),
            message_stop("tool_use"),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, tool_block()),
            a_json(0, "{}"),
            a_stop(0),
            a_start(1, TEXT_START),
            a_text(1, "Done."),
            a_stop(1),
            a_message_delta("tool_use"),
            MESSAGE_STOP,
        ],
        [
            {"type": "tool_use", "id": "tooluse_abc", "name": "get_weather", "input": {}},
            {"type": "text", "text": "Done."},
        ],
    ),
    (
        "blank text before a tool call never becomes a block",
        [
            message_start(),
            text(0, ""),
            text(0, "\n\n"),
            block_stop(0),
            tool_start(1),
            tool_input(1, '{"a":1}'),
            block_stop(1),
            message_stop("tool_use"),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, tool_block()),
            a_json(0, '{"a":1}'),
            a_stop(0),
            a_message_delta("tool_use"),
            MESSAGE_STOP,
        ],
        [{"type": "tool_use", "id": "tooluse_abc", "name": "get_weather", "input": {"a": 1}}],
    ),
    (
        "leading whitespace is held until real text, then sent with it",
        [
            message_start(),
            text(0, "\n"),
            text(0, " Hi"),
            text(0, ""),
            block_stop(0),
            message_stop(),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, TEXT_START),
            a_text(0, "\n Hi"),
            a_stop(0),
            a_message_delta(),
            MESSAGE_STOP,
        ],
        [{"type": "text", "text": "\n Hi"}],
    ),
    (
        "stop sequence and cache usage reach message_delta",
        [
            message_start(),
            text(0, "a"),
            block_stop(0),
            message_stop("stop_sequence", additionalModelResponseFields={"stop_sequence": "END"}),
            metadata(inputs=3, outputs=1, read=10, write=20),
        ],
        [
            MESSAGE_START,
            a_start(0, TEXT_START),
            a_text(0, "a"),
            a_stop(0),
            a_message_delta(
                "stop_sequence", inputs=3, outputs=1, read=10, write=20, sequence="END"
            ),
            MESSAGE_STOP,
        ],
        [{"type": "text", "text": "a"}],
    ),
    (
        "stream ending without metadata",
        [message_start(), text(0, "a"), block_stop(0), message_stop("max_tokens")],
        [
            MESSAGE_START,
            a_start(0, TEXT_START),
            a_text(0, "a"),
            a_stop(0),
            a_message_delta("max_tokens", inputs=0, outputs=0),
            MESSAGE_STOP,
        ],
        [{"type": "text", "text": "a"}],
    ),
    (
        "stream cut before messageStop: open blocks are closed, end_turn",
        [message_start(), text(0, "partial"), tool_start(1), tool_input(1, '{"x"')],
        [
            MESSAGE_START,
            a_start(0, TEXT_START),
            a_text(0, "partial"),
            a_start(1, tool_block()),
            a_json(1, '{"x"'),
            a_stop(0),
            a_stop(1),
            a_message_delta(inputs=0, outputs=0),
            MESSAGE_STOP,
        ],
        [],  # the tool input is cut mid-JSON: not assembled below
    ),
    (
        "empty stream",
        [],
        [MESSAGE_START, a_message_delta(inputs=0, outputs=0), MESSAGE_STOP],
        [],
    ),
    (
        "metadata before messageStop is held until messageStop",
        [message_start(), text(0, "a"), block_stop(0), metadata(inputs=5), message_stop()],
        [
            MESSAGE_START,
            a_start(0, TEXT_START),
            a_text(0, "a"),
            a_stop(0),
            a_message_delta(inputs=5),
            MESSAGE_STOP,
        ],
        [{"type": "text", "text": "a"}],
    ),
    (
        "unknown events and deltas are ignored",
        [
            message_start(),
            b("someFutureEvent", x=1),
            b("contentBlockDelta", contentBlockIndex=0, delta={"citation": {"title": "t"}}),
            text(1, "a"),
            b("contentBlockDelta", contentBlockIndex=1, delta={"reasoningContent": {"text": "x"}}),
            tool_input(1, "{}"),
            block_stop(7),
            block_stop(1),
            text(1, "late"),
            message_stop(),
            metadata(),
        ],
        [
            MESSAGE_START,
            a_start(0, TEXT_START),
            a_text(0, "a"),
            a_stop(0),
            a_message_delta(),
            MESSAGE_STOP,
        ],
        [{"type": "text", "text": "a"}],
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [(s[1], s[2]) for s in SEQUENCES], ids=[s[0] for s in SEQUENCES]
)
def test_exact_event_sequence(events: list[Event], expected: list[SSEEvent]) -> None:
    assert run(events) == expected


@pytest.mark.parametrize(
    ("events", "content"),
    [(s[1], s[3]) for s in SEQUENCES if s[3] or not s[1]],
    ids=[s[0] for s in SEQUENCES if s[3] or not s[1]],
)
def test_sdk_accumulator_builds_a_valid_message(
    events: list[Event], content: list[dict[str, Any]]
) -> None:
    emitted = run(events)
    assert_well_formed(emitted)
    message = assemble(emitted)
    assert [block.to_dict() for block in message.content] == content
    assert message.model == "claude-sonnet-4-5"
    assert message.id == "msg_bdrk_1"


def test_message_delta_waits_for_metadata() -> None:
    stream = translator()
    assert stream.feed(*message_start()) == [MESSAGE_START]
    assert stream.feed(*text(0, "a")) == [a_start(0, TEXT_START), a_text(0, "a")]
    assert stream.feed(*block_stop(0)) == [a_stop(0)]
    assert stream.feed(*message_stop("end_turn")) == []
    assert stream.stop_reason == "end_turn"
    assert stream.usage == ZERO_USAGE
    assert stream.feed(*metadata(inputs=7, outputs=3, read=100, write=50)) == [
        a_message_delta(inputs=7, outputs=3, read=100, write=50),
        MESSAGE_STOP,
    ]
    assert stream.usage == {
        "input_tokens": 7,
        "output_tokens": 3,
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 100,
    }
    # Everything after the end is ignored; finish has nothing left to send.
    assert stream.feed(*text(1, "more")) == []
    assert stream.finish() == []


def test_usage_keeps_the_cache_ttl_breakdown() -> None:
    stream = translator()
    usage = {
        "inputTokens": 1,
        "outputTokens": 2,
        "totalTokens": 3003,
        "cacheWriteInputTokens": 3000,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 3000}],
    }
    stream.feed("metadata", {"usage": usage, "metrics": {"latencyMs": 1}})
    assert stream.usage["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 3000,
    }
    # message_delta carries only the fields Anthropic sends there.
    delta = dict(stream.finish())["message_delta"]
    assert "cache_creation" not in delta["usage"]
    assert delta["usage"]["cache_creation_input_tokens"] == 3000


def test_stop_reason_property() -> None:
    stream = translator()
    assert stream.stop_reason is None
    stream.feed(*message_stop("guardrail_intervened"))
    assert stream.stop_reason == "refusal"
    unfinished = translator()
    unfinished.finish()
    assert unfinished.stop_reason == "end_turn"


def test_redacted_chunks_are_joined() -> None:
    first, second = base64.b64encode(b"abc").decode(), base64.b64encode(b"de").decode()
    events = [
        reasoning(0, redactedContent=first),
        reasoning(0, redactedContent=second),
        block_stop(0),
    ]
    emitted = run(events)
    assert emitted[1] == a_start(
        0, {"type": "redacted_thinking", "data": base64.b64encode(b"abcde").decode()}
    )


def test_redacted_bytes_from_botocore_are_encoded() -> None:
    emitted = run([reasoning(0, redactedContent=b"\x00\x01"), block_stop(0)])
    assert emitted[1] == a_start(0, {"type": "redacted_thinking", "data": "AAE="})


def test_tool_names_are_mapped_back() -> None:
    sanitised = sanitise_tool_name("mcp.srv/read")
    emitted = run(
        [tool_start(0, name=sanitised), block_stop(0)], tool_names={sanitised: "mcp.srv/read"}
    )
    assert emitted[1] == a_start(0, tool_block(name="mcp.srv/read"))


# --- any realistic Bedrock stream gives a well-formed Anthropic stream ----------------------------

_bedrock_blocks = st.lists(
    st.one_of(
        st.builds(
            lambda parts: ("text", parts),
            st.lists(st.sampled_from(["", " ", "\n", "Hi", " there"]), max_size=4),
        ),
        st.builds(
            lambda parts: ("reasoning", parts),
            st.lists(st.sampled_from(["", "hm", " ok"]), max_size=3),
        ),
        st.builds(
            lambda parts: ("tool", parts),
            st.sampled_from([[], ["{}"], ['{"a":', "1}"], ["", '{"b":2}']]),
        ),
        st.just(("redacted", ["RW5j"])),
    ),
    max_size=6,
)


def _bedrock_stream(blocks: list[tuple[str, list[str]]], gaps: list[int]) -> list[Event]:
    events = [message_start()]
    index = 0
    for (kind, parts), gap in zip(blocks, gaps, strict=False):
        index += gap
        if kind == "text":
            events += [text(index, p) for p in parts]
        elif kind == "reasoning":
            events += [reasoning(index, text=p) for p in parts] + [
                reasoning(index, signature="sig")
            ]
        elif kind == "tool":
            events += [tool_start(index, f"tooluse_{index}")] + [
                tool_input(index, p) for p in parts
            ]
        else:
            events += [reasoning(index, redactedContent=p) for p in parts]
        events.append(block_stop(index))
        index += 1
    return events + [message_stop("tool_use"), metadata()]


@settings(max_examples=200, deadline=None)
@given(
    blocks=_bedrock_blocks,
    gaps=st.lists(st.integers(0, 2), min_size=6, max_size=6),
    finish=st.booleans(),
)
def test_any_stream_is_well_formed(
    blocks: list[tuple[str, list[str]]], gaps: list[int], finish: bool
) -> None:
    emitted = run(_bedrock_stream(blocks, gaps), finish=finish)
    assert_well_formed(emitted)
    message = assemble(emitted)
    for block in message.content:
        assert block.type != "text" or block.text.strip()
    expected_kinds = [
        {
            "text": "text",
            "reasoning": "thinking",
            "tool": "tool_use",
            "redacted": "redacted_thinking",
        }[kind]
        for kind, parts in blocks
        if kind not in ("text",) or "".join(parts).strip()
    ]
    assert [block.type for block in message.content] == expected_kinds
    assert message.usage.input_tokens == 12
    assert message.usage.output_tokens == 40
