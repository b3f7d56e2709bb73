"""Streams between the hub and OpenAI chunks, both directions.

``AnthropicToChatChunks``: every chunk is validated with openai's ``ChatCompletionChunk`` in
strict mode (no keys beyond the model but ``reasoning_content``) and the chunks are assembled
with openai-python's own stream accumulator. ``ChatChunksToAnthropic``: every event is validated
with anthropic's ``RawMessageStreamEvent``, the events are assembled with anthropic's own
accumulator into a ``Message``, and a Hypothesis property checks the event grammar and that no
tool-argument fragment is ever lost, whatever the upstream sends and wherever it stops.
"""

from __future__ import annotations

import json
from typing import Any

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat._completions import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from proxy.tests.test_translation_openai_validation import assert_chunk
from proxy.tests.test_translation_support import MESSAGE_STOP, block_start, block_stop, delta
from proxy.translation.hub import HubEvent
from proxy.translation.openai_stream import AnthropicToChatChunks, ChatChunksToAnthropic
from proxy.translation.sse import Usage

STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)

# --- hub events -----------------------------------------------------------------------------------


def message_start(inputs: int = 12, read: int = 0, write: int = 0) -> HubEvent:
    usage = {
        "input_tokens": inputs,
        "output_tokens": 1,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return "message_start", {"type": "message_start", "message": message}


def message_delta(reason: str = "end_turn", outputs: int = 40, **usage: int) -> HubEvent:
    return "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": None},
        "usage": {"output_tokens": outputs, **usage},
    }


PING: HubEvent = ("ping", {"type": "ping"})


def text_stream() -> list[HubEvent]:
    return [
        message_start(inputs=12, read=100),
        PING,
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hello"),
        delta(0, type="text_delta", text=" world"),
        block_stop(0),
        message_delta("end_turn", outputs=40),
        MESSAGE_STOP,
    ]


def tool_stream() -> list[HubEvent]:
    return [
        message_start(),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, type="thinking_delta", thinking="Two cities."),
        delta(0, type="signature_delta", signature="EqQB"),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, type="text_delta", text="Checking."),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}),
        delta(2, type="input_json_delta", partial_json=""),
        delta(2, type="input_json_delta", partial_json='{"city": '),
        delta(2, type="input_json_delta", partial_json='"Paris"}'),
        block_stop(2),
        block_start(3, {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}}),
        delta(3, type="input_json_delta", partial_json='{"city": "Oslo"}'),
        block_stop(3),
        message_delta("tool_use", outputs=60),
        MESSAGE_STOP,
    ]


def to_chunks(
    events: list[HubEvent], *, include_usage: bool = True, finish: bool = True
) -> list[dict[str, Any]]:
    translator = AnthropicToChatChunks(
        model="gpt-4o", completion_id="chatcmpl-1", created=17, include_usage=include_usage
    )
    chunks: list[dict[str, Any]] = []
    for name, data in events:
        chunks += translator.feed(name, data)
    if finish:
        chunks += translator.finish()
        assert translator.finish() == []
    for chunk in chunks:
        if "error" not in chunk:
            assert_chunk(chunk)
        json.dumps(chunk)
    return chunks


def accumulate(chunks: list[dict[str, Any]]) -> Any:
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


def deltas(chunks: list[dict[str, Any]]) -> list[Any]:
    return [
        (c["choices"][0]["delta"], c["choices"][0]["finish_reason"])
        if c["choices"]
        else ("usage", c["usage"])
        for c in chunks
    ]


# --- hub -> OpenAI chunks -------------------------------------------------------------------------


def test_text_stream_with_usage() -> None:
    chunks = to_chunks(text_stream())
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello"}, None),
        ({"content": " world"}, None),
        ({}, "stop"),
        (
            "usage",
            {
                "prompt_tokens": 112,
                "completion_tokens": 40,
                "total_tokens": 152,
                "prompt_tokens_details": {"cached_tokens": 100},
            },
        ),
    ]
    assert all(
        c["id"] == "chatcmpl-1" and c["created"] == 17 and c["model"] == "gpt-4o" for c in chunks
    )
    assert all(c["usage"] is None for c in chunks[:-1])
    final = accumulate(chunks)
    assert final.choices[0].message.content == "Hello world"
    assert final.usage.prompt_tokens == 112


