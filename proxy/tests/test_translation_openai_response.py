"""Whole answers and errors between OpenAI and the hub.

``chat_completion_to_anthropic`` (an OpenAI-compatible upstream's answer → hub message, checked
with ``anthropic.types.Message`` strictly), ``anthropic_message_to_chat`` (hub message → the
client's ``chat.completion``, checked with openai's ``ChatCompletion`` strictly and no extra keys
but ``reasoning_content``), and the error tables of ``openai_errors``.
"""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types.shared import ErrorResponse
from openai.types.shared import ErrorObject

from proxy.tests.test_translation_openai_validation import assert_chat_completion, assert_message
from proxy.translation.openai_chat import (
    anthropic_error_to_openai,
    anthropic_message_to_chat,
    chat_completion_to_anthropic,
    openai_error_body,
    openai_error_to_anthropic,
    openai_status_for_anthropic,
)

# --- OpenAI completion -> hub message -------------------------------------------------------------


def completion(
    message: dict[str, Any], finish_reason: str | None = "stop", usage: Any = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish_reason,
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def to_message(body: dict[str, Any]) -> dict[str, Any]:
    message = chat_completion_to_anthropic(body, model="gpt-4o", message_id="msg_1")
    assert_message(message)
    return message


def test_text_answer_with_cached_usage() -> None:
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 30,
        "total_tokens": 1230,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }
    assert to_message(completion({"content": "Hello!"}, usage=usage)) == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 200,
            "output_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1000,
        },
    }


def test_missing_or_broken_usage_is_zero() -> None:
    message = to_message(completion({"content": "x"}, usage={"prompt_tokens": "many"}))
    assert message["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "tool_use"),
        (None, "end_turn"),
        ("something_new", "end_turn"),
    ],
)
def test_finish_reason_becomes_stop_reason(finish_reason: Any, stop_reason: str) -> None:
    assert to_message(completion({"content": "x"}, finish_reason))["stop_reason"] == stop_reason


def test_tool_calls_become_tool_use_and_win_over_finish_reason() -> None:
    message = to_message(
        completion(
            {
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "now", "arguments": ""},
                    },
                ],
            },
            finish_reason="stop",
        )
    )
    assert message["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("arguments", "tool_input"),
    [
        ("{broken", {"_raw": "{broken"}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
        ({"city": "Oslo"}, {"city": "Oslo"}),  # Ollama sends the object
        (None, {}),
    ],
)
def test_tool_arguments_that_are_not_an_object(arguments: Any, tool_input: dict[str, Any]) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    message = to_message(completion({"content": None, "tool_calls": [call]}, "tool_calls"))
    assert message["content"][0]["input"] == tool_input


def test_a_tool_call_without_an_id_gets_one() -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = to_message(completion({"content": None, "tool_calls": [call, dict(call)]}))
    assert [b["id"] for b in message["content"]] == ["toolu_msg_1_0", "toolu_msg_1_1"]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_becomes_a_leading_thinking_block(field: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = to_message(
        completion({"content": "Let me check.", field: "Think first.", "tool_calls": [call]})
    )
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][0] == {
        "type": "thinking",
        "thinking": "Think first.",
        "signature": "",
    }


@pytest.mark.parametrize("content", ["", "  \n", None])
def test_no_empty_text_block(content: Any) -> None:
    assert to_message(completion({"content": content}))["content"] == []


def test_a_refusal_is_text_with_stop_reason_refusal() -> None:
    message = to_message(completion({"content": None, "refusal": "I can't help with that."}))
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert message["stop_reason"] == "refusal"


def test_an_answer_without_choices_is_an_empty_message() -> None:
    message = to_message({"id": "x", "object": "chat.completion", "choices": []})
    assert message["content"] == [] and message["stop_reason"] == "end_turn"


# --- hub message -> OpenAI completion -------------------------------------------------------------


def hub_message(
    content: list[dict[str, Any]], stop_reason: str | None = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def to_chat(message: dict[str, Any]) -> dict[str, Any]:
    result = anthropic_message_to_chat(
        message, model="gpt-4o", completion_id="chatcmpl-1", created=17
    )
    assert_chat_completion(result)
    return result


def test_text_message() -> None:
    message = hub_message(
        [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}],
        cache_read_input_tokens=100,
        cache_creation_input_tokens=20,
    )
    assert to_chat(message) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 17,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 130,
            "completion_tokens": 5,
            "total_tokens": 135,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20},
        },
    }


def test_tool_use_and_thinking() -> None:
    result = to_chat(
        hub_message(
            [
                {"type": "thinking", "thinking": "Need weather.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            ],
            stop_reason="tool_use",
        )
    )
    choice = result["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "Need weather.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
            },
            {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }
    assert choice["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reason_becomes_finish_reason(stop_reason: Any, finish_reason: str) -> None:
    result = to_chat(hub_message([{"type": "text", "text": "x"}], stop_reason))
    assert result["choices"][0]["finish_reason"] == finish_reason


def test_tool_calls_cut_by_max_tokens_stay_length_but_end_turn_becomes_tool_calls() -> None:
    blocks = [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]
    assert to_chat(hub_message(blocks, "max_tokens"))["choices"][0]["finish_reason"] == "length"
    assert to_chat(hub_message(blocks, "end_turn"))["choices"][0]["finish_reason"] == "tool_calls"


def test_an_empty_message_has_empty_content() -> None:
    assert to_chat(hub_message([]))["choices"][0]["message"]["content"] == ""


def test_message_round_trip_through_openai() -> None:
    original = hub_message(
        [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, "é"]}},
        ],
        stop_reason="tool_use",
        cache_read_input_tokens=7,
    )
    chat = to_chat(original)
    back = chat_completion_to_anthropic(chat, model="claude-sonnet-4-5", message_id="msg_1")
    assert back["content"] == original["content"]
    assert back["stop_reason"] == "tool_use"
    assert back["usage"]["input_tokens"] == 10
    assert back["usage"]["cache_read_input_tokens"] == 7


