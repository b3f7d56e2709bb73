"""The hub's shared helpers: usage read from events, and other providers' thinking dropped
before a conversation goes to Anthropic or Bedrock."""

from __future__ import annotations

import json

from proxy.translation.hub import HubUsage, may_hold_foreign_thinking, without_foreign_thinking


def test_usage_takes_the_last_cumulative_counts() -> None:
    usage = HubUsage()
    usage.feed(
        "message_start",
        {"message": {"model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}},
    )
    usage.feed("content_block_delta", {"delta": {"type": "text_delta", "text": "x"}})
    usage.feed(
        "message_delta",
        {
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9, "cache_read_input_tokens": 3},
        },
    )
    assert usage.usage.as_dict() == {
        "input_tokens": 5,
        "output_tokens": 9,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 0,
    }
    assert (usage.model, usage.stop_reason) == ("m", "end_turn")


def _conversation(signature: str | None) -> dict:
    thinking = {"type": "thinking", "thinking": "hmm"}
    if signature is not None:
        thinking["signature"] = signature
    return {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [thinking, {"type": "text", "text": "Hello"}]},
            {"role": "assistant", "content": [dict(thinking)]},
        ],
    }


def test_gemini_and_unsigned_thinking_are_dropped() -> None:
    for signature in ("gemini:abc", "", None):
        request = _conversation(signature)
        body = json.dumps(request).encode()
        assert may_hold_foreign_thinking(body)
        cleaned = without_foreign_thinking(request)
        assert cleaned["messages"][1]["content"] == [{"type": "text", "text": "Hello"}]
        # A turn left empty keeps a placeholder: Anthropic refuses empty content.
        assert cleaned["messages"][2]["content"] == [{"type": "text", "text": "(thinking)"}]
        assert request["messages"][1]["content"][0]["type"] == "thinking"  # not mutated


def test_anthropic_signed_thinking_is_kept_as_it_is() -> None:
    request = _conversation("EqQBCkgIARABGAIiQ")
    assert not may_hold_foreign_thinking(json.dumps(request, separators=(",", ":")).encode())
    assert without_foreign_thinking(request) is request
