"""Anthropic hub <-> Gemini: requests, answers, streams, thought signatures, embeddings, errors.

Every Gemini request built here is validated with google-genai's pydantic types (which forbid
unknown keys; unknown enum values, which they only warn about, fail here) plus the rules no type
expresses (REST camelCase keys, one data field per part, alternating roles, as many function
responses as the previous turn made calls). Every fake Gemini answer goes through
``GenerateContentResponse`` first, so no test feeds a shape Gemini never sends. Hub answers are
validated with ``anthropic.types.Message`` and streams with the grammar checker of
``test_translation_hub_stream``.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anthropic.types import Message
from google.genai import types as genai
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import CreateEmbeddingResponse

from proxy.testing import fixtures
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_gemini import FakeGemini, resource_exhausted
from proxy.tests.test_translation_hub_stream import assert_well_formed, checked
from proxy.translation.gemini import (
    GEMINI_MAX_OUTPUT_TOKENS,
    GEMINI_MAX_THINKING_BUDGET,
    GeminiStreamToAnthropic,
    anthropic_to_gemini,
    gemini_count_tokens_body,
    gemini_count_tokens_result,
    gemini_embeddings_to_openai,
    gemini_error_to_anthropic,
    gemini_models_to_ids,
    gemini_reasoning_tokens,
    gemini_retry_after_seconds,
    gemini_to_anthropic,
    gemini_usage,
    openai_embeddings_to_gemini,
)
from proxy.translation.hub import TranslationError

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n").decode()
SIG_A = base64.b64encode(b"signature-a").decode()
SIG_B = base64.b64encode(b"signature-b").decode()
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"const": "C"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}

# --- validation of what we send --------------------------------------------------------------

# GenerateContentRequest's REST fields (the model is in the URL).
REQUEST_KEYS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
}
PART_DATA_KEYS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
# Values supplied by the client (JSON Schema, tool arguments, tool output): their keys are free.
FREE_FORM_KEYS = {"args", "parametersJsonSchema", "response"}


def strict(model: type[Any], value: Any) -> Any:
    """Validate a REST JSON value with a google-genai type; enum warnings are errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return model.model_validate_json(json.dumps(value))


