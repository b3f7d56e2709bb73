"""OpenAI chat requests -> hub requests and back (``chat_request_to_anthropic``,
``anthropic_request_to_chat``), rule by rule, with round trips.

Every hub request produced is checked with anthropic's ``MessageCreateParams`` types strictly
and the rules Anthropic enforces; every OpenAI request with openai's ``CompletionCreateParams``
types strictly and the pairing rules (see ``test_translation_openai_validation``).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.testing.validation.openai_rules import validate_chat_completion
from proxy.tests.test_translation_openai_validation import (
    anthropic_request_errors,
    chat_request_errors,
)
from proxy.tests.test_translation_support import tool_result, tool_use
from proxy.translation.hub import TranslationError
from proxy.translation.openai_chat import anthropic_request_to_chat, chat_request_to_anthropic
from proxy.translation.openai_common import REASONING_BUDGETS

DEFAULT_MAX = 4096
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
GIF = b"GIF89a" + b"\x00" * 20
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20
BMP = b"BM" + b"\x00" * 30


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def to_hub(**body: Any) -> dict[str, Any]:
    body.setdefault("model", "gpt-4o")
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    hub = chat_request_to_anthropic(body, default_max_tokens=DEFAULT_MAX)
    assert anthropic_request_errors(hub) == [], hub
    return hub


def to_chat(**hub: Any) -> dict[str, Any]:
    hub.setdefault("model", "claude-sonnet-4-5")
    hub.setdefault("max_tokens", 1000)
    hub.setdefault("messages", [{"role": "user", "content": "Hi"}])
    chat = anthropic_request_to_chat(hub, model="gpt-4o")
    assert chat_request_errors(chat) == [], chat
    # The fake OpenAI upstream's rules too: what it refuses, the gateway must never send.
    assert validate_chat_completion(chat) == [], chat
    return chat


def rejects(param: str, **body: Any) -> TranslationError:
    body.setdefault("model", "gpt-4o")
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    with pytest.raises(TranslationError) as caught:
        chat_request_to_anthropic(body, default_max_tokens=DEFAULT_MAX)
    assert caught.value.param == param, caught.value.message
    return caught.value


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


# --- OpenAI -> hub: top level ---------------------------------------------------------------------


def test_plain_text_request() -> None:
    assert to_hub(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}]) == {
        "model": "gpt-4o",
        "max_tokens": DEFAULT_MAX,
        "messages": [user("Hello")],
    }


def test_system_and_developer_messages_anywhere_become_the_system_blocks_in_order() -> None:
    hub = to_hub(
        messages=[
            {"role": "system", "content": "One."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": "Three."},
            {"role": "user", "content": "Again"},
        ]
    )
    assert hub["system"] == [
        {"type": "text", "text": "One."},
        {"type": "text", "text": "Two."},
        {"type": "text", "text": "Three."},
    ]
    assert [m["role"] for m in hub["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, DEFAULT_MAX),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 70}, 70),
        ({"max_tokens": 50, "max_completion_tokens": 70}, 70),
    ],
)
def test_max_tokens(fields: dict[str, Any], expected: int) -> None:
    assert to_hub(**fields)["max_tokens"] == expected


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_completion_tokens": True}, "max_completion_tokens"),
        ({"n": 2}, "n"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": "x"}, "top_p"),
        ({"stop": 3}, "stop"),
        ({"stop": ["a", 1]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages.0"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tool_choice": "sometimes", "tools": []}, "tool_choice"),
        ({"tools": {"f": 1}}, "tools"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools.0.function.name"),
    ],
)
def test_invalid_fields_name_the_param(fields: dict[str, Any], param: str) -> None:
    rejects(param, **fields)


def test_n_of_one_is_fine() -> None:
    assert "n" not in to_hub(n=1)


@pytest.mark.parametrize(
    ("given", "sent"), [(0, 0.0), (0.3, 0.3), (1, 1.0), (1.7, 1.0), (2, 1.0), (-0.5, 0.0)]
)
def test_temperature_is_clamped_to_anthropics_range(given: float, sent: float) -> None:
    assert to_hub(temperature=given)["temperature"] == sent


def test_top_p_is_copied() -> None:
    assert to_hub(top_p=0.9)["top_p"] == 0.9


@pytest.mark.parametrize(
    ("stop", "expected"),
    [("END", ["END"]), (["a", "", "b"], ["a", "b"]), ("", None), ([""], None), (None, None)],
)
def test_stop_becomes_stop_sequences_without_empty_strings(stop: Any, expected: Any) -> None:
    assert to_hub(stop=stop).get("stop_sequences") == expected


def test_user_becomes_metadata_user_id_and_stream_is_copied() -> None:
    hub = to_hub(user="alice", stream=True, stream_options={"include_usage": True})
    assert hub["metadata"] == {"user_id": "alice"}
    assert hub["stream"] is True
    assert "stream_options" not in hub


def test_unknown_and_unmappable_fields_are_ignored() -> None:
    hub = to_hub(
        seed=4,
        logit_bias={"50256": -100},
        presence_penalty=0.5,
        metadata={"team": "a"},
        store=True,
        future_field={"x": 1},
    )
    assert set(hub) == {"model", "max_tokens", "messages"}


# --- OpenAI -> hub: messages ----------------------------------------------------------------------


def test_consecutive_same_role_messages_are_merged() -> None:
    hub = to_hub(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "e"},
        ]
    )
    assert hub["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
        },
        user("e"),
    ]


def test_blank_text_and_empty_messages_are_dropped() -> None:
    hub = to_hub(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": " "}],
            },
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "\n"},
            {"role": "user", "content": "b"},
        ]
    )
    assert hub["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_a_final_assistant_prefill_loses_trailing_whitespace() -> None:
    hub = to_hub(
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure: \n"}]
    )
    assert hub["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Sure:"}],
    }


def test_assistant_refusal_parts_are_text_and_reasoning_content_is_not_sent_back() -> None:
    hub = to_hub(
        messages=[
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "No."}],
                "reasoning_content": "The user said hi.",
            },
            {"role": "user", "content": "Why?"},
        ]
    )
    assert hub["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "No."}]}
    assert "The user said hi." not in json.dumps(hub)


def test_tool_calls_and_results_round_trip_into_tool_use_and_tool_result() -> None:
    hub = to_hub(
        messages=[
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    call("call_1", "get_weather", '{"city": "Paris"}'),
                    call("call_2", "get_weather", '{"city":"Oslo"}'),
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9C"}]},
            {"role": "user", "content": "And tomorrow?"},
        ],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "strict": True,
                },
            }
        ],
    )
    assert hub["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                tool_use("call_1", city="Paris"),
                tool_use("call_2", city="Oslo"),
            ],
        },
        {
            "role": "user",
            "content": [
                tool_result("call_1"),
                tool_result("call_2", [{"type": "text", "text": "9C"}]),
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    assert hub["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]


def test_tool_results_go_first_even_after_a_user_message() -> None:
    hub = to_hub(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call("c1", "f", "{}")]},
            {"role": "user", "content": "note"},
            {"role": "tool", "tool_call_id": "c1", "content": ""},
        ]
    )
    assert hub["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1"},
        {"type": "text", "text": "note"},
    ]


@pytest.mark.parametrize("arguments", ["", "  ", None])
def test_empty_tool_arguments_are_an_empty_object(arguments: Any) -> None:
    tool_call = call("c1", "f", "x")
    tool_call["function"]["arguments"] = arguments
    hub = to_hub(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]
    )
    assert hub["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"', "3"])
def test_tool_arguments_that_are_not_a_json_object_are_rejected(arguments: str) -> None:
    rejects(
        "messages.1.tool_calls.1.function.arguments",
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call("a", "f", "{}"), call("b", "f", arguments)]},
        ],
    )


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "assistant", "tool_calls": [{"type": "function"}]}, "messages.1.tool_calls.0.id"),
        (
            {"role": "assistant", "tool_calls": [{"id": "x", "function": {"arguments": "{}"}}]},
            "messages.1.tool_calls.0.function.name",
        ),
        (
            {"role": "assistant", "tool_calls": [{"id": "x", "type": "custom", "custom": {}}]},
            "messages.1.tool_calls.0",
        ),
        ({"role": "assistant", "tool_calls": "f()"}, "messages.1.tool_calls"),
        ({"role": "tool", "content": "x"}, "messages.1.tool_call_id"),
    ],
)
def test_malformed_tool_messages_name_the_field(message: dict[str, Any], param: str) -> None:
    rejects(param, messages=[{"role": "user", "content": "go"}, message])


# --- OpenAI -> hub: content parts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "claimed", "media_type"),
    [
        (PNG, "image/png", "image/png"),
        (PNG, "image/jpeg", "image/png"),  # the bytes win over the claim
        (JPEG, "image/jpg", "image/jpeg"),
        (GIF, "image/gif", "image/gif"),
        (WEBP, "application/octet-stream", "image/webp"),
    ],
)
def test_data_url_images_become_base64_with_the_sniffed_type(
    raw: bytes, claimed: str, media_type: str
) -> None:
    hub = to_hub(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": data_url(raw, claimed), "detail": "high"},
                    },
                ],
            }
        ]
    )
    assert hub["messages"][0]["content"][1] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": media_type,
            "data": base64.b64encode(raw).decode(),
        },
    }


def test_url_images_become_url_sources() -> None:
    url = "https://example.com/cat.png?size=large"
    hub = to_hub(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    )
    assert hub["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": url}}
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "image_url", "image_url": {"url": data_url(BMP, "image/bmp")}}, ".image_url.url"),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
            ".image_url.url",
        ),
        ({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}, ".image_url.url"),
        ({"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}, ".image_url.url"),
        ({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, ".image_url.url"),
        ({"type": "image_url", "image_url": {}}, ".image_url.url"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, ".type"),
        ({"type": "file", "file": {"file_id": "file-1"}}, ".type"),
        ({"type": "video_url", "video_url": {"url": "https://x"}}, ".type"),
        ({"type": "text"}, ".text"),
    ],
)
def test_unsupported_content_parts_name_the_part(part: dict[str, Any], param: str) -> None:
    rejects(
        "messages.1.content.1" + param,
        messages=[
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "see"}, part]},
        ],
    )


def test_system_messages_take_text_parts_only() -> None:
    rejects(
        "messages.0.content.0.type",
        messages=[
            {
                "role": "system",
                "content": [{"type": "image_url", "image_url": {"url": "https://x"}}],
            },
            {"role": "user", "content": "hi"},
        ],
    )


# --- OpenAI -> hub: tools and tool choice ---------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_tool_without_parameters_gets_an_object_schema() -> None:
    hub = to_hub(tools=[{"type": "function", "function": {"name": "now"}}])
    assert hub["tools"] == [{"name": "now", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert to_hub(tools=[TOOL], tool_choice=choice)["tool_choice"] == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false(choice: Any, expected: dict[str, Any]) -> None:
    hub = to_hub(tools=[TOOL], tool_choice=choice, parallel_tool_calls=False)
    assert hub["tool_choice"] == expected


def test_parallel_tool_calls_true_and_tool_choice_without_tools_change_nothing() -> None:
    assert "tool_choice" not in to_hub(tools=[TOOL], parallel_tool_calls=True)
    assert "tool_choice" not in to_hub(tool_choice="required")


def test_allowed_tools_choice_keeps_only_those_tools() -> None:
    other = {"type": "function", "function": {"name": "g"}}
    hub = to_hub(
        tools=[TOOL, other],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [{"type": "function", "function": {"name": "g"}}],
            },
        },
    )
    assert [t["name"] for t in hub["tools"]] == ["g"]
    assert hub["tool_choice"] == {"type": "any"}


# --- OpenAI -> hub: reasoning and response_format -------------------------------------------------


@pytest.mark.parametrize(("effort", "budget"), [(e, b) for e, b in REASONING_BUDGETS.items() if b])
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    hub = to_hub(reasoning_effort=effort, max_completion_tokens=100_000)
    assert hub["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert hub["max_tokens"] == 100_000


def test_reasoning_effort_table() -> None:
    assert REASONING_BUDGETS == {
        "none": None,
        "minimal": 1024,
        "low": 2048,
        "medium": 8192,
        "high": 16384,
        "xhigh": 32768,
        "max": 32768,
    }


def test_a_budget_not_below_max_tokens_raises_max_tokens() -> None:
    hub = to_hub(reasoning_effort="medium", max_tokens=1000)
    assert hub["thinking"]["budget_tokens"] == 8192
    assert hub["max_tokens"] == 8192 + 1000
    assert to_hub(reasoning_effort="low")["max_tokens"] == DEFAULT_MAX  # 2048 < 4096 already


def test_reasoning_drops_temperature_and_a_low_top_p() -> None:
    hub = to_hub(reasoning_effort="low", temperature=0.2, top_p=0.5)
    assert "temperature" not in hub and "top_p" not in hub
    assert to_hub(reasoning_effort="low", top_p=0.97)["top_p"] == 0.97


def test_reasoning_effort_none_and_forced_tools_mean_no_thinking() -> None:
    assert "thinking" not in to_hub(reasoning_effort="none")
    hub = to_hub(reasoning_effort="high", tools=[TOOL], tool_choice="required")
    assert "thinking" not in hub


def test_response_format_json_object_adds_an_instruction() -> None:
    hub = to_hub(
        messages=[{"role": "system", "content": "Sys."}, {"role": "user", "content": "hi"}],
        response_format={"type": "json_object"},
    )
    assert hub["system"][0] == {"type": "text", "text": "Sys."}
    assert "JSON object" in hub["system"][1]["text"]


def test_response_format_json_schema_puts_the_schema_in_the_instruction() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    hub = to_hub(
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    )
    assert hub["system"][0]["text"].endswith(json.dumps(schema, separators=(",", ":")))


def test_response_format_text_adds_nothing() -> None:
    assert "system" not in to_hub(response_format={"type": "text"})


def test_the_input_is_not_modified() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call("c", "f", "{}")]},
            {"role": "tool", "tool_call_id": "c", "content": "r"},
            {"role": "user", "content": "x"},
        ],
        "tools": [TOOL],
    }
    before = copy.deepcopy(body)
    chat_request_to_anthropic(body, default_max_tokens=10)
    assert body == before


# --- hub -> OpenAI --------------------------------------------------------------------------------


def test_hub_to_chat_basic_fields() -> None:
    chat = to_chat(
        system=[
            {"type": "text", "text": "A."},
            {"type": "text", "text": "B.", "cache_control": {"type": "ephemeral"}},
        ],
        max_tokens=321,
        temperature=0.4,
        top_p=0.8,
        top_k=40,
        stop_sequences=["END"],
        metadata={"user_id": "alice"},
    )
    assert chat == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "A.\n\nB."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 321,
        "temperature": 0.4,
        "top_p": 0.8,
        "stop": ["END"],
        "user": "alice",
    }


def test_hub_to_chat_streaming_asks_for_usage() -> None:
    chat = to_chat(stream=True)
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}
    assert "stream_options" not in to_chat(stream=False)


def test_a_long_user_id_is_not_sent() -> None:
    assert "user" not in to_chat(metadata={"user_id": json.dumps({"device_id": "x" * 80})})


def test_hub_to_chat_tool_round() -> None:
    chat = to_chat(
        system="Be terse.",
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "abc"},
                    {"type": "text", "text": "Checking."},
                    tool_use("toolu_1", "weather", city="Paris"),
                    tool_use("toolu_2", "weather", city="Oslo"),
                ],
            },
            {
                "role": "user",
                "content": [
                    tool_result("toolu_1"),
                    tool_result(
                        "toolu_2",
                        [{"type": "text", "text": "no"}, {"type": "text", "text": "data"}],
                        is_error=True,
                    ),
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        tools=[
            {
                "name": "weather",
                "description": "Weather",
                "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        ],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "no\ndata"},
        {"role": "user", "content": "Thanks"},
    ]
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather",
                "parameters": {"type": "object"},
            },
        }
    ]
    assert chat["tool_choice"] == "required"
    assert chat["parallel_tool_calls"] is False


def test_hub_to_chat_tool_call_only_turns_have_null_content_and_thinking_only_turns_go() -> None:
    chat = to_chat(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}],
            },
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}],
            },
            {"role": "user", "content": "again"},
        ],
        tools=[{"name": "f", "input_schema": {"type": "object"}}],
    )
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "tool", "user"]


def test_hub_to_chat_images_in_tool_results_follow_in_a_user_message() -> None:
    png = base64.b64encode(PNG).decode()
    chat = to_chat(
        messages=[
            {"role": "user", "content": "shot"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "screen", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [
                            {"type": "text", "text": "Screenshot:"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": png,
                                },
                            },
                        ],
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/b.png"},
                    },
                    {"type": "text", "text": "Compare."},
                ],
            },
        ],
        tools=[{"name": "screen", "input_schema": {"type": "object"}}],
    )
    assert chat["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t", "content": "Screenshot:"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
                {"type": "text", "text": "Compare."},
            ],
        },
    ]


def test_hub_to_chat_documents() -> None:
    chat = to_chat(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": "Report",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBERi0=",
                        },
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "plain"},
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ]
    )
    assert chat["messages"][0]["content"] == [
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "Report"},
        },
        {"type": "text", "text": "plain"},
        {"type": "text", "text": "Summarise."},
    ]
    with pytest.raises(TranslationError) as caught:
        anthropic_request_to_chat(
            {
                "model": "c",
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "url", "url": "https://x/a.pdf"},
                            }
                        ],
                    }
                ],
            },
            model="gpt",
        )
    assert caught.value.param == "messages.0.content.0.source"


def test_hub_to_chat_system_messages_between_turns_stay_system_messages() -> None:
    chat = to_chat(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "system", "content": [{"type": "text", "text": "Reminder."}]},
            {"role": "user", "content": "b"},
        ]
    )
    assert chat["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "system", "content": "Reminder."},
        {"role": "user", "content": "b"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
        ({"type": "tool", "name": "web_search"}, None),  # a dropped server tool
    ],
)
def test_hub_to_chat_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    chat = to_chat(
        tools=[
            {"name": "f", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        tool_choice=choice,
    )
    assert chat.get("tool_choice") == expected


def test_hub_to_chat_without_client_tools_sends_no_tool_fields() -> None:
    chat = to_chat(
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(chat)


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16383}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, None, "high"),
        ({"type": "adaptive"}, None, "medium"),
        ({"type": "adaptive"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "disabled"}, None, None),
    ],
)
def test_hub_to_chat_thinking_becomes_reasoning_effort(
    thinking: dict[str, Any], output_config: Any, effort: str | None
) -> None:
    extra = {"output_config": output_config} if output_config else {}
    chat = to_chat(thinking=thinking, max_tokens=20000, **extra)
    assert chat.get("reasoning_effort") == effort


# --- round trips ----------------------------------------------------------------------------------


def canonical_chat_request() -> dict[str, Any]:
    """An OpenAI request already in the form the hub translation sends back."""
    png = base64.b64encode(PNG).decode()
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image, and the weather?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "A cat. Checking the weather.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo","unit":"C"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "9C"},
            {"role": "user", "content": "Thanks. Tomorrow?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 1000,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "alice",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_openai_request_round_trip_through_the_hub_keeps_its_meaning() -> None:
    original = canonical_chat_request()
    hub = to_hub(**copy.deepcopy(original))
    back = anthropic_request_to_chat(hub, model="gpt-4o")
    assert chat_request_errors(back) == []
    assert back == original


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_reasoning_effort_round_trip(effort: str) -> None:
    hub = to_hub(reasoning_effort=effort, max_tokens=50_000)
    assert anthropic_request_to_chat(hub, model="m")["reasoning_effort"] == effort


def test_hub_request_round_trip_through_openai_keeps_its_meaning() -> None:
    hub = {
        "model": "gpt-4o",
        "max_tokens": 500,
        "system": [{"type": "text", "text": "Be terse."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Go"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, {"b": "é"}]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "done"},
                    {"type": "text", "text": "Next"},
                ],
            },
        ],
        "tools": [{"name": "f", "description": "F", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
        "stop_sequences": ["X"],
        "temperature": 0.3,
    }
    chat = to_chat(**copy.deepcopy(hub))
    back = chat_request_to_anthropic(chat, default_max_tokens=1)
    assert back == hub


# --- property: any chat history gives a hub request Anthropic accepts ----------------------------

texts = st.sampled_from(["", " ", "\n", "hi", "Hello there ", " x"])


@st.composite
def chat_histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    for n in range(draw(st.integers(1, 10))):
        role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
        if role == "tool" and pending:
            messages.append(
                {"role": "tool", "tool_call_id": pending.pop(0), "content": draw(texts)}
            )
            continue
        if role == "assistant":
            calls = [
                call(f"c{n}_{k}", "f", draw(st.sampled_from(["", "{}", '{"a": 1}'])))
                for k in range(draw(st.integers(0, 2)))
            ]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": draw(st.one_of(st.none(), texts)),
            }
            if calls:
                message["tool_calls"] = calls
            pending = [c["id"] for c in calls]
            messages.append(message)
            continue
        parts = draw(st.booleans())
        content: Any = (
            [{"type": "text", "text": draw(texts)} for _ in range(draw(st.integers(0, 2)))]
            if parts
            else draw(texts)
        )
        messages.append({"role": "user" if role == "tool" else role, "content": content})
    return messages


@settings(max_examples=300, deadline=None)
@given(chat_histories())
def test_any_chat_history_gives_a_valid_hub_request(messages: list[dict[str, Any]]) -> None:
    try:
        hub = chat_request_to_anthropic(
            {"model": "m", "messages": messages}, default_max_tokens=100
        )
    except TranslationError as error:
        assert error.param == "messages"  # nothing but blank or system text
        return
    assert anthropic_request_errors(hub) == [], hub
