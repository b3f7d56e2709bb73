"""Anthropic hub -> Gemini requests: generateContent, countTokens, embeddings, and the models list.

Every Gemini request built here is validated with google-genai's pydantic types (which forbid
unknown keys; unknown enum values, which they only warn about, fail here) plus the rules no type
expresses (REST camelCase keys, one data field per part, alternating roles, as many function
responses as the previous turn made calls). ``assert_valid_gemini`` and the small builders are
shared with ``test_translation_gemini_response`` and ``test_translation_gemini_fake``. Answers,
streams and errors are tested in ``test_translation_gemini_response``.
"""

from __future__ import annotations

import base64
import copy
import json
import warnings
from typing import Any

import pytest
from google.genai import types as genai
from openai.types import CreateEmbeddingResponse

from proxy.tests.test_translation_support import assistant, tool_result, tool_use, user
from proxy.translation.gemini import (
    GEMINI_MAX_OUTPUT_TOKENS,
    GEMINI_MAX_THINKING_BUDGET,
    anthropic_to_gemini,
    gemini_count_tokens_body,
    gemini_count_tokens_result,
    gemini_embeddings_to_openai,
    gemini_models_to_ids,
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