def assert_camel_case(value: Any, path: str = "") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert "_" not in key, f"{path}.{key} is not the REST (camelCase) name"
            if key not in FREE_FORM_KEYS:
                assert_camel_case(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_camel_case(item, f"{path}.{index}")


def assert_valid_gemini(request: dict[str, Any]) -> None:
    assert set(request) <= REQUEST_KEYS, set(request) - REQUEST_KEYS
    assert_camel_case(request)
    previous_calls: list[str] = []
    contents = request["contents"]
    for index, content in enumerate(contents):
        strict(genai.Content, content)
        assert content["role"] in ("user", "model")
        assert index == 0 or contents[index - 1]["role"] != content["role"], "roles alternate"
        assert content["parts"], "no empty turn"
        for part in content["parts"]:
            data = set(part) & PART_DATA_KEYS
            assert len(data) == 1, f"one data field per part: {part}"
            assert set(part) - PART_DATA_KEYS <= {"thoughtSignature", "thought"}
            if "text" in part:
                assert part["text"].strip(), "no blank text part"
        calls = [p["functionCall"]["name"] for p in content["parts"] if "functionCall" in p]
        answers = [
            p["functionResponse"]["name"] for p in content["parts"] if "functionResponse" in p
        ]
        if answers:
            assert sorted(answers) == sorted(previous_calls), "one response per call"
        previous_calls = calls
    if "systemInstruction" in request:
        strict(genai.Content, request["systemInstruction"])
    for tool in request.get("tools", []):
        strict(genai.Tool, tool)
    if "toolConfig" in request:
        strict(genai.ToolConfig, request["toolConfig"])
    if "generationConfig" in request:
        config = request["generationConfig"]
        strict(genai.GenerationConfig, config)
        assert len(config.get("stopSequences", [])) <= 5


def to_gemini(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    body = {"model": "gemini-2.5-flash", "max_tokens": 1024, **body}
    request = anthropic_to_gemini(body, **kwargs)
    assert_valid_gemini(request)
    return request


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool_use(tool_id: str, name: str = "get_weather", **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": args}


def tool_result(tool_id: str, content: Any = "18C", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content, **extra}


def test_the_validator_rejects_what_gemini_rejects() -> None:
    good = to_gemini({"messages": [user("hi")]})
    bad_cases = [
        {**good, "max_tokens": 5},
        {**good, "contents": [{"role": "user", "parts": [{"text": "a", "bogus": 1}]}]},
        {**good, "contents": [{"role": "user", "parts": [{"text": " "}]}]},
        {**good, "contents": [{"role": "assistant", "parts": [{"text": "a"}]}]},
        {**good, "generationConfig": {"max_output_tokens": 5}},
        {**good, "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        {**good, "contents": [{"role": "user", "parts": [{"text": "a", "thoughtSignature": "%"}]}]},
    ]
    for bad in bad_cases:
        with pytest.raises((AssertionError, ValueError, UserWarning)):
            assert_valid_gemini(bad)


# --- requests: table ---------------------------------------------------------------------------

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "text",
        {"messages": [user("Hello")]},
        {
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "generationConfig": {"maxOutputTokens": 1024},
        },
    ),
    (
        "system string, system blocks and a system message between turns",
        {
            "system": [
                {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [user("a"), {"role": "system", "content": "Now French."}, user("b")],
        },
        {
            "systemInstruction": {"parts": [{"text": "Be terse."}, {"text": "Now French."}]},
            "contents": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}],
        },
    ),
    (
        "assistant is model; consecutive turns merge; blank text is dropped",
        {
            "messages": [
                user([{"type": "text", "text": "one"}, {"type": "text", "text": "  "}]),
                user("two"),
                assistant(""),
                assistant([{"type": "text", "text": "three"}]),
                user(" \n"),
            ]
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                {"role": "model", "parts": [{"text": "three"}]},
            ]
        },
    ),
    (
        "images and documents: base64 inline, URLs as file data",
        {
            "messages": [
                user(
                    [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x/a.WEBP?s=1"}},
                        {"type": "image", "source": {"type": "url", "url": "https://x/pic"}},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/jpg", "data": PNG},
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": PDF,
                            },
                        },
                        {"type": "document", "source": {"type": "url", "url": "https://x/d"}},
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                        },
                        {"type": "text", "text": "Describe."},
                    ]
                )
            ]
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "image/png", "data": PNG}},
                        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x/a.WEBP?s=1"}},
                        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/pic"}},
                        {"inlineData": {"mimeType": "image/jpeg", "data": PNG}},
                        {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
                        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x/d"}},
                        {"text": "notes"},
                        {"text": "Describe."},
                    ],
                }
            ]
        },
    ),
    (
        "tool call and its result: the result is named after the call's id",
        {
            "tools": [WEATHER_TOOL],
            "messages": [
                user("Weather in Paris?"),
                assistant(
                    [{"type": "text", "text": "Checking."}, tool_use("toolu_1", city="Paris")]
                ),
                user([tool_result("toolu_1"), {"type": "text", "text": "Thanks"}]),
            ],
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                {
                    "role": "model",
                    "parts": [
                        {"text": "Checking."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"result": "18C"},
                            }
                        },
                        {"text": "Thanks"},
                    ],
                },
            ],
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "get_weather",
                            "description": "Weather for a city",
                            # full JSON Schema passes (const, additionalProperties), but
                            # for the root $schema marker
                            "parametersJsonSchema": {
                                k: v
                                for k, v in WEATHER_TOOL["input_schema"].items()
                                if k != "$schema"
                            },
                        }
                    ]
                }
            ],
        },
    ),
    (
        "parallel calls, an error result, a result of text and image blocks",
        {
            "tools": [WEATHER_TOOL, {"name": "get_time", "input_schema": {"type": "object"}}],
            "messages": [
                user("Paris and Rome?"),
                assistant([tool_use("toolu_1", city="Paris"), tool_use("toolu_2", "get_time")]),
                user(
                    [
                        tool_result("toolu_1", "no such city", is_error=True),
                        tool_result(
                            "toolu_2",
                            [
                                {"type": "text", "text": "12:00"},
                                {"type": "text", "text": "CET"},
                                {
                                    "type": "image",
                                    "source": {
                                        "type": "base64",
                                        "media_type": "image/png",
                                        "data": PNG,
                                    },
                                },
                            ],
                        ),
                    ]
                ),
            ],
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "Paris and Rome?"}]},
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_time", "args": {}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"error": "no such city"},
                            }
                        },
                        {
                            "functionResponse": {
                                "name": "get_time",
                                "response": {"result": "12:00\nCET"},
                            }
                        },
                        {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    ],
                },
            ],
        },
    ),
    (
        "thinking text is not sent; Claude signatures are dropped; Gemini ones go on the next part",
        {
            "messages": [
                user("q"),
                assistant(
                    [
                        {"type": "thinking", "thinking": "Claude thought", "signature": "EqQB"},
                        {"type": "redacted_thinking", "data": "xyz"},
                        {"type": "text", "text": "a1"},
                        {"type": "thinking", "thinking": "", "signature": f"gemini:{SIG_A}"},
                        {"type": "text", "text": "a2"},
                    ]
                ),
                user("q2"),
                assistant(
                    [
                        {"type": "text", "text": "b1"},
                        {"type": "thinking", "thinking": "", "signature": f"gemini:{SIG_B}"},
                    ]
                ),
            ]
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "q"}]},
                {
                    "role": "model",
                    "parts": [{"text": "a1"}, {"text": "a2", "thoughtSignature": SIG_A}],
                },
                {"role": "user", "parts": [{"text": "q2"}]},
                # nothing follows the signature: it goes on the turn's last part
                {"role": "model", "parts": [{"text": "b1", "thoughtSignature": SIG_B}]},
            ]
        },
    ),
    (
        "server tools are dropped; unknown top-level fields are dropped",
        {
            "tools": [
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                {"type": "custom", "name": "f", "input_schema": {"type": "object"}},
            ],
            "metadata": {"user_id": "u"},
            "context_management": {"edits": []},
            "output_config": {"effort": "high"},
            "cache_control": {"type": "ephemeral"},
            "messages": [user("hi")],
        },
        {
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "f", "parametersJsonSchema": {"type": "object"}}
                    ]
                }
            ]
        },
    ),
    (
        "sampling and stop sequences (empty ones dropped)",
        {
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END", "", "STOP"],
            "messages": [user("hi")],
        },
        {
            "generationConfig": {
                "maxOutputTokens": 1024,
                "temperature": 0.2,
                "topP": 0.9,
                "topK": 40,
                "stopSequences": ["END", "STOP"],
            }
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b, e) for _, b, e in REQUEST_CASES],
    ids=[n for n, _, _ in REQUEST_CASES],
)
def test_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    request = to_gemini(body)
    for key, value in expected.items():
        assert request[key] == value, key
    if not body.get("tools"):
        assert "tools" not in request and "toolConfig" not in request


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"mode": "AUTO"}),
        ({"type": "any", "disable_parallel_tool_use": True}, {"mode": "ANY"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
        ({"type": "none"}, {"mode": "NONE"}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    request = to_gemini({"tools": [WEATHER_TOOL], "tool_choice": choice, "messages": [user("hi")]})
    assert request["toolConfig"] == {"functionCallingConfig": expected}


def test_max_tokens_is_capped_at_geminis_output_limit() -> None:
    request = to_gemini({"max_tokens": 128000, "messages": [user("hi")]})
    assert request["generationConfig"]["maxOutputTokens"] == GEMINI_MAX_OUTPUT_TOKENS == 65536


def test_tool_choice_without_tools_sends_no_tool_config() -> None:
    request = to_gemini({"tool_choice": {"type": "any"}, "messages": [user("hi")]})
    assert "toolConfig" not in request and "tools" not in request


@pytest.mark.parametrize(
    ("thinking", "model", "expected"),
    [
        (
            {"type": "enabled", "budget_tokens": 2048},
            None,
            {"thinkingBudget": 2048, "includeThoughts": True},
        ),
        (
            {"type": "enabled", "budget_tokens": 31999},
            None,
            {"thinkingBudget": GEMINI_MAX_THINKING_BUDGET, "includeThoughts": True},
        ),
        (
            {"type": "enabled", "budget_tokens": 100},
            None,
            {"thinkingBudget": 1024, "includeThoughts": True},
        ),
        ({"type": "enabled"}, None, {"thinkingBudget": -1, "includeThoughts": True}),
        ({"type": "adaptive"}, None, {"thinkingBudget": -1, "includeThoughts": True}),
        ({"type": "disabled"}, "gemini-2.5-flash", {"thinkingBudget": 0}),
        ({"type": "disabled"}, "gemini-2.5-pro", None),
        ({"type": "something-new"}, None, None),
    ],
)
def test_thinking(
    thinking: dict[str, Any], model: str | None, expected: dict[str, Any] | None
) -> None:
    request = to_gemini({"thinking": thinking, "messages": [user("hi")]}, model=model)
    assert request["generationConfig"].get("thinkingConfig") == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": [user([tool_result("toolu_missing")])]}, "messages.0.content.0.tool_use_id"),
        ({"stop_sequences": list("abcdef"), "messages": [user("hi")]}, "stop_sequences"),
        ({"tools": [{"input_schema": {}}], "messages": [user("hi")]}, "tools.0.name"),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "tool", "name": "nope"},
                "messages": [user("hi")],
            },
            "tool_choice.name",
        ),
        (
            {"messages": [user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])]},
            "messages.0.content.0.source",
        ),
        ({"messages": [user(42)]}, "messages.0.content"),
        (
            {
                "messages": [
                    user(
                        [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]
                    )
                ]
            },
            "messages.0.content.0.source.data",
        ),
    ],
)
def test_request_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as error:
        anthropic_to_gemini({"model": "m", "max_tokens": 10, **body})
    assert error.value.param == param


