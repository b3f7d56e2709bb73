"""A request too long for a model's context window, as each provider says it: recognised, and
told apart from every other bad request and from errors that are not about length."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.pools.classify import context_overflow


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # OpenAI (and vLLM, which copies its wording).
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens. However, "
                    "your messages resulted in 130211 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        ),
        (400, {"error": {"message": "too long", "code": "context_length_exceeded"}}),
        # Anthropic.
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 215000 tokens > 200000 maximum",
                },
            },
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "input length and `max_tokens` exceed context limit: 197000 + "
                    "8192 > 200000, decrease input length or `max_tokens` and try again",
                },
            },
        ),
        # Gemini.
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "The input token count (1200000) exceeds the maximum number of "
                    "tokens allowed (1048576).",
                    "status": "INVALID_ARGUMENT",
                }
            },
        ),
        # Bedrock.
        (400, {"message": "Input is too long for requested model."}),
        # A server answering 413 with its own wording.
        (413, {"error": {"message": "Request exceeds the model's context window"}}),
    ],
)
def test_each_providers_wording_is_recognised(status: int, body: Any) -> None:
    assert context_overflow(status, _body(body))
    assert context_overflow(status, body)  # parsed bodies too


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": {"message": "Invalid value for 'temperature'", "code": None}}),
        (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}),
        # The right words, but not a refused request: a rate limit or a server error.
        (429, {"error": {"message": "maximum context length", "code": "rate_limit_exceeded"}}),
        (500, {"error": {"message": "prompt is too long"}}),
        (400, b"not json at all"),
        (400, None),
    ],
)
def test_other_errors_are_not(status: int, body: Any) -> None:
    raw = body if isinstance(body, bytes) or body is None else _body(body)
    assert not context_overflow(status, raw)
