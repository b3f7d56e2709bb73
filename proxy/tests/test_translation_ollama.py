"""Anthropic hub <-> Ollama's native API: /api/chat requests, answers and NDJSON streams,
/api/embed, /api/tags and errors.

Ollama silently ignores fields it does not know, so every request built here is checked against
the key sets of Ollama's own request structs (``api/types.go``: ChatRequest, Message, ToolCall,
Tool, Options, EmbedRequest) with the value types they declare: a misplaced field fails the test
instead of passing unnoticed. Fake answers follow the documented answer shapes (checked against
ChatResponse's keys). Hub answers are validated with ``anthropic.types.Message``, streams with the
grammar checker of ``test_translation_hub_stream``.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pytest
from anthropic.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import CreateEmbeddingResponse

from proxy.tests.test_translation_hub_stream import assert_well_formed, checked
from proxy.tests.test_translation_support import assistant, tool_result, tool_use, user
from proxy.translation.hub import TranslationError
from proxy.translation.ollama import (
    OllamaStreamToAnthropic,
    anthropic_to_ollama,
    ollama_embeddings_to_openai,
    ollama_error_to_anthropic,
    ollama_tags_to_ids,
    ollama_to_anthropic,
    openai_embeddings_to_ollama,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").decode()
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}

# --- validation of what we send (Ollama's api/types.go) -----------------------------------------

CHAT_REQUEST_KEYS = {
    "model",
    "messages",
    "stream",
    "format",
    "keep_alive",
    "tools",
    "options",
    "think",
    "truncate",
    "shift",
    "logprobs",
    "top_logprobs",
}
MESSAGE_KEYS = {"role", "content", "thinking", "images", "tool_calls", "tool_name", "tool_call_id"}
TOOL_CALL_KEYS = {"id", "function"}
TOOL_CALL_FUNCTION_KEYS = {"index", "name", "arguments"}
TOOL_KEYS = {"type", "items", "function"}
TOOL_FUNCTION_KEYS = {"name", "description", "parameters"}
# Options and Runner: name -> accepted JSON types.
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "num_keep": (int,),
    "seed": (int,),
    "num_predict": (int,),
    "top_k": (int,),
    "top_p": (int, float),
    "min_p": (int, float),
    "typical_p": (int, float),
    "repeat_last_n": (int,),
    "temperature": (int, float),
    "repeat_penalty": (int, float),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "stop": (list,),
    "num_ctx": (int,),
    "num_batch": (int,),
    "num_gpu": (int,),
    "main_gpu": (int,),
    "use_mmap": (bool,),
    "num_thread": (int,),
}
EMBED_REQUEST_KEYS = {"model", "input", "keep_alive", "truncate", "dimensions", "options"}
CHAT_RESPONSE_KEYS = {
    "model",
    "remote_model",
    "remote_host",
    "created_at",
    "message",
    "done",
    "done_reason",
    "logprobs",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def assert_keys(value: dict[str, Any], allowed: set[str], where: str) -> None:
    assert isinstance(value, dict), where
    assert set(value) <= allowed, f"{where}: unknown {set(value) - allowed}"


def assert_valid_ollama(request: dict[str, Any]) -> None:
    assert_keys(request, CHAT_REQUEST_KEYS, "request")
    assert isinstance(request["model"], str) and request["model"]
    assert isinstance(request["stream"], bool), "stream is always explicit"
    assert isinstance(request.get("think", False), bool)
    called: set[str] = set()
    for index, message in enumerate(request["messages"]):
        where = f"messages.{index}"
        assert_keys(message, MESSAGE_KEYS, where)
        assert message["role"] in ("system", "user", "assistant", "tool")
        assert isinstance(message["content"], str)
        for image in message.get("images", []):
            base64.b64decode(image, validate=True)
        for call in message.get("tool_calls", []):
            assert message["role"] == "assistant"
            assert_keys(call, TOOL_CALL_KEYS, f"{where}.tool_calls")
            assert_keys(call["function"], TOOL_CALL_FUNCTION_KEYS, f"{where}.tool_calls.function")
            assert isinstance(call["function"]["arguments"], dict), "arguments are an object"
            called.add(call["function"]["name"])
        if message["role"] == "tool":
            assert message["tool_name"] in called, "a tool result answers an earlier call"
        else:
            assert "tool_name" not in message and "tool_call_id" not in message
    for tool in request.get("tools", []):
        assert_keys(tool, TOOL_KEYS, "tools")
        assert tool["type"] == "function"
        assert_keys(tool["function"], TOOL_FUNCTION_KEYS, "tools.function")
        assert tool["function"]["parameters"]["type"] == "object"
    for name, value in request.get("options", {}).items():
        assert name in OPTION_TYPES, f"unknown option {name}"
        assert isinstance(value, OPTION_TYPES[name]), f"option {name}: {value!r}"
        assert isinstance(value, bool) == (OPTION_TYPES[name] == (bool,)), f"option {name}"


def to_ollama(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    request = anthropic_to_ollama(
        {"model": "claude", "max_tokens": 512, **body}, model="qwen3:8b", **kwargs
    )
    assert_valid_ollama(request)
    return request


def image() -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def test_the_validator_rejects_what_ollama_would_ignore() -> None:
    good = to_ollama({"messages": [user("hi")]})
    bad_cases = [
        {**good, "max_tokens": 5},
        {**good, "options": {"max_tokens": 5}},
        {**good, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        {**good, "messages": [{"role": "user", "content": "x", "tool_use_id": "t"}]},
        {k: v for k, v in good.items() if k != "stream"},
        {**good, "messages": [{"role": "tool", "content": "x", "tool_name": "never_called"}]},
    ]
    for bad in bad_cases:
        with pytest.raises((AssertionError, KeyError)):
            assert_valid_ollama(bad)


# --- requests ----------------------------------------------------------------------------------

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "text, not streamed, with num_predict",
        {"messages": [user("Hello")]},
        {
            "model": "qwen3:8b",
            "messages": [{"role": "user", "content": "Hello"}],
            "stream": False,
            "options": {"num_predict": 512},
        },
    ),
    (
        "system first; a system message between turns stays in place; text blocks joined",
        {
            "stream": True,
            "system": [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Be kind."}],
            "messages": [
                user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
                {"role": "system", "content": "Now French."},
                user("c"),
            ],
        },
        {
            "stream": True,
            "messages": [
                {"role": "system", "content": "Be terse.\n\nBe kind."},
                {"role": "user", "content": "a\nb"},
                {"role": "system", "content": "Now French."},
                {"role": "user", "content": "c"},
            ],
        },
    ),
    (
        "images go to the message's images; text documents become text",
        {
            "messages": [
                user(
                    [
                        image(),
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                        },
                        {"type": "text", "text": "Describe."},
                    ]
                )
            ]
        },
        {"messages": [{"role": "user", "content": "notes\nDescribe.", "images": [PNG]}]},
    ),
    (
        "tool calls and results: results come first, named after the call",
        {
            "tools": [WEATHER_TOOL],
            "messages": [
                user("Paris and Rome?"),
                assistant(
                    [
                        {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
                        {"type": "text", "text": "Checking."},
                        tool_use("toolu_1", city="Paris"),
                        tool_use("toolu_2", city="Rome"),
                    ]
                ),
                user(
                    [
                        tool_result("toolu_1", [{"type": "text", "text": "18C"}, image()]),
                        tool_result("toolu_2", "no such city", is_error=True),
                        {"type": "text", "text": "Thanks"},
                    ]
                ),
            ],
        },
        {
            "messages": [
                {"role": "user", "content": "Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "thinking": "Two calls.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        },
                        {
                            "id": "toolu_2",
                            "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
                        },
                    ],
                },
                {
                    "role": "tool",
                    "content": "18C",
                    "tool_name": "get_weather",
                    "tool_call_id": "toolu_1",
                    "images": [PNG],
                },
                {
                    "role": "tool",
                    "content": "Error: no such city",
                    "tool_name": "get_weather",
                    "tool_call_id": "toolu_2",
                },
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": WEATHER_TOOL["input_schema"],
                    },
                }
            ],
        },
    ),
    (
        "sampling options; blank stop sequences dropped; unknown fields dropped",
        {
            "temperature": 0.3,
            "top_p": 0.8,
            "top_k": 20,
            "stop_sequences": ["END", ""],
            "metadata": {"user_id": "u"},
            "context_management": {},
            "messages": [user("hi"), assistant(""), user(" ")],
        },
        {
            "messages": [{"role": "user", "content": "hi"}],
            "options": {
                "num_predict": 512,
                "temperature": 0.3,
                "top_p": 0.8,
                "top_k": 20,
                "stop": ["END"],
            },
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b, e) for _, b, e in REQUEST_CASES],
    ids=[n for n, _, _ in REQUEST_CASES],
)
def test_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    request = to_ollama(body)
    for key, value in expected.items():
        assert request[key] == value, key
    if not body.get("tools"):
        assert "tools" not in request
    assert "think" not in request


@pytest.mark.parametrize(
    ("choice", "has_tools"),
    [
        ({"type": "auto"}, True),
        ({"type": "any"}, True),
        ({"type": "tool", "name": "get_weather"}, True),
        ({"type": "none"}, False),
    ],
)
def test_tool_choice(choice: dict[str, Any], has_tools: bool) -> None:
    tools = [WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}, {"name": "bare"}]
    request = to_ollama({"tools": tools, "tool_choice": choice, "messages": [user("hi")]})
    if has_tools:
        assert [t["function"]["name"] for t in request["tools"]] == ["get_weather", "bare"]
        assert request["tools"][1]["function"]["parameters"] == {"type": "object", "properties": {}}
    else:
        assert "tools" not in request


@pytest.mark.parametrize(
    ("thinking", "supports", "expected"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, True, True),
        ({"type": "adaptive"}, True, True),
        # unknown or no thinking support: Ollama thinks by itself when it can, and refuses
        # think: true from models that cannot
        ({"type": "enabled", "budget_tokens": 2048}, None, None),
        ({"type": "adaptive"}, False, None),
        ({"type": "disabled"}, None, False),
        ({"type": "disabled"}, False, False),
        (None, True, None),
    ],
)
def test_think(thinking: Any, supports: bool | None, expected: bool | None) -> None:
    request = to_ollama(
        {"thinking": thinking, "messages": [user("hi")]}, supports_thinking=supports
    )
    assert request.get("think") == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": None}, "messages"),
        ({"messages": [{"role": "developer", "content": "x"}]}, "messages.0.role"),
        ({"messages": [user([tool_result("toolu_x")])]}, "messages.0.content.0.tool_use_id"),
        (
            {
                "messages": [
                    user([{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}])
                ]
            },
            "messages.0.content.0.source",
        ),
        (
            {
                "messages": [
                    user(
                        [
                            {
                                "type": "document",
                                "source": {
                                    "type": "base64",
                                    "media_type": "application/pdf",
                                    "data": "JVBE",
                                },
                            }
                        ]
                    )
                ]
            },
            "messages.0.content.0.source",
        ),
        ({"messages": [user(["text"])]}, "messages.0.content.0"),
        (
            {"messages": [user([{"type": "image", "source": {"type": "base64", "data": ""}}])]},
            "messages.0.content.0.source.data",
        ),
        ({"tools": [{"description": "no name"}], "messages": [user("x")]}, "tools.0.name"),
        (
            {"messages": [assistant([{"type": "tool_use", "id": "t", "input": {}}])]},
            "messages.0.content.0.name",
        ),
    ],
)
def test_request_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as error:
        anthropic_to_ollama({"model": "m", "max_tokens": 5, **body}, model="llama3.2")
    assert error.value.param == param


# --- answers -----------------------------------------------------------------------------------


def line(
    content: str = "",
    *,
    thinking: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    done: bool = False,
    done_reason: str = "stop",
    prompt: int = 0,
    evals: int = 0,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    value: dict[str, Any] = {
        "model": "qwen3:8b",
        "created_at": "2025-07-07T20:22:19.19314Z",
        "message": message,
        "done": done,
    }
    if done:
        value.update(
            done_reason=done_reason,
            total_duration=182242375,
            load_duration=41295167,
            prompt_eval_count=prompt,
            prompt_eval_duration=24573166,
            eval_count=evals,
            eval_duration=115959084,
        )
    assert set(value) <= CHAT_RESPONSE_KEYS
    return value


def call(name: str = "get_weather", **arguments: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": arguments}}


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"toolu_{next(counter):02d}"


def to_hub(answer: dict[str, Any]) -> dict[str, Any]:
    message = ollama_to_anthropic(answer, model="qwen3:8b", message_id="msg_1", new_tool_id=ids())
    Message.model_validate(message)
    return message


def test_text_answer_and_usage() -> None:
    assert to_hub(line("Hello!", done=True, prompt=26, evals=298)) == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "qwen3:8b",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 26,
            "output_tokens": 298,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_thinking_and_tool_calls() -> None:
    answer = line(
        "\n\n",
        thinking="Need the weather.",
        tool_calls=[
            call(city="Tokyo"),
            {"function": {"name": "get_time", "arguments": '{"tz": "JST"}'}},
        ],
        done=True,
        prompt=169,
        evals=15,
    )
    message = to_hub(answer)
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "thinking", "thinking": "Need the weather.", "signature": ""},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Tokyo"}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {"tz": "JST"}},
    ]


@pytest.mark.parametrize(
    ("done_reason", "calls", "stop_reason"),
    [
        ("stop", False, "end_turn"),
        ("stop", True, "tool_use"),
        ("length", False, "max_tokens"),
        ("load", False, "end_turn"),
    ],
)
def test_done_reasons(done_reason: str, calls: bool, stop_reason: str) -> None:
    answer = line("x", tool_calls=[call()] if calls else None, done=True, done_reason=done_reason)
    assert to_hub(answer)["stop_reason"] == stop_reason


def test_an_error_body_is_not_an_answer() -> None:
    with pytest.raises(ValueError):
        ollama_to_anthropic({"error": "boom"}, model="m", message_id="msg")


def test_round_trip_tool_call_ids_match_results() -> None:
    message = to_hub(line(tool_calls=[call(city="Oslo")], done=True))
    request = to_ollama(
        {
            "tools": [WEATHER_TOOL],
            "messages": [
                user("Oslo?"),
                assistant(message["content"]),
                user([tool_result("toolu_01", "5C")]),
            ],
        }
    )
    assert request["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
                }
            ],
        },
        {"role": "tool", "content": "5C", "tool_name": "get_weather", "tool_call_id": "toolu_01"},
    ]


# --- streams -----------------------------------------------------------------------------------


def stream_events(lines: list[dict[str, Any]]) -> tuple[list[Any], OllamaStreamToAnthropic]:
    stream = OllamaStreamToAnthropic(model="qwen3:8b", message_id="msg_1", new_tool_id=ids())
    events = [event for each in lines for event in stream.feed(each)]
    return events + stream.finish(), stream


def test_stream_thinking_text_and_usage() -> None:
    lines = [
        line(thinking="Let"),
        line(thinking=" me see."),
        line("\n\n"),
        line("The sky"),
        line(" is blue."),
        line(done=True, prompt=30, evals=12),
    ]
    events, stream = stream_events(lines)
    message = checked(events)
    assert [
        (b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content
    ] == [
        ("thinking", "Let me see."),
        ("text", "\n\nThe sky is blue."),
    ]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 0  # Ollama counts only at the end
    assert message.usage.input_tokens == 30 and message.usage.output_tokens == 12
    assert stream.usage.as_dict() == {
        "input_tokens": 30,
        "output_tokens": 12,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    assert stream.finish() == []


def test_stream_tool_call_arrives_whole() -> None:
    events, _ = stream_events(
        [line("Sure."), line(tool_calls=[call(city="Paris")]), line(done=True)]
    )
    message = checked(events)
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    tool_events = [e for e in events if e[1].get("index") == 1]
    assert [e[0] for e in tool_events] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]
    assert tool_events[1][1]["delta"] == {
        "type": "input_json_delta",
        "partial_json": '{"city":"Paris"}',
    }


def test_stream_ending_early_still_closes() -> None:
    events, _ = stream_events([line(thinking="hm"), line("Partial")])
    message = checked(events)
    assert message.stop_reason == "end_turn" and len(message.content) == 2
    assert checked(stream_events([])[0]).content == []


def test_stream_error_line() -> None:
    events, stream = stream_events(
        [line("Hel"), {"error": "an error was encountered while running the model"}, line("lo")]
    )
    assert_well_formed(events)
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {
                "type": "api_error",
                "message": "an error was encountered while running the model",
            },
        },
    )
    assert stream.finish() == []
    first, _ = stream_events([{"error": "model 'x' not found"}])
    assert [name for name, _ in first] == ["error"]


OLLAMA_LINE = st.one_of(
    st.builds(lambda t: line(t), st.sampled_from(["", " ", "\n", "Hi", "you", "é😀"])),
    st.builds(lambda t: line(thinking=t), st.sampled_from(["", "plan", " "])),
    st.builds(lambda c: line(tool_calls=[call(city=c)]), st.text(max_size=4)),
    st.builds(lambda t: line(t, tool_calls=[call(), call("f")]), st.sampled_from(["", "x"])),
)
LAST_LINE = st.builds(
    lambda reason, prompt, evals: line(done=True, done_reason=reason, prompt=prompt, evals=evals),
    st.sampled_from(["stop", "length"]),
    st.integers(0, 5000),
    st.integers(0, 5000),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(OLLAMA_LINE, max_size=10),
    ending=st.one_of(st.none(), LAST_LINE, st.just({"error": "boom"})),
)
def test_any_line_sequence_gives_a_well_formed_stream(
    lines: list[dict[str, Any]], ending: dict[str, Any] | None
) -> None:
    # ending None: the stream stopped before its last line.
    events, _ = stream_events([*lines, *([ending] if ending else [])])
    assert_well_formed(events)
    if ending is not None and "error" in ending:
        assert events[-1][0] == "error"
        return
    message = checked(events)
    calls = sum(len(each["message"].get("tool_calls", [])) for each in lines)
    assert sum(b.type == "tool_use" for b in message.content) == calls
    if ending is not None and ending["done_reason"] == "length":
        assert message.stop_reason == "max_tokens"
    else:
        assert message.stop_reason == ("tool_use" if calls else "end_turn")
    assert message.usage.input_tokens == (ending["prompt_eval_count"] if ending else 0)


# --- embeddings, models, errors ----------------------------------------------------------------


def test_embeddings_requests() -> None:
    single = openai_embeddings_to_ollama(
        {"model": "x", "input": "Why?", "encoding_format": "float"}, model="all-minilm"
    )
    assert single == {"model": "all-minilm", "input": "Why?"}
    several = openai_embeddings_to_ollama(
        {"input": ["a", "b"], "dimensions": 64}, model="all-minilm"
    )
    assert several == {"model": "all-minilm", "input": ["a", "b"], "dimensions": 64}
    for request in (single, several):
        assert_keys(request, EMBED_REQUEST_KEYS, "embed")
    for bad, param in (
        ({"input": [1, 2]}, "input"),
        ({"input": [[1], [2]]}, "input"),
        ({"input": []}, "input"),
        ({"input": "x", "dimensions": -1}, "dimensions"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ):
        with pytest.raises(TranslationError) as error:
            openai_embeddings_to_ollama(bad, model="m")
        assert error.value.param == param


def test_embeddings_answer() -> None:
    answer = {
        "model": "all-minilm",
        "embeddings": [[0.010071029, -0.0017594862], [-0.0098027075, 0.06042469]],
        "total_duration": 14143917,
        "load_duration": 1019500,
        "prompt_eval_count": 8,
    }
    parsed = CreateEmbeddingResponse.model_validate(
        ollama_embeddings_to_openai(answer, model="all-minilm")
    )
    assert parsed.data[1].embedding == [-0.0098027075, 0.06042469]
    assert parsed.usage.prompt_tokens == 8
    encoded = ollama_embeddings_to_openai(answer, model="m", encoding_format="base64")
    assert base64.b64decode(encoded["data"][0]["embedding"], validate=True)
    with pytest.raises(ValueError):
        ollama_embeddings_to_openai({"embeddings": "nope"}, model="m")


def test_tags() -> None:
    tags = {
        "models": [
            {"name": "deepseek-r1:latest", "model": "deepseek-r1:latest", "size": 1},
            {"model": "llama3.2:latest"},
            {"name": ""},
            7,
        ]
    }
    assert ollama_tags_to_ids(tags) == ["deepseek-r1:latest", "llama3.2:latest"]
    assert ollama_tags_to_ids({}) == []


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected_type", "message"),
    [
        (
            404,
            {"error": "model 'llama9' not found"},
            404,
            "not_found_error",
            "model 'llama9' not found",
        ),
        (400, {"error": "invalid options"}, 400, "invalid_request_error", "invalid options"),
        (
            400,
            {"error": "registry.ollama.ai/library/llama3.2:latest does not support thinking"},
            400,
            "invalid_request_error",
            "registry.ollama.ai/library/llama3.2:latest does not support thinking",
        ),
        (
            500,
            {"error": "the input length exceeds the context length"},
            400,
            "invalid_request_error",
            "prompt is too long: the input length exceeds the context length",
        ),
        (401, {"error": "unauthorized"}, 403, "permission_error", "unauthorized"),
        (429, {"error": "too many"}, 429, "rate_limit_error", "too many"),
        (
            503,
            {"error": "server busy, please try again.  maximum pending requests exceeded"},
            529,
            "overloaded_error",
            "server busy, please try again.  maximum pending requests exceeded",
        ),
        (500, None, 500, "api_error", "The Ollama server returned an error."),
        (502, {"error": {"message": "bad gateway"}}, 500, "api_error", "bad gateway"),
        (418, {"error": "teapot"}, 400, "invalid_request_error", "teapot"),
        (599, {}, 500, "api_error", "The Ollama server returned an error."),
    ],
)
def test_errors(
    status: int, body: Any, expected_status: int, expected_type: str, message: str
) -> None:
    assert ollama_error_to_anthropic(status, body) == (
        expected_status,
        {"type": "error", "error": {"type": expected_type, "message": message}},
    )