def test_schemas_with_refs_and_unions_pass_unchanged() -> None:
    schema = {
        "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "properties": {
            "at": {"$ref": "#/$defs/point"},
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
    }
    request = to_gemini(
        {"tools": [{"name": "place", "input_schema": schema}], "messages": [user("x")]}
    )
    assert request["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == schema


def test_the_request_body_is_not_modified() -> None:
    body = {"messages": [user([tool_use("t", city="x")])], "tools": [WEATHER_TOOL], "max_tokens": 5}
    before = copy.deepcopy(body)
    request = anthropic_to_gemini(body)
    request["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["type"] = "changed"
    assert body == before


def test_count_tokens_body_wraps_a_whole_generate_content_request() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "system": "Be terse.",
        "tools": [WEATHER_TOOL],
        "messages": [user("Hello")],
    }
    counted = gemini_count_tokens_body(body, model="gemini-2.5-flash")
    assert set(counted) == {"generateContentRequest"}
    inner = dict(counted["generateContentRequest"])
    assert inner.pop("model") == "models/gemini-2.5-flash"
    assert_valid_gemini(inner)
    assert inner["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert "generationConfig" not in inner
    assert gemini_count_tokens_body({"messages": [user("x")], "model": "models/g"}) == {
        "generateContentRequest": {
            "model": "models/g",
            "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        }
    }
    with pytest.raises(TranslationError):
        gemini_count_tokens_body({"messages": [user("x")]})


def test_count_tokens_result() -> None:
    assert gemini_count_tokens_result({"totalTokens": 31, "promptTokensDetails": []}) == 31
    for bad in ({}, {"totalTokens": "3"}, {"totalTokens": -1}, {"totalTokens": True}):
        with pytest.raises(ValueError):
            gemini_count_tokens_result(bad)


# --- answers -----------------------------------------------------------------------------------


def usage_metadata(
    prompt: int = 10, out: int = 5, thoughts: int = 0, cached: int = 0
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": out,
        "totalTokenCount": prompt + out + thoughts,
    }
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    if cached:
        metadata["cachedContentTokenCount"] = cached
    return metadata


def response(
    parts: list[dict[str, Any]],
    finish: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    value = {
        "candidates": [candidate],
        "usageMetadata": usage or usage_metadata(),
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc",
        **extra,
    }
    strict(genai.GenerateContentResponse, value)  # a shape Gemini really sends
    return value


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"toolu_{next(counter):02d}"


def to_hub(answer: dict[str, Any]) -> dict[str, Any]:
    message = gemini_to_anthropic(
        answer, model="gemini-2.5-flash", message_id="msg_1", new_tool_id=ids()
    )
    Message.model_validate(message)
    return message


def test_text_answer_and_usage() -> None:
    message = to_hub(
        response([{"text": "Hello"}, {"text": " there"}], usage=usage_metadata(100, 7, 3, 40))
    )
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "gemini-2.5-flash",
        "content": [{"type": "text", "text": "Hello there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 60,
            "output_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 40,
        },
    }


def test_usage_mapping_and_reasoning_tokens() -> None:
    metadata = {**usage_metadata(100, 7, 3, 40), "toolUsePromptTokenCount": 5}
    assert gemini_usage(metadata).as_dict() == {
        "input_tokens": 65,
        "output_tokens": 10,
        "cache_read_input_tokens": 40,
        "cache_creation_input_tokens": 0,
    }
    assert gemini_reasoning_tokens(metadata) == 3
    assert gemini_reasoning_tokens(None) == 0
    assert gemini_usage({"promptTokenCount": 3, "cachedContentTokenCount": 9}).input_tokens == 0


def test_thoughts_function_calls_and_signatures() -> None:
    message = to_hub(
        response(
            [
                {"text": "Let me look this up.", "thought": True},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_A,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ]
        )
    )
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me look this up.", "signature": f"gemini:{SIG_A}"},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
    ]


def test_every_call_signed_round_trips_each_signature_to_its_call() -> None:
    # Gemini signs the first call of a turn; some models (and the fake Gemini) sign every call.
    message = to_hub(
        response(
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "A"}},
                    "thoughtSignature": SIG_A,
                },
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "B"}},
                    "thoughtSignature": SIG_B,
                },
            ]
        )
    )
    assert [block["type"] for block in message["content"]] == ["thinking", "tool_use"] * 2
    results = user([tool_result("toolu_01"), tool_result("toolu_02")])
    parts = replay(message, [user("q")], results)["contents"][1]["parts"]
    assert [(p["functionCall"]["args"]["city"], p["thoughtSignature"]) for p in parts] == [
        ("A", SIG_A),
        ("B", SIG_B),
    ]