def test_without_include_usage_there_is_no_usage_chunk_or_field() -> None:
    chunks = to_chunks(text_stream(), include_usage=False)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all("usage" not in c for c in chunks)


def test_tools_and_thinking() -> None:
    chunks = to_chunks(tool_stream())
    assert deltas(chunks)[:-1] == [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": "Two cities."}, None),
        ({"content": "Checking."}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_a",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_b",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '{"city": "Oslo"}'}}]}, None),
        ({}, "tool_calls"),
    ]
    message = accumulate(chunks).choices[0].message
    assert message.content == "Checking."
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls
    ] == [
        ("toolu_a", "weather", {"city": "Paris"}),
        ("toolu_b", "weather", {"city": "Oslo"}),
    ]


def test_tool_calls_with_end_turn_finish_as_tool_calls() -> None:
    events = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
        block_stop(0),
        message_delta("end_turn"),
        MESSAGE_STOP,
    ]
    assert to_chunks(events, include_usage=False)[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stop_reasons() -> None:
    for reason, finish in [
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("stop_sequence", "stop"),
    ]:
        events = [message_start(), message_delta(reason), MESSAGE_STOP]
        assert to_chunks(events, include_usage=False)[-1]["choices"][0]["finish_reason"] == finish


def test_an_error_event_becomes_the_openai_in_stream_error_and_ends_the_stream() -> None:
    events = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hel"),
        (
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
        delta(0, type="text_delta", text="lo"),
        message_delta(),
    ]
    chunks = to_chunks(events)
    assert chunks[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
    }
    assert len(chunks) == 3


def test_an_upstream_that_ends_early_still_gets_a_finish_and_usage_chunk() -> None:
    events = [
        message_start(inputs=5),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hi"),
    ]
    chunks = to_chunks(events)
    assert deltas(chunks)[-2:] == [
        ({}, "stop"),
        (
            "usage",
            {
                "prompt_tokens": 5,
                "completion_tokens": 1,
                "total_tokens": 6,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        ),
    ]


def test_an_empty_upstream_still_gives_a_valid_stream() -> None:
    chunks = to_chunks([], include_usage=False)
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, None), ({}, "stop")]


def test_nothing_is_sent_after_message_delta_with_usage() -> None:
    translator = AnthropicToChatChunks(model="m", completion_id="c", created=1, include_usage=True)
    for name, data in text_stream()[:-1]:
        translator.feed(name, data)
    assert translator.feed(*MESSAGE_STOP) == []
    assert translator.feed(*message_delta()) == []
    assert translator.finish() == []
    assert translator.usage.usage == Usage(
        input_tokens=12, output_tokens=40, cache_read_input_tokens=100
    )


# --- OpenAI chunks -> hub -------------------------------------------------------------------------


def chunk(finish_reason: str | None = None, **delta_fields: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta_fields, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int = 100, completion: int = 20, cached: int = 40) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def tool_fragment(
    index: int | None, *, call_id: str | None = None, name: str | None = None, arguments: Any = None
) -> dict[str, Any]:
    fragment: dict[str, Any] = {}
    if index is not None:
        fragment["index"] = index
    if call_id is not None:
        fragment["id"] = call_id
        fragment["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    fragment["function"] = function
    return fragment


def to_events(
    chunks: list[dict[str, Any]], *, finish: bool = True
) -> tuple[list[HubEvent], ChatChunksToAnthropic]:
    translator = ChatChunksToAnthropic(model="claude-sonnet-4-5", message_id="msg_1")
    events: list[HubEvent] = []
    for item in chunks:
        events += translator.feed(item)
    if finish:
        events += translator.finish()
        assert translator.finish() == []
        assert translator.feed(chunk(content="late")) == []
    return events, translator


def assemble(events: list[HubEvent]) -> Message:
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        assert data["type"] == name
        json.dumps(data)
        event = STREAM_EVENT.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.to_dict())