# --- errors ---------------------------------------------------------------------------------------


def test_openai_error_body() -> None:
    body = openai_error_body("Bad.", type="invalid_request_error", param="n", code="x")
    assert body == {
        "error": {"message": "Bad.", "type": "invalid_request_error", "param": "n", "code": "x"}
    }
    ErrorObject.model_validate(body["error"], strict=True)


def anthropic_error(kind: str, message: str = "Boom.") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}


@pytest.mark.parametrize(
    ("status", "kind", "openai_status", "openai_type", "code"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error", None),
        (401, "authentication_error", 401, "invalid_request_error", "invalid_api_key"),
        (403, "permission_error", 403, "permission_error", None),
        (404, "not_found_error", 404, "invalid_request_error", "model_not_found"),
        (413, "request_too_large", 413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", 429, "requests", "rate_limit_exceeded"),
        (500, "api_error", 500, "server_error", None),
        (504, "timeout_error", 504, "server_error", "timeout"),
        (529, "overloaded_error", 503, "server_error", "overloaded"),
        (402, "billing_error", 402, "invalid_request_error", None),
    ],
)
def test_anthropic_errors_to_openai(
    status: int, kind: str, openai_status: int, openai_type: str, code: str | None
) -> None:
    body = anthropic_error_to_openai(status, anthropic_error(kind))
    assert body == {"error": {"message": "Boom.", "type": openai_type, "param": None, "code": code}}
    ErrorObject.model_validate(body["error"], strict=True)
    assert openai_status_for_anthropic(status, anthropic_error(kind)) == openai_status


def test_prompt_too_long_is_context_length_exceeded() -> None:
    body = anthropic_error_to_openai(
        400,
        anthropic_error(
            "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
        ),
    )
    assert body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["message"].startswith("prompt is too long")


@pytest.mark.parametrize(
    ("status", "openai_type"),
    [(429, "requests"), (503, "server_error"), (418, "invalid_request_error")],
)
def test_anthropic_error_without_a_body_goes_by_status(status: int, openai_type: str) -> None:
    body = anthropic_error_to_openai(status, None)
    assert body["error"]["type"] == openai_type
    assert body["error"]["message"]


def openai_error(message: str, kind: str, code: Any = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected_type", "message"),
    [
        (
            429,
            openai_error(
                "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"
            ),
            429,
            "rate_limit_error",
            "You exceeded your current quota.",
        ),
        (429, openai_error("Quota.", "insufficient_quota"), 429, "rate_limit_error", "Quota."),
        (
            429,
            openai_error("Slow down.", "requests", "rate_limit_exceeded"),
            429,
            "rate_limit_error",
            "Slow down.",
        ),
        (
            401,
            openai_error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
            403,
            "permission_error",
            "Incorrect API key provided.",
        ),
        (
            403,
            openai_error("Region.", "request_forbidden", "unsupported_country_region_territory"),
            403,
            "permission_error",
            "Region.",
        ),
        (
            404,
            openai_error(
                "The model `x` does not exist.", "invalid_request_error", "model_not_found"
            ),
            404,
            "not_found_error",
            "The model `x` does not exist.",
        ),
        (
            400,
            openai_error(
                "This model's maximum context length is 128000 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            400,
            "invalid_request_error",
            "prompt is too long: This model's maximum context length is 128000 tokens.",
        ),
        (
            400,
            openai_error("Bad tools.", "invalid_request_error"),
            400,
            "invalid_request_error",
            "Bad tools.",
        ),
        (422, {"detail": "unprocessable"}, 400, "invalid_request_error", None),
        (503, openai_error("Busy.", "server_error"), 529, "overloaded_error", "Busy."),
        (
            500,
            openai_error("The server is overloaded.", "server_error"),
            529,
            "overloaded_error",
            "The server is overloaded.",
        ),
        (500, openai_error("Oops.", "server_error"), 500, "api_error", "Oops."),
        (502, None, 500, "api_error", None),
        (504, None, 504, "timeout_error", None),
        (408, None, 504, "timeout_error", None),
        (418, {"error": "teapot"}, 400, "invalid_request_error", "teapot"),
        (
            500,
            {"message": "vLLM says no", "type": "BadRequestError", "code": 400},
            500,
            "api_error",
            "vLLM says no",
        ),
    ],
)
def test_openai_errors_to_anthropic(
    status: int, body: Any, expected_status: int, expected_type: str, message: str | None
) -> None:
    mapped_status, mapped = openai_error_to_anthropic(status, body)
    assert mapped_status == expected_status
    ErrorResponse.model_validate(mapped, strict=True)
    assert mapped["error"]["type"] == expected_type
    if message is not None:
        assert mapped["error"]["message"] == message
    else:
        assert mapped["error"]["message"]