def test_signature_without_thoughts_is_a_thinking_block_of_its_own() -> None:
    message = to_hub(
        response(
            [
                {"text": "Sure."},
                {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SIG_A},
            ]
        )
    )
    assert message["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "thinking", "thinking": "", "signature": f"gemini:{SIG_A}"},
        {"type": "tool_use", "id": "toolu_01", "name": "f", "input": {}},
    ]


def test_signature_on_a_thought_part_stays_on_its_block_and_goes_to_the_next_part() -> None:
    message = to_hub(
        response(
            [
                {"text": "plan", "thought": True, "thoughtSignature": SIG_A},
                {"text": "more", "thought": True},
                {"text": "Answer."},
            ]
        )
    )
    assert message["content"] == [
        {"type": "thinking", "thinking": "plan", "signature": f"gemini:{SIG_A}"},
        {"type": "thinking", "thinking": "more", "signature": ""},
        {"type": "text", "text": "Answer."},
    ]
    request = replay(message, [user("q")], user("next"))
    assert request["contents"][1] == {
        "role": "model",
        "parts": [{"text": "Answer.", "thoughtSignature": SIG_A}],
    }


def test_unsigned_thoughts_and_dropped_parts() -> None:
    message = to_hub(
        response(
            [
                {"text": "hmm", "thought": True},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
                {"text": "Done."},
            ]
        )
    )
    assert message["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "Done."},
    ]


