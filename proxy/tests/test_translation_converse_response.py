"""Bedrock Converse response -> Anthropic Message, checked with the anthropic SDK's own types."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from anthropic.types import Message
from botocore.session import get_session

from proxy.translation.converse import converse_to_anthropic
from proxy.translation.converse_common import STOP_REASONS, sanitise_tool_name


def converse_response(*content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": list(content)}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 40, "totalTokens": 52},
        "metrics": {"latencyMs": 912},
        **extra,
    }


def translate(response: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    message = converse_to_anthropic(
        response, model="claude-sonnet-4-5", message_id="msg_bdrk_1", **kwargs
    )
    Message.model_validate(message)  # the SDK accepts it as a Message
    return message


def test_full_response() -> None:
    response = converse_response(
        {"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "EqQBsig"}}},
        {"text": "Checking."},
        {
            "toolUse": {
                "toolUseId": "tooluse_kZJMlvQm",
                "name": "get_weather",
                "input": {"city": "Paris"},
            }
        },
        stopReason="tool_use",
        usage={
            "inputTokens": 12,
            "outputTokens": 40,
            "totalTokens": 1052,
            "cacheReadInputTokens": 1000,
            "cacheWriteInputTokens": 0,
        },
    )
    assert translate(response) == {
        "id": "msg_bdrk_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "EqQBsig"},
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "tooluse_kZJMlvQm",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        # inputTokens already excludes cached tokens: 1:1, no double counting.
        "usage": {
            "input_tokens": 12,
            "output_tokens": 40,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1000,
        },
    }


@pytest.mark.parametrize(
    ("bedrock", "anthropic"),
    [
        ("end_turn", "end_turn"),
        ("tool_use", "tool_use"),
        ("max_tokens", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("model_context_window_exceeded", "model_context_window_exceeded"),
        ("guardrail_intervened", "refusal"),
        ("content_filtered", "refusal"),
        ("malformed_model_output", "end_turn"),
        ("malformed_tool_use", "end_turn"),
        ("a_future_reason", "end_turn"),
    ],
)
def test_stop_reason_mapping(bedrock: str, anthropic: str) -> None:
    assert (
        translate(converse_response({"text": "x"}, stopReason=bedrock))["stop_reason"] == anthropic
    )


def test_stop_reason_map_covers_every_bedrock_value() -> None:
    model = get_session().get_service_model("bedrock-runtime")
    bedrock_values = set(model.shape_for("StopReason").enum)
    assert bedrock_values == set(STOP_REASONS)


def test_stop_sequence_comes_from_additional_fields() -> None:
    response = converse_response(
        {"text": "x"},
        stopReason="stop_sequence",
        additionalModelResponseFields={"stop_sequence": "END"},
    )
    message = translate(response)
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")
    response["additionalModelResponseFields"] = {"stop_sequence": None}
    assert translate(response)["stop_sequence"] is None


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            {
                "inputTokens": 5,
                "outputTokens": 7,
                "totalTokens": 3012,
                "cacheReadInputTokens": 1000,
                "cacheWriteInputTokens": 2000,
                "cacheDetails": [
                    {"ttl": "5m", "inputTokens": 500},
                    {"ttl": "1h", "inputTokens": 1500},
                ],
            },
            {
                "input_tokens": 5,
                "output_tokens": 7,
                "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 1000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 500,
                    "ephemeral_1h_input_tokens": 1500,
                },
            },
        ),
        (
            {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12},
            {
                "input_tokens": 5,
                "output_tokens": 7,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        ),
        (
            None,
            {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        ),
    ],
    ids=["cache details", "no cache fields", "no usage"],
)
def test_usage(usage: Any, expected: dict[str, Any]) -> None:
    assert translate(converse_response({"text": "x"}, usage=usage))["usage"] == expected


def test_redacted_reasoning_round_trips_verbatim() -> None:
    wire = converse_response({"reasoningContent": {"redactedContent": "RW5jcnlwdGVk"}})
    assert translate(wire)["content"] == [{"type": "redacted_thinking", "data": "RW5jcnlwdGVk"}]
    parsed = converse_response({"reasoningContent": {"redactedContent": b"Encrypted"}})
    expected_data = base64.b64encode(b"Encrypted").decode()
    assert translate(parsed)["content"] == [{"type": "redacted_thinking", "data": expected_data}]


def test_signature_less_reasoning_gets_empty_signature() -> None:
    response = converse_response({"reasoningContent": {"reasoningText": {"text": "t"}}})
    assert translate(response)["content"] == [
        {"type": "thinking", "thinking": "t", "signature": ""}
    ]


def test_blank_text_is_dropped_and_unknown_blocks_ignored() -> None:
    response = converse_response(
        {"text": ""},
        {"text": "\n\n"},
        {"image": {"format": "png", "source": {"bytes": "eA=="}}},
        {"text": "answer"},
    )
    assert translate(response)["content"] == [{"type": "text", "text": "answer"}]


def test_empty_output_is_a_valid_message() -> None:
    message = translate({"stopReason": "end_turn", "usage": {}})
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"


def test_citations_content_becomes_text() -> None:
    response = converse_response(
        {
            "citationsContent": {
                "content": [{"text": "Per the doc, "}, {"text": "yes."}],
                "citations": [],
            }
        }
    )
    assert translate(response)["content"] == [{"type": "text", "text": "Per the doc, yes."}]


def test_tool_names_are_mapped_back_and_bad_input_becomes_object() -> None:
    sanitised = sanitise_tool_name("mcp.srv/read")
    response = converse_response(
        {"toolUse": {"toolUseId": "tooluse_1", "name": sanitised, "input": {"p": 1}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "other", "input": None}},
        stopReason="tool_use",
    )
    content = translate(response, tool_names={sanitised: "mcp.srv/read"})["content"]
    assert [(b["name"], b["input"]) for b in content] == [("mcp.srv/read", {"p": 1}), ("other", {})]
