"""The hub stream builder and assembler shared by the Gemini and Ollama stream translators.

``assert_well_formed`` is the grammar every hub stream must follow (message_start first with a
complete usage, blocks 0..n-1 each start → deltas of their own kind → stop, one block open at a
time, no blank text block, exactly one message_delta then message_stop — or an error event as the
last event). ``sdk_message`` replays the events through anthropic's own stream accumulator. The
Gemini and Ollama tests import both.
"""

from __future__ import annotations

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai import omit
from openai._models import construct_type
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.types import CreateEmbeddingResponse
from pydantic import TypeAdapter

from proxy.translation.embedding_vectors import embedding_to_base64, openai_embedding_list
from proxy.translation.hub import HubEvent
from proxy.translation.hub_stream import HubStreamBuilder, assemble_message, new_tool_use_id
from proxy.translation.sse import Usage

STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
USAGE_KEYS = {
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
}
DELTA_FOR_BLOCK = {
    "text": {"text_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
}


def assert_well_formed(events: list[HubEvent]) -> None:
    """Anthropic's event grammar (see the module docstring)."""
    assert events, "a stream has at least one event"
    names = [name for name, _ in events]
    for name, data in events:
        assert data["type"] == name
        json.dumps(data)  # serialisable as an SSE data line
    if names[-1] == "error":
        assert names.count("error") == 1
        assert "message_delta" not in names and "message_stop" not in names
        error = events[-1][1]["error"]
        assert isinstance(error["type"], str) and error["type"]
        assert isinstance(error["message"], str) and error["message"]
        body = events[:-1]
        if not body:
            return
    else:
        assert names[-2:] == ["message_delta", "message_stop"]
        assert names.count("message_delta") == 1 and names.count("message_stop") == 1
        assert set(events[-2][1]["usage"]) == USAGE_KEYS
        assert events[-2][1]["delta"]["stop_reason"]
        body = events[:-2]
    assert body[0][0] == "message_start" and names.count("message_start") == 1
    assert set(body[0][1]["message"]["usage"]) == USAGE_KEYS
    open_index: int | None = None
    open_kind = ""
    next_index = 0
    texts: dict[int, str] = {}
    for name, data in body[1:]:
        STREAM_EVENT.validate_python(data)
        if name == "content_block_start":
            assert open_index is None, "one block open at a time"
            assert data["index"] == next_index
            open_index, open_kind = next_index, data["content_block"]["type"]
            next_index += 1
            if open_kind == "text":
                assert data["content_block"]["text"] == ""
                texts[open_index] = ""
        elif name == "content_block_delta":
            assert data["index"] == open_index
            assert data["delta"]["type"] in DELTA_FOR_BLOCK[open_kind]
            if open_kind == "text":
                texts[data["index"]] += data["delta"]["text"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            assert name == "ping", f"unexpected {name} inside the message"
    if names[-1] != "error":
        assert open_index is None, "every block is closed before message_delta"
    for index, text in texts.items():
        assert text.strip(), f"blank text block {index}"


def sdk_message(events: list[HubEvent]) -> Message:
    """The Message anthropic's own accumulator builds from the events (validated by the SDK)."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _, data in events:
        event = STREAM_EVENT.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.to_dict())


def checked(events: list[HubEvent]) -> Message:
    """Well-formed, and assembled alike by the SDK and by ``assemble_message``."""
    assert_well_formed(events)
    message = sdk_message(events)
    ours = Message.model_validate(assemble_message(events))
    assert ours.model_dump() == message.model_dump()
    return message


# --- the builder -------------------------------------------------------------------------------


def builder() -> HubStreamBuilder:
    return HubStreamBuilder(model="m", message_id="msg_1")


def test_blank_text_is_held_until_text_follows_and_dropped_otherwise() -> None:
    hub = builder()
    hub.text("\n\n")
    hub.text("  ")
    first = hub.drain()
    assert [name for name, _ in first] == ["message_start"]
    hub.text("Hi")
    hub.text("\n")
    second = hub.drain()
    assert second[0][1]["content_block"] == {"type": "text", "text": ""}
    assert [e[1]["delta"]["text"] for e in second[1:]] == ["\n\n  Hi", "\n"]
    hub.close_block()
    hub.text("   ")  # blank, then a tool call: never a block
    hub.tool_use(tool_id="toolu_1", name="f", arguments={"a": [1]})
    hub.finish("tool_use")
    message = checked([*first, *second, *hub.drain()])
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"a": [1]}  # type: ignore[union-attr]


def test_signature_signs_the_open_thinking_block_or_stands_alone() -> None:
    hub = builder()
    hub.thinking("plan")
    hub.signature("gemini:A")
    hub.signature("gemini:B")  # nothing open: a thinking block of its own
    hub.thinking("more")
    hub.finish("end_turn")
    message = checked(hub.drain())
    assert [(b.type, b.thinking, b.signature) for b in message.content] == [  # type: ignore[union-attr]
        ("thinking", "plan", "gemini:A"),
        ("thinking", "", "gemini:B"),
        ("thinking", "more", ""),
    ]


def test_finish_is_idempotent_and_error_ends_the_stream() -> None:
    hub = builder()
    hub.finish("end_turn")
    first = hub.drain()
    hub.finish("end_turn")
    hub.text("late")
    hub.error({"type": "error", "error": {"type": "api_error", "message": "x"}})
    assert hub.drain() == []
    assert [name for name, _ in first] == ["message_start", "message_delta", "message_stop"]

    failing = builder()
    failing.text("partial")
    failing.error({"type": "error", "error": {"type": "api_error", "message": "boom"}})
    failing.finish("end_turn")
    events = failing.drain()
    assert_well_formed(events)
    assert [name for name, _ in events][-1] == "error"


def test_usage_goes_in_message_start_and_message_delta() -> None:
    hub = builder()
    hub.usage = Usage(input_tokens=7, cache_read_input_tokens=3)
    hub.start()
    hub.usage = Usage(input_tokens=7, output_tokens=9, cache_read_input_tokens=3)
    hub.finish("end_turn")
    events = hub.drain()
    assert events[0][1]["message"]["usage"] == {
        "input_tokens": 7,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3,
    }
    assert events[-2][1]["usage"]["output_tokens"] == 9
    assert sdk_message(events).usage.output_tokens == 9


def test_new_tool_use_ids_are_unique_and_anthropic_shaped() -> None:
    ids = {new_tool_use_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("toolu_") and len(i) == 30 for i in ids)


def test_malformed_stream_is_caught_by_the_checker() -> None:
    hub = builder()
    hub.text("a")
    hub.finish("end_turn")
    events = hub.drain()
    with pytest.raises(AssertionError):
        assert_well_formed(events[:-1])  # no message_stop
    with pytest.raises(AssertionError):
        assert_well_formed([events[0], *events[2:]])  # delta without a start


# --- embeddings encoding -----------------------------------------------------------------------


def test_base64_embeddings_decode_as_openai_python_decodes_them() -> None:
    # openai-python asks for base64 by default and decodes it itself (array "f" / numpy float32).
    values = [0.5, -1.25, 3.0e-8, 1234.5]
    answer = openai_embedding_list([values], model="m", prompt_tokens=3, encoding_format="base64")
    assert answer["data"][0]["embedding"] == embedding_to_base64(values)
    parsed = parse_embedding_response(
        construct_type(type_=CreateEmbeddingResponse, value=answer), encoding_format=omit
    )
    assert parsed.data[0].embedding == pytest.approx(values, rel=1e-6)
    assert parsed.usage.prompt_tokens == 3


def test_embedding_values_must_be_finite_numbers() -> None:
    with pytest.raises(ValueError, match="not a number"):
        openai_embedding_list([["0.1"]], model="m", prompt_tokens=0)
    with pytest.raises(ValueError, match="finite"):
        openai_embedding_list([[float("nan")]], model="m", prompt_tokens=0)