@pytest.mark.parametrize(
    ("finish", "with_call", "stop_reason"),
    [
        ("STOP", False, "end_turn"),
        ("STOP", True, "tool_use"),
        ("MAX_TOKENS", False, "max_tokens"),
        ("MAX_TOKENS", True, "max_tokens"),
        ("SAFETY", False, "refusal"),
        ("RECITATION", False, "refusal"),
        ("BLOCKLIST", False, "refusal"),
        ("PROHIBITED_CONTENT", False, "refusal"),
        ("SPII", False, "refusal"),
        ("IMAGE_SAFETY", False, "refusal"),
        ("MALFORMED_FUNCTION_CALL", False, "end_turn"),
        ("OTHER", True, "end_turn"),
        ("LANGUAGE", False, "end_turn"),
    ],
)
def test_finish_reasons(finish: str, with_call: bool, stop_reason: str) -> None:
    parts: list[dict[str, Any]] = [{"text": "x"}]
    if with_call:
        parts.append({"functionCall": {"name": "f", "args": {}}})
    assert to_hub(response(parts, finish))["stop_reason"] == stop_reason


def test_blocked_prompt_is_a_refusal_with_no_content() -> None:
    answer = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
    }
    strict(genai.GenerateContentResponse, answer)
    message = to_hub(answer)
    assert message["content"] == [] and message["stop_reason"] == "refusal"
    assert message["usage"]["input_tokens"] == 12


def test_an_error_body_is_not_an_answer() -> None:
    with pytest.raises(ValueError):
        gemini_to_anthropic({"error": {"code": 500}}, model="m", message_id="msg")


# --- thought signatures: the round trip ---------------------------------------------------------


def replay(
    message: dict[str, Any], prior: list[dict[str, Any]], then: dict[str, Any]
) -> dict[str, Any]:
    """The next request, with the assistant turn exactly as a client stores and replays it."""
    stored = json.loads(json.dumps(message["content"]))
    return to_gemini({"tools": [WEATHER_TOOL], "messages": [*prior, assistant(stored), then]})


def test_round_trip_puts_the_signature_back_on_the_function_call() -> None:
    question = user("Weather in Paris and Rome?")
    message = to_hub(
        response(
            [
                {"text": "Planning.", "thought": True},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_A,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ]
        )
    )
    results = user([tool_result("toolu_01", "18C"), tool_result("toolu_02", "21C")])
    request = replay(message, [question], results)
    assert request["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_A,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "21C"}}},
            ],
        },
    ]


def test_round_trip_of_a_streamed_text_signature() -> None:
    # Gemini streams often put the signature of a text answer in a last chunk with empty text.
    chunks = [
        response([{"text": "Hel"}], finish=None),
        response([{"text": "lo"}], finish=None),
        response([{"text": "", "thoughtSignature": SIG_B}], finish="STOP"),
    ]
    events = stream_events(chunks)
    message = checked(events).model_dump(exclude_none=True)
    assert [b["type"] for b in message["content"]] == ["text", "thinking"]
    request = replay(message, [user("Hi")], user("And?"))
    assert request["contents"][1] == {
        "role": "model",
        "parts": [{"text": "Hello", "thoughtSignature": SIG_B}],
    }


# --- streams -----------------------------------------------------------------------------------


def stream_events(chunks: list[dict[str, Any]], *, finish: bool = True) -> list[Any]:
    stream = GeminiStreamToAnthropic(
        model="gemini-2.5-flash", message_id="msg_1", new_tool_id=ids()
    )
    events = [event for chunk in chunks for event in stream.feed(chunk)]
    if finish:
        events += stream.finish()
    return events


def test_stream_text_split_across_chunks_is_one_block_with_usage() -> None:
    chunks = [
        response([{"text": "Hel"}], finish=None, usage=usage_metadata(20, 1, cached=8)),
        response([{"text": "lo!"}], finish=None, usage=usage_metadata(20, 2, cached=8)),
        response(
            [{"text": "\n"}], finish="STOP", usage=usage_metadata(20, 3, thoughts=4, cached=8)
        ),
    ]
    stream = GeminiStreamToAnthropic(model="gemini-2.5-flash", message_id="msg_1")
    events = [event for chunk in chunks for event in stream.feed(chunk)] + stream.finish()
    message = checked(events)
    assert [b.model_dump() for b in message.content] == [
        {"type": "text", "text": "Hello!\n", "citations": None}
    ]
    assert events[0][1]["message"]["usage"] == {
        "input_tokens": 12,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 8,
    }
    assert message.usage.output_tokens == 7 and message.usage.input_tokens == 12
    assert stream.usage.as_dict()["output_tokens"] == 7
    assert stream.reasoning_tokens == 4
    assert stream.finish() == []  # idempotent