def assert_well_formed(events: list[HubEvent]) -> None:
    """message_start; blocks 0..n-1 each start, deltas, stop, one at a time; one message_delta;
    message_stop last; no blank text block."""
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_delta") == 1 and names.count("message_stop") == 1
    usage = events[0][1]["message"]["usage"]
    assert set(usage) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    open_index: int | None = None
    next_index = 0
    texts: dict[int, str] = {}
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None, "a block started before the previous one stopped"
            assert data["index"] == next_index
            open_index, next_index = next_index, next_index + 1
            if data["content_block"]["type"] == "text":
                texts[data["index"]] = ""
        elif name == "content_block_delta":
            assert data["index"] == open_index
            if data["delta"]["type"] == "text_delta":
                texts[data["index"]] += data["delta"]["text"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            raise AssertionError(f"unexpected {name} inside the message")
    assert open_index is None
    assert all(text.strip() for text in texts.values()), "blank text block"


def test_text_stream_to_hub() -> None:
    events, translator = to_events(
        [
            chunk(role="assistant", content=""),
            chunk(content="Hello"),
            chunk(content=" world"),
            chunk("stop"),
            usage_chunk(),
        ]
    )
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 0,
                        "output_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                },
            },
        ),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hello"),
        delta(0, type="text_delta", text=" world"),
        block_stop(0),
        message_delta(
            "end_turn",
            20,
            input_tokens=60,
            cache_creation_input_tokens=0,
            cache_read_input_tokens=40,
        ),
        MESSAGE_STOP,
    ]
    assert translator.usage == Usage(input_tokens=60, output_tokens=20, cache_read_input_tokens=40)
    assert assemble(events).content[0].text == "Hello world"


def test_the_reasoning_tokens_of_the_usage_chunk_are_kept() -> None:
    # The hub's usage has no field for them: the gateway's usage event reads them here.
    usage = usage_chunk(completion=30)
    usage["usage"]["completion_tokens_details"] = {"reasoning_tokens": 25}
    _, without = to_events([chunk(content="Hi"), chunk("stop"), usage_chunk()])
    _, with_reasoning = to_events([chunk(content="Hi"), chunk("stop"), usage])
    assert (without.reasoning_tokens, with_reasoning.reasoning_tokens) == (0, 25)
    assert with_reasoning.usage.output_tokens == 30  # reasoning is part of the output


def test_sequential_parallel_tool_calls() -> None:
    events, _ = to_events(
        [
            chunk(role="assistant", content=None),
            chunk(tool_calls=[tool_fragment(0, call_id="call_a", name="weather", arguments="")]),
            chunk(tool_calls=[tool_fragment(0, arguments='{"city":')]),
            chunk(tool_calls=[tool_fragment(0, arguments=' "Paris"}')]),
            chunk(
                tool_calls=[tool_fragment(1, call_id="call_b", name="weather", arguments='{"city"')]
            ),
            chunk(
                "tool_calls", tool_calls=[tool_fragment(1, arguments=': "Oslo"}')]
            ),  # last fragment with finish
            usage_chunk(),
        ]
    )
    assert_well_formed(events)
    message = assemble(events)
    assert [(b.type, b.id, b.name, b.input) for b in message.content] == [
        ("tool_use", "call_a", "weather", {"city": "Paris"}),
        ("tool_use", "call_b", "weather", {"city": "Oslo"}),
    ]
    assert message.stop_reason == "tool_use"
    # the first call streams live, fragment by fragment
    live = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["index"] == 0
    ]
    assert live == ['{"city":', ' "Paris"}']


def test_interleaved_tool_call_fragments_lose_nothing() -> None:
    events, _ = to_events(
        [
            chunk(
                tool_calls=[
                    tool_fragment(0, call_id="a", name="f", arguments='{"x":'),
                    tool_fragment(1, call_id="b", name="g", arguments='{"y":'),
                ]
            ),
            chunk(tool_calls=[tool_fragment(1, arguments="2}"), tool_fragment(0, arguments="1}")]),
        ]
    )
    assert_well_formed(events)
    message = assemble(events)
    assert [(b.name, b.input) for b in message.content] == [("f", {"x": 1}), ("g", {"y": 2})]
    assert message.stop_reason == "tool_use"


