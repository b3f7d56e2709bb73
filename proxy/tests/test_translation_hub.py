"""The hub's shared helpers: usage read from events, and other providers' thinking dropped
before a conversation goes to Anthropic or Bedrock (with ``thinking`` itself where the tool turn
being answered no longer opens with a thinking block)."""

from __future__ import annotations

import json

import pytest

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


def _tool_turn(first_block: dict | None, thinking: dict | None) -> dict:
    """A request answering the weather call of an assistant turn that opens with ``first_block``."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    turn = [first_block, call] if first_block is not None else [call]
    request: dict = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": turn},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        ],
    }
    if thinking is not None:
        request["thinking"] = thinking
    return request


ENABLED = {"type": "enabled", "budget_tokens": 2048}


def test_thinking_is_left_out_while_answering_a_tool_turn_that_lost_its_thinking() -> None:
    # An OpenAI client sends tool calls back without their reasoning: Anthropic would refuse
    # thinking for this request.
    request = _tool_turn(None, ENABLED)
    cleaned = without_foreign_thinking(request)
    assert "thinking" not in cleaned
    assert cleaned["messages"] == request["messages"]
    assert request["thinking"] == ENABLED  # not mutated
    # A Gemini-signed block dropped on the way leaves the same turn.
    gemini = {"type": "thinking", "thinking": "hmm", "signature": "gemini:abc"}
    assert "thinking" not in without_foreign_thinking(_tool_turn(gemini, {"type": "adaptive"}))
    text = {"type": "text", "text": "Checking."}
    assert "thinking" not in without_foreign_thinking(_tool_turn(text, ENABLED))


def test_thinking_stays_when_the_tool_turn_opens_with_claudes_thinking() -> None:
    for block in (
        {"type": "thinking", "thinking": "hmm", "signature": "EqQBCkgIARABGAIiQ"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
    ):
        request = _tool_turn(block, ENABLED)
        assert without_foreign_thinking(request) is request
    # A new question after the tool turn: nothing to continue, thinking is allowed.
    request = _tool_turn(None, ENABLED)
    request["messages"].append({"role": "assistant", "content": "Sunny."})
    request["messages"].append({"role": "user", "content": "And tomorrow?"})
    assert without_foreign_thinking(request) is request
    # Thinking off (or absent): nothing to leave out.
    for thinking in ({"type": "disabled"}, None):
        request = _tool_turn(None, thinking)
        assert without_foreign_thinking(request) is request


@pytest.mark.parametrize("odd", [{"a": 1}, ["enabled"], None, 7])
def test_any_json_where_a_type_name_belongs_is_no_type(odd: object) -> None:
    """Found by the fuzz suite: a dict where ``thinking.type`` or a block's ``type`` belongs
    made the check raise (no set can look a dict up) and the request a 500."""
    request = _tool_turn({"type": odd, "thinking": "x"}, {"type": odd})
    assert without_foreign_thinking(request) is request  # not "enabled": nothing to leave out
    opened = _tool_turn({"type": odd}, ENABLED)
    assert "thinking" not in without_foreign_thinking(opened)  # no thinking block opens it
