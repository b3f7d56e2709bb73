"""The legacy ``/v1/completions`` surface over the hub: requests, answers and streams.

Answers and chunks are validated with openai's ``Completion`` model strictly, with no keys
beyond it; hub requests with anthropic's request types (see the validation module).
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.tests.test_translation_openai_validation import (
    anthropic_request_errors,
    assert_completion,
)
from proxy.tests.test_translation_support import MESSAGE_STOP, block_start, block_stop, delta
from proxy.translation.hub import HubEvent, TranslationError
from proxy.translation.openai_completions import (
    AnthropicToCompletionChunks,
    anthropic_message_to_completion,
    completion_request_to_anthropic,
)


def to_hub(**body: Any) -> dict[str, Any]:
    body.setdefault("model", "gpt-3.5-turbo-instruct")
    hub = completion_request_to_anthropic(body, default_max_tokens=256)
    assert anthropic_request_errors(hub) == [], hub
    return hub


@pytest.mark.parametrize("prompt", ["Say hi", ["Say hi"]])
def test_prompt_becomes_one_user_message(prompt: Any) -> None:
    hub = to_hub(prompt=prompt, max_tokens=20, temperature=1.5, stop="\n", stream=True, user="u")
    assert hub == {
        "model": "gpt-3.5-turbo-instruct",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}],
        "max_tokens": 20,
        "temperature": 1.0,
        "stop_sequences": ["\n"],
        "metadata": {"user_id": "u"},
        "stream": True,
    }


def test_defaults_and_harmless_fields() -> None:
    hub = to_hub(prompt="x", echo=False, suffix="", best_of=1, n=1, logprobs=None, seed=3)
    assert hub["max_tokens"] == 256


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "suffix": "end"}, "suffix"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "logprobs": 0}, "logprobs"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "n": 2}, "n"),
        ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
    ],
)
def test_unsupported_requests_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as caught:
        completion_request_to_anthropic({"model": "m", **fields}, default_max_tokens=10)
    assert caught.value.param == param


def hub_message(stop_reason: str | None) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Hi"},
            {"type": "text", "text": " there"},
        ],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 2, "cache_read_input_tokens": 1},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("tool_use", "stop"),
        (None, "stop"),
    ],
)
def test_message_to_text_completion(stop_reason: Any, finish_reason: str) -> None:
    result = anthropic_message_to_completion(
        hub_message(stop_reason), model="m", completion_id="cmpl-1", created=5
    )
    assert_completion(result)
    assert result == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 5,
        "model": "m",
        "choices": [
            {"text": "Hi there", "index": 0, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 1},
        },
    }


def events() -> list[HubEvent]:
    return [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "type": "message",
                    "role": "assistant",
                    "model": "c",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 3, "output_tokens": 0},
                },
            },
        ),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, type="thinking_delta", thinking="hidden"),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, type="text_delta", text="Hel"),
        delta(1, type="text_delta", text="lo"),
        block_stop(1),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {"output_tokens": 2},
            },
        ),
        MESSAGE_STOP,
    ]


def run(stream: list[HubEvent], *, include_usage: bool) -> list[dict[str, Any]]:
    translator = AnthropicToCompletionChunks(
        model="m", completion_id="cmpl-1", created=5, include_usage=include_usage
    )
    chunks: list[dict[str, Any]] = []
    for name, data in stream:
        chunks += translator.feed(name, data)
    chunks += translator.finish()
    assert translator.finish() == []
    for item in chunks:
        if "error" not in item:
            assert_completion_chunk(item)
    return chunks


def assert_completion_chunk(item: dict[str, Any]) -> None:
    """openai's ``Completion`` describes whole answers, where finish_reason is never null; a
    streamed chunk carries null until the last one (the SDK streams chunks as ``Completion``
    without validating). Everything else is checked strictly."""
    choices = [
        {**choice, "finish_reason": choice["finish_reason"] or "stop"} for choice in item["choices"]
    ]
    assert_completion({**item, "choices": choices})


def test_stream_with_usage() -> None:
    chunks = run(events(), include_usage=True)
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["Hel", "lo", ""]
    assert chunks[2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert (
        chunks[-1]["usage"]["prompt_tokens"] == 3 and chunks[-1]["usage"]["completion_tokens"] == 2
    )


def test_stream_without_usage_and_cut_short() -> None:
    chunks = run(events()[:6], include_usage=False)
    assert [(c["choices"][0]["text"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        ("Hel", None),
        ("", "stop"),
    ]


def test_stream_error() -> None:
    stream = [
        *events()[:6],
        ("error", {"type": "error", "error": {"type": "api_error", "message": "Internal"}}),
        *events()[6:],
    ]
    chunks = run(stream, include_usage=True)
    assert chunks[-1] == {
        "error": {"message": "Internal", "type": "server_error", "param": None, "code": None}
    }
    assert len(chunks) == 2