def test_a_name_that_arrives_after_the_id() -> None:
    events, _ = to_events(
        [
            chunk(tool_calls=[tool_fragment(0, call_id="a", arguments="")]),
            chunk(tool_calls=[tool_fragment(0, name="f", arguments='{"k"')]),
            chunk(tool_calls=[tool_fragment(0, arguments=": 1}")]),
            chunk("tool_calls"),
        ]
    )
    assert [(b.id, b.name, b.input) for b in assemble(events).content] == [("a", "f", {"k": 1})]


def test_a_tool_call_without_arguments_gets_an_empty_object() -> None:
    events, _ = to_events(
        [chunk(tool_calls=[tool_fragment(0, call_id="a", name="now")]), chunk("tool_calls")]
    )
    assert_well_formed(events)
    assert assemble(events).content[0].input == {}


def test_fragments_without_index_and_object_arguments() -> None:
    events, _ = to_events(
        [
            chunk(tool_calls=[tool_fragment(None, call_id="a", name="f", arguments={"q": 1})]),
            chunk(tool_calls=[tool_fragment(None, call_id="b", name="g", arguments='{"r":')]),
            chunk(tool_calls=[tool_fragment(None, arguments="2}")]),
            chunk("stop"),
        ]
    )
    message = assemble(events)
    assert [(b.id, b.input) for b in message.content] == [("a", {"q": 1}), ("b", {"r": 2})]
    assert message.stop_reason == "tool_use"  # calls were made, whatever finish_reason says


def test_reasoning_then_text_then_tools_and_no_blank_text_block() -> None:
    events, _ = to_events(
        [
            chunk(role="assistant", content=""),
            chunk(reasoning_content="Think"),
            chunk(reasoning_content="ing."),
            chunk(content="\n\n"),
            chunk(content="Answer"),
            chunk(content="  "),
            chunk(tool_calls=[tool_fragment(0, call_id="a", name="f", arguments="{}")]),
            chunk("tool_calls"),
        ]
    )
    assert_well_formed(events)
    message = assemble(events)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == "Thinking."
    assert message.content[1].text == "\n\nAnswer  "


def test_whitespace_only_text_before_tool_calls_opens_no_block() -> None:
    events, _ = to_events(
        [
            chunk(content="\n"),
            chunk(tool_calls=[tool_fragment(0, call_id="a", name="f", arguments="{}")]),
            chunk("tool_calls"),
        ]
    )
    assert [b.type for b in assemble(events).content] == ["tool_use"]


def test_reasoning_field_named_reasoning() -> None:
    events, _ = to_events([chunk(reasoning="Hm."), chunk(content="Yes.")])
    assert [b.type for b in assemble(events).content] == ["thinking", "text"]


def test_text_after_tool_calls_comes_after_them() -> None:
    events, _ = to_events(
        [
            chunk(tool_calls=[tool_fragment(0, call_id="a", name="f", arguments="{}")]),
            chunk(content="Done."),
            chunk(tool_calls=[tool_fragment(1, call_id="b", name="g", arguments="{}")]),
        ]
    )
    assert_well_formed(events)
    message = assemble(events)
    assert [(b.type, getattr(b, "name", None)) for b in message.content] == [
        ("tool_use", "f"),
        ("tool_use", "g"),
        ("text", None),
    ]


def test_finish_reasons() -> None:
    for finish_reason, stop_reason in [
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("stop", "end_turn"),
        (None, "end_turn"),
    ]:
        events, _ = to_events([chunk(content="x"), chunk(finish_reason)])
        assert assemble(events).stop_reason == stop_reason


def test_an_upstream_that_stops_without_finish_reason_usage_or_done() -> None:
    events, translator = to_events([chunk(role="assistant", content="Hel"), chunk(content="lo")])
    assert_well_formed(events)
    assert events[-3] == ("content_block_stop", {"type": "content_block_stop", "index": 0})
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert translator.usage == Usage()


def test_an_upstream_that_stops_inside_a_tool_call() -> None:
    events, _ = to_events(
        [chunk(tool_calls=[tool_fragment(0, call_id="a", name="f", arguments='{"x": 1')])]
    )
    assert_well_formed(events)
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    fragments = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert fragments == ['{"x": 1']  # sent as received: the client sees the cut


def test_an_empty_upstream_still_ends_the_message() -> None:
    events, _ = to_events([])
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]