def test_stream_thoughts_then_signed_call() -> None:
    chunks = [
        response([{"text": "Think", "thought": True}], finish=None),
        response([{"text": "ing", "thought": True}], finish=None),
        response([{"text": "\n\n"}], finish=None),  # blank text before a call: never a block
        response(
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": SIG_A,
                }
            ],
            finish="STOP",
        ),
    ]
    events = stream_events(chunks)
    message = checked(events).model_dump(exclude_none=True)
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "thinking", "thinking": "Thinking", "signature": f"gemini:{SIG_A}"},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    tool_events = [e for e in events if e[1].get("index") == 1]
    assert [e[0] for e in tool_events] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]


def test_stream_ending_early_still_closes() -> None:
    events = stream_events([response([{"text": "Partial ans"}], finish=None)])
    message = checked(events)
    assert message.stop_reason == "end_turn"
    assert [e[0] for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert checked(stream_events([])).content == []  # nothing at all came


def test_stream_ending_early_after_a_call_is_tool_use() -> None:
    events = stream_events(
        [response([{"functionCall": {"name": "f", "args": {"a": 1}}}], finish=None)]
    )
    assert checked(events).stop_reason == "tool_use"


def test_stream_error_chunk_ends_the_stream() -> None:
    stream = GeminiStreamToAnthropic(
        model="gemini-2.5-flash", message_id="msg_1", new_tool_id=ids()
    )
    events = stream.feed(response([{"text": "Hello"}], finish=None))
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    events += stream.feed(error)
    events += stream.feed(response([{"text": "late"}], finish="STOP"))
    events += stream.finish()
    assert_well_formed(events)
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "The model is overloaded."},
        },
    )
    assert [name for name, _ in events].count("content_block_delta") == 1


