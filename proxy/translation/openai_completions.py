"""The legacy OpenAI ``POST /v1/completions`` surface over the hub.

- ``completion_request_to_anthropic``: a ``prompt`` request → hub request (one user message).
- ``anthropic_message_to_completion``: a hub answer → ``text_completion`` object.
- ``AnthropicToCompletionChunks``: hub stream events → ``text_completion`` chunks.

The legacy API continues a prompt; chat models answer it. Sending the prompt as the user turn
is what every chat-only provider does for this endpoint, and what clients still using it (code
completion plugins, old scripts) get from OpenAI's own chat-era models. Features that only make
sense for raw continuation (``suffix``, ``echo``, ``logprobs``, ``best_of``) are refused with a
400 naming the field rather than silently ignored. Pure: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.translation.hub import JSON, HubUsage, TranslationError
from proxy.translation.openai_chat import chat_request_to_anthropic
from proxy.translation.openai_common import finish_reason_for, openai_usage
from proxy.translation.openai_errors import anthropic_error_to_openai
from proxy.translation.sse import as_token_count

__all__ = [
    "AnthropicToCompletionChunks",
    "anthropic_message_to_completion",
    "completion_request_to_anthropic",
]

# finish_reason values a text_completion may carry; tool calls cannot happen here.
_COMPLETION_FINISH_REASONS = frozenset({"stop", "length", "content_filter"})


def completion_request_to_anthropic(body: JSON, *, default_max_tokens: int) -> JSON:
    """The hub request for a legacy completions request.

    ``prompt`` must be a string or a list holding one string (several prompts would be several
    answers, like ``n`` > 1; token arrays need the model's tokenizer). The shared fields
    (``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``stream``, ``user``, ``n``) follow
    ``chat_request_to_anthropic``.
    """
    if not isinstance(body, dict):
        raise TranslationError("The request body must be a JSON object.")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise TranslationError(
            "prompt must be a string (or a list of exactly one string); token arrays and "
            "several prompts are not supported.",
            param="prompt",
        )
    if not prompt.strip():
        raise TranslationError("prompt must not be empty.", param="prompt")
    if body.get("suffix"):
        raise TranslationError("suffix (fill-in-the-middle) is not supported.", param="suffix")
    if body.get("echo"):
        raise TranslationError("echo is not supported.", param="echo")
    if body.get("logprobs") is not None:
        raise TranslationError("logprobs are not supported.", param="logprobs")
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise TranslationError("Only best_of=1 is supported.", param="best_of")
    chat: JSON = {
        key: body[key]
        for key in ("model", "max_tokens", "temperature", "top_p", "stop", "stream", "user", "n")
        if key in body
    }
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat_request_to_anthropic(chat, default_max_tokens=default_max_tokens)


def _completion_finish_reason(stop_reason: Any) -> str:
    finish_reason = finish_reason_for(stop_reason)
    return finish_reason if finish_reason in _COMPLETION_FINISH_REASONS else "stop"


def _usage(counts: Mapping[str, Any]) -> JSON:
    usage = openai_usage(
        input_tokens=as_token_count(counts.get("input_tokens")),
        output_tokens=as_token_count(counts.get("output_tokens")),
        cache_read=as_token_count(counts.get("cache_read_input_tokens")),
        cache_creation=as_token_count(counts.get("cache_creation_input_tokens")),
    )
    return usage


def anthropic_message_to_completion(
    message: JSON, *, model: str, completion_id: str, created: int
) -> JSON:
    """The ``text_completion`` object for a hub answer (its text blocks joined)."""
    text = "".join(
        block["text"]
        for block in message.get("content") or []
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )
    usage = message.get("usage")
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "text": text,
                "index": 0,
                "finish_reason": _completion_finish_reason(message.get("stop_reason")),
                "logprobs": None,
            }
        ],
        "usage": _usage(usage if isinstance(usage, dict) else {}),
    }


class AnthropicToCompletionChunks:
    """Hub stream events → ``text_completion`` chunks, as ``AnthropicToChatChunks`` does for chat.

    Text deltas become chunks with ``choices[0].text``; thinking is not part of a completion and
    is dropped; ``message_delta`` gives the chunk carrying ``finish_reason``; with
    ``include_usage`` a last chunk with ``choices: []`` and ``usage`` follows. An ``error`` event
    becomes OpenAI's ``{"error": {...}}`` and ends the stream.
    """

    def __init__(
        self, *, model: str, completion_id: str, created: int, include_usage: bool
    ) -> None:
        self._base: JSON = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        self.usage = HubUsage()
        self._finished = False
        self._done = False

    def _chunk(self, text: str, finish_reason: str | None = None) -> JSON:
        choice = {"text": text, "index": 0, "finish_reason": finish_reason, "logprobs": None}
        return {**self._base, "choices": [choice]}

    def feed(self, event: str, data: JSON) -> list[JSON]:
        if self._done:
            return []
        self.usage.feed(event, data)
        if event == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str) and text:
                    return [self._chunk(text)]
        elif event == "message_delta" and not self._finished:
            return self._finish_chunks()
        elif event == "error":
            self._done = True
            return [anthropic_error_to_openai(500, data if isinstance(data, dict) else {})]
        return []

    def _finish_chunks(self) -> list[JSON]:
        self._finished = True
        out = [self._chunk("", _completion_finish_reason(self.usage.stop_reason))]
        if self._include_usage:
            self._done = True
            out.append({**self._base, "choices": [], "usage": _usage(self.usage.usage.as_dict())})
        return out

    def finish(self) -> list[JSON]:
        """What is still owed after the upstream ended; nothing after an error or a second call."""
        if self._done:
            return []
        out = [] if self._finished else self._finish_chunks()
        self._done = True
        return out