def test_an_error_chunk_becomes_an_error_event_and_nothing_follows() -> None:
    events, translator = to_events(
        [
            chunk(content="Hi"),
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
        ],
        finish=False,
    )
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}},
    )
    assert translator.feed(chunk(content="more")) == []
    assert translator.finish() == []


def test_usage_in_the_finish_chunk_itself() -> None:
    final = chunk("stop", content="!")
    final["usage"] = usage_chunk(prompt=10, completion=3, cached=0)["usage"]
    events, translator = to_events([chunk(content="Hi"), final])
    assert translator.usage == Usage(input_tokens=10, output_tokens=3)
    assert assemble(events).content[0].text == "Hi!"


# --- property: any upstream stream gives a well-formed hub stream ---------------------------------

fragment_text = st.text(alphabet=st.sampled_from(list('ab {}":1\n ')), max_size=6)


@st.composite
def upstream_chunks(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Random OpenAI chunks: text, reasoning and tool fragments (interleaved, split anywhere),
    maybe a finish_reason and a usage chunk, cut at a random point. Also returns, per tool call
    index, every argument fragment it was sent (up to the cut)."""
    chunks: list[dict[str, Any]] = []
    named: set[int] = set()
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["text", "reasoning", "tool", "tool", "empty"]))
        if kind == "text":
            chunks.append(chunk(content=draw(st.text(max_size=5))))
        elif kind == "reasoning":
            chunks.append(chunk(reasoning_content=draw(st.text(min_size=1, max_size=5))))
        elif kind == "empty":
            chunks.append(chunk(role="assistant"))
        else:
            fragments = []
            for index in draw(st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True)):
                first = index not in named
                named.add(index)
                fragments.append(
                    tool_fragment(
                        index,
                        call_id=f"call_{index}" if first else None,
                        name=f"tool_{index}" if first else None,
                        arguments=draw(fragment_text),
                    )
                )
            chunks.append(chunk(tool_calls=fragments))
    if draw(st.booleans()):
        chunks.append(
            chunk(draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"])))
        )
    if draw(st.booleans()):
        chunks.append(usage_chunk())
    chunks = chunks[: draw(st.integers(0, len(chunks)))]
    sent: dict[int, str] = {}
    for item in chunks:
        for fragment in (
            item["choices"][0]["delta"].get("tool_calls", []) if item["choices"] else []
        ):
            sent[fragment["index"]] = sent.get(fragment["index"], "") + fragment["function"].get(
                "arguments", ""
            )
    return chunks, sent


@settings(max_examples=300, deadline=None)
@given(upstream_chunks())
def test_any_upstream_stream_gives_a_well_formed_hub_stream(
    case: tuple[list[dict[str, Any]], dict[int, str]],
) -> None:
    chunks, sent = case
    events, _ = to_events(chunks)
    assert_well_formed(events)
    for _, data in events:
        STREAM_EVENT.validate_python(data)
    received: dict[str, str] = {}
    block_call: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start" and data["content_block"]["type"] == "tool_use":
            block_call[data["index"]] = data["content_block"]["id"]
            received[data["content_block"]["id"]] = ""
        elif name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            received[block_call[data["index"]]] += data["delta"]["partial_json"]
    expected = {f"call_{index}": arguments or "{}" for index, arguments in sent.items()}
    assert received == expected
    stop_reason = events[-2][1]["delta"]["stop_reason"]
    if sent:
        assert stop_reason == "tool_use"


def test_a_fragment_that_never_names_a_function_calls_nothing() -> None:
    events, _ = to_events(
        [chunk(content="Hi"), chunk(tool_calls=[tool_fragment(0)]), chunk("stop")]
    )
    assert_well_formed(events)
    message = assemble(events)
    assert [b.type for b in message.content] == ["text"]
    assert message.stop_reason == "end_turn"


def test_stream_round_trip_hub_to_openai_and_back() -> None:
    chunks = to_chunks(tool_stream())
    events, translator = to_events(chunks)
    assert_well_formed(events)
    message = assemble(events)
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [
        ("thinking", None),
        ("text", None),
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {"city": "Oslo"}),
    ]
    assert message.content[0].thinking == "Two cities."
    assert message.stop_reason == "tool_use"
    assert translator.usage == Usage(input_tokens=12, output_tokens=60)