def test_stream_error_first() -> None:
    events = stream_events(
        [{"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}]
    )
    assert events == [
        ("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "Quota"}})
    ]


PART = st.one_of(
    st.builds(lambda t: {"text": t}, st.sampled_from(["", " ", "\n", "Hi", "there", "é😀"])),
    st.builds(lambda t: {"text": t, "thought": True}, st.sampled_from(["", "plan", " "])),
    st.builds(
        lambda name, city: {"functionCall": {"name": name, "args": {"city": city}}},
        st.sampled_from(["get_weather", "f"]),
        st.text(max_size=5),
    ),
)
SIGNED_PART = st.tuples(PART, st.booleans()).map(
    lambda pair: {**pair[0], "thoughtSignature": SIG_A} if pair[1] else pair[0]
)
CHUNK = st.builds(
    lambda parts, finish, prompt, out: response(parts, finish, usage_metadata(prompt, out)),
    st.lists(SIGNED_PART, max_size=4),
    st.sampled_from([None, None, None, "STOP", "MAX_TOKENS", "SAFETY", "OTHER"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)
ERROR_CHUNK = st.just({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}})


def expected_stop_reason(chunks: list[dict[str, Any]], calls: int) -> str:
    reasons = [c["candidates"][0].get("finishReason") for c in chunks if "candidates" in c]
    last = next((reason for reason in reversed(reasons) if reason), None)
    if last == "SAFETY":
        return "refusal"
    if last == "MAX_TOKENS":
        return "max_tokens"
    return "tool_use" if calls and last in (None, "STOP") else "end_turn"


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.one_of(CHUNK, CHUNK, CHUNK, ERROR_CHUNK), max_size=8))
def test_any_chunk_sequence_gives_a_well_formed_stream(chunks: list[dict[str, Any]]) -> None:
    # Chunks without a finish reason at the end are a stream that ended early.
    events = stream_events(chunks)
    assert_well_formed(events)
    if events[-1][0] == "error":
        return
    message = checked(events)
    calls = sum(block.type == "tool_use" for block in message.content)
    assert calls == sum(
        "functionCall" in p for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert message.stop_reason == expected_stop_reason(chunks, calls)
    assert message.usage.input_tokens == (
        chunks[-1]["usageMetadata"]["promptTokenCount"] if chunks else 0
    )


# --- embeddings, models ------------------------------------------------------------------------


def test_embeddings_request_for_a_string_and_a_list() -> None:
    single = openai_embeddings_to_gemini(
        {"model": "e", "input": "hello"}, model="text-embedding-004"
    )
    assert single == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}}
        ]
    }
    several = openai_embeddings_to_gemini(
        {"input": ["a", "b"], "dimensions": 256, "encoding_format": "base64"},
        model="gemini-embedding-001",
    )
    assert [r["content"]["parts"][0]["text"] for r in several["requests"]] == ["a", "b"]
    assert all(r["outputDimensionality"] == 256 for r in several["requests"])
    for request in several["requests"]:
        assert set(request) <= {"model", "content", "outputDimensionality", "taskType", "title"}
        strict(genai.Content, request["content"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [1, 2, 3]}, "input"),
        ({"input": [[1, 2], [3]]}, "input"),
        ({"input": []}, "input"),
        ({"input": None}, "input"),
        ({"input": ["x"] * 101}, "input"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "dimensions": "256"}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_embeddings_request_errors(body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as error:
        openai_embeddings_to_gemini(body, model="e")
    assert error.value.param == param


def test_embeddings_answer() -> None:
    answer = {"embeddings": [{"values": [0.1, -0.2]}, {"values": [0.3, 0.4]}]}
    openai_answer = gemini_embeddings_to_openai(
        answer, model="gemini-embedding-001", input_tokens=9
    )
    parsed = CreateEmbeddingResponse.model_validate(openai_answer)
    assert [d.embedding for d in parsed.data] == [[0.1, -0.2], [0.3, 0.4]]
    assert [d.index for d in parsed.data] == [0, 1]
    assert parsed.usage.prompt_tokens == 9 and parsed.usage.total_tokens == 9
    encoded = gemini_embeddings_to_openai(
        answer, model="m", input_tokens=9, encoding_format="base64"
    )
    assert isinstance(encoded["data"][0]["embedding"], str)
    with pytest.raises(ValueError):
        gemini_embeddings_to_openai({"embeddings": [{}]}, model="m", input_tokens=0)


def test_models_list_keeps_chat_and_embedding_models() -> None:
    page = {
        "models": [
            {
                "name": "models/gemini-2.5-flash",
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            },
            {"name": "models/gemini-embedding-001", "supportedGenerationMethods": ["embedContent"]},
            {"name": "models/imagen-4", "supportedGenerationMethods": ["predict"]},
            {"name": "models/aqa"},
            "junk",
        ],
        "nextPageToken": "x",
    }
    assert gemini_models_to_ids(page) == ["gemini-2.5-flash", "gemini-embedding-001"]
    assert gemini_models_to_ids({}) == []


# --- errors ------------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected_type"),
    [
        (400, google_error(400, "INVALID_ARGUMENT", "Bad"), 400, "invalid_request_error"),
        (400, google_error(400, "FAILED_PRECONDITION", "No billing"), 400, "invalid_request_error"),
        (401, google_error(401, "UNAUTHENTICATED", "No key"), 403, "permission_error"),
        (403, google_error(403, "PERMISSION_DENIED", "Denied"), 403, "permission_error"),
        (404, google_error(404, "NOT_FOUND", "models/x is not found"), 404, "not_found_error"),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota"), 429, "rate_limit_error"),
        (500, google_error(500, "INTERNAL", "Oops"), 500, "api_error"),
        (503, google_error(503, "UNAVAILABLE", "Overloaded"), 529, "overloaded_error"),
        (504, google_error(504, "DEADLINE_EXCEEDED", "Slow"), 504, "timeout_error"),
        (499, google_error(499, "CANCELLED", "Cancelled"), 500, "api_error"),
        (502, None, 500, "api_error"),
        (503, None, 529, "overloaded_error"),
        (401, None, 403, "permission_error"),
        (418, {"unexpected": True}, 400, "invalid_request_error"),
    ],
)
def test_errors(status: int, body: Any, expected_status: int, expected_type: str) -> None:
    mapped_status, mapped = gemini_error_to_anthropic(status, body)
    assert mapped_status == expected_status
    assert mapped["type"] == "error" and mapped["error"]["type"] == expected_type
    assert mapped["error"]["message"]


def test_invalid_key_is_the_gateways_problem() -> None:
    body = google_error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"},
    )
    assert gemini_error_to_anthropic(400, body) == (
        403,
        {
            "type": "error",
            "error": {
                "type": "permission_error",
                "message": "API key not valid. Please pass a valid API key.",
            },
        },
    )


def test_too_long_prompt_reads_as_anthropic_and_list_wrapped_errors() -> None:
    message = (
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    )
    status, body = gemini_error_to_anthropic(400, [google_error(400, "INVALID_ARGUMENT", message)])
    assert status == 400
    assert body["error"]["message"] == f"prompt is too long: {message}"


def test_retry_after_from_retry_info() -> None:
    body = google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota",
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.2s"},
    )
    assert gemini_retry_after_seconds(body) == 37
    assert gemini_retry_after_seconds(google_error(429, "RESOURCE_EXHAUSTED", "Quota")) is None
    assert gemini_retry_after_seconds(None) is None


# --- against the fake Gemini server (a real HTTP server on 127.0.0.1) --------------------------

_fixture_server = fixtures.fake_gemini_server
_fixture_fake = fixtures.fake_gemini

FAKE_KEY = "AIza-test-translation"
FAKE_MODEL = "gemini-2.5-flash"
FAKE_TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "unused"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 10, "output_tokens": 30, "cache_read_input_tokens": 4},
    reasoning_tokens=12,
)


@pytest.fixture
def gemini_http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"x-goog-api-key": FAKE_KEY}) as client:
        yield client


def fake_url(fake: FakeGemini, action: str) -> str:
    return f"{fake.base_url}/v1beta/models/{FAKE_MODEL}:{action}"


def thinking_turn(*messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [WEATHER_TOOL],
        "messages": list(messages),
    }


def stream_through(http: httpx.Client, fake: FakeGemini, body: dict[str, Any]) -> list[Any]:
    answer = http.post(fake_url(fake, "streamGenerateContent?alt=sse"), json=body)
    assert answer.status_code == 200, answer.text
    stream = GeminiStreamToAnthropic(model="claude-sonnet-4-5", message_id="msg_1")
    events = []
    for line in answer.text.splitlines():
        if line.startswith("data: "):
            events += stream.feed(json.loads(line[6:]))
    return events + stream.finish()


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_fake_gemini_accepts_the_signature_round_trip(
    gemini_http: httpx.Client, fake_gemini: FakeGemini, streamed: bool
) -> None:
    fake_gemini.queue_answers(FAKE_TOOL_ANSWER, ScriptedAnswer.text("Sunny."))
    question = user("Weather in Paris?")
    first = anthropic_to_gemini(thinking_turn(question), model=FAKE_MODEL)
    if streamed:
        message = checked(stream_through(gemini_http, fake_gemini, first)).model_dump(
            exclude_none=True
        )
    else:
        answer = gemini_http.post(fake_url(fake_gemini, "generateContent"), json=first)
        assert answer.status_code == 200, answer.text
        message = to_hub(answer.json())
    assert message["stop_reason"] == "tool_use"
    signed = [b for b in message["content"] if b["type"] == "thinking" and b["signature"]]
    assert signed and signed[0]["signature"].startswith("gemini:")
    tool_id = next(b["id"] for b in message["content"] if b["type"] == "tool_use")

    stored = json.loads(json.dumps(message["content"]))
    second = anthropic_to_gemini(
        thinking_turn(question, assistant(stored), user([tool_result(tool_id, "Sunny, 21C")])),
        model=FAKE_MODEL,
    )
    answer = gemini_http.post(fake_url(fake_gemini, "generateContent"), json=second)
    assert answer.status_code == 200, answer.text
    assert to_hub(answer.json())["content"] == [{"type": "text", "text": "Sunny."}]


def test_fake_gemini_refuses_a_history_that_lost_the_signature(
    gemini_http: httpx.Client, fake_gemini: FakeGemini
) -> None:
    fake_gemini.queue_answers(FAKE_TOOL_ANSWER, ScriptedAnswer.text("Sunny."))
    question = user("Weather in Paris?")
    first = gemini_http.post(
        fake_url(fake_gemini, "generateContent"),
        json=anthropic_to_gemini(thinking_turn(question), model=FAKE_MODEL),
    )
    message = to_hub(first.json())
    # A client that drops thinking blocks loses the signature: Gemini's 400, mapped for the client.
    unsigned = [b for b in message["content"] if b["type"] != "thinking"]
    tool_id = unsigned[-1]["id"]
    second = anthropic_to_gemini(
        thinking_turn(question, assistant(unsigned), user([tool_result(tool_id)])), model=FAKE_MODEL
    )
    answer = gemini_http.post(fake_url(fake_gemini, "generateContent"), json=second)
    assert answer.status_code == 400
    status, body = gemini_error_to_anthropic(answer.status_code, answer.json())
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "thought_signature" in body["error"]["message"]


def test_fake_gemini_count_tokens_embeddings_models_and_quota(
    gemini_http: httpx.Client, fake_gemini: FakeGemini
) -> None:
    counted = gemini_http.post(
        fake_url(fake_gemini, "countTokens"),
        json=gemini_count_tokens_body(thinking_turn(user("Hello")), model=FAKE_MODEL),
    )
    assert counted.status_code == 200, counted.text
    assert gemini_count_tokens_result(counted.json()) > 0

    embedded = gemini_http.post(
        f"{fake_gemini.base_url}/v1beta/models/gemini-embedding-001:batchEmbedContents",
        json=openai_embeddings_to_gemini({"input": ["a", "b"]}, model="gemini-embedding-001"),
    )
    assert embedded.status_code == 200, embedded.text
    answer = gemini_embeddings_to_openai(embedded.json(), model="e", input_tokens=2)
    assert len(CreateEmbeddingResponse.model_validate(answer).data) == 2

    listed = gemini_http.get(f"{fake_gemini.base_url}/v1beta/models")
    assert FAKE_MODEL in gemini_models_to_ids(listed.json())

    fake_gemini.add_fault(resource_exhausted())
    limited = gemini_http.post(
        fake_url(fake_gemini, "generateContent"),
        json=anthropic_to_gemini(thinking_turn(user("Hi"))),
    )
    status, body = gemini_error_to_anthropic(limited.status_code, limited.json())
    assert (status, body["error"]["type"]) == (429, "rate_limit_error")
