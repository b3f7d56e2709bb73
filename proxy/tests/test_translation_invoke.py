"""Bedrock InvokeModel translation: beta filter, request body, response and stream events; and
the Bedrock leg's InvokeModel request with URL images fetched into bytes (``bedrock_request``)."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import struct
from typing import Any

import pytest
from anthropic.types import Message, RawMessageStreamEvent
from botocore.eventstream import EventStreamBuffer
from pydantic import TypeAdapter

from proxy.providers.bedrock.provider import bedrock_request
from proxy.tests.test_translation_converse_request import (
    JPEG_BYTES,
    PNG_BYTES,
    bedrock_call,
    bedrock_target,
    image_host,
    url_image,
)
from proxy.translation.betas import BEDROCK_SUPPORTED_BETAS, bedrock_betas
from proxy.translation.invoke import (
    BEDROCK_ANTHROPIC_VERSION,
    INVOKE_TOP_LEVEL_FIELDS,
    InvokeStreamError,
    InvokeStreamTranslator,
    anthropic_to_invoke,
    invoke_response_to_anthropic,
)
from proxy.translation.sse import Usage

SONNET_4_5 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"
SONNET_3_7 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
HAIKU_3_5 = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
OPUS_4_5 = "global.anthropic.claude-opus-4-5-20251101-v1:0"
OPUS_4_6 = "global.anthropic.claude-opus-4-6-v1"
OPUS_4_7 = "global.anthropic.claude-opus-4-7"
APP_PROFILE = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6"

USER_HI = {"role": "user", "content": "Hi"}


def _body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "messages": [USER_HI],
        "stream": True,
    }
    body.update(fields)
    return body


def _invoke(body: dict[str, Any], *, betas: list[str] | None = None, model_id: str | None = None):
    original = copy.deepcopy(body)
    out = anthropic_to_invoke(body, betas=betas or [], model_id=model_id)
    assert body == original, "the client's body must not be modified"
    assert set(out) <= INVOKE_TOP_LEVEL_FIELDS
    assert out["anthropic_version"] == BEDROCK_ANTHROPIC_VERSION
    assert set(out.get("anthropic_beta", [])) <= BEDROCK_SUPPORTED_BETAS
    return out


# -- beta flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "flags"),
    [
        (None, []),
        ("", []),
        (" , ,", []),
        ("interleaved-thinking-2025-05-14", ["interleaved-thinking-2025-05-14"]),
        (
            "claude-code-20250219,interleaved-thinking-2025-05-14, context-management-2025-06-27 ,"
            "oauth-2025-04-20,fine-grained-tool-streaming-2025-05-14",
            [
                "interleaved-thinking-2025-05-14",
                "context-management-2025-06-27",
                "fine-grained-tool-streaming-2025-05-14",
            ],
        ),
        (
            "context-1m-2025-08-07,interleaved-thinking-2025-05-14,context-1m-2025-08-07",
            ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"],
        ),
        # Anthropic's name for tool search is Bedrock's tool-search-tool flag.
        (
            "advanced-tool-use-2025-11-20,tool-search-tool-2025-10-19",
            ["tool-search-tool-2025-10-19"],
        ),
        ("extended-cache-ttl-2025-04-11,prompt-caching-scope-2026-01-05", []),
        ("web-search-2025-03-05,files-api-2025-04-14,mcp-client-2025-11-20", []),
        # Flags are case-sensitive upstream.
        ("Interleaved-Thinking-2025-05-14", []),
    ],
)
def test_bedrock_betas(header: str | None, flags: list[str]) -> None:
    assert bedrock_betas(header) == flags


def test_every_allowed_beta_passes_alone() -> None:
    for flag in BEDROCK_SUPPORTED_BETAS:
        assert bedrock_betas(flag) == [flag]


# -- request: top level ------------------------------------------------------------------------


def test_minimal_request() -> None:
    assert _invoke(_body()) == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 32000,
        "messages": [USER_HI],
    }


def test_plain_fields_are_copied() -> None:
    out = _invoke(
        _body(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END", "STOP"]),
        model_id=SONNET_4,
    )
    assert (out["temperature"], out["top_p"], out["top_k"], out["stop_sequences"]) == (
        0.2,
        0.9,
        40,
        ["END", "STOP"],
    )


def test_fields_bedrock_rejects_are_dropped() -> None:
    out = _invoke(
        _body(
            metadata={"user_id": '{"device_id":"abc","session_id":"s"}'},
            service_tier="auto",
            container={"type": "ephemeral"},
            inference_geo={"allow": ["us"]},
            mcp_servers=[{"type": "url", "url": "https://x"}],
            cache_control={"type": "ephemeral"},
            output_format={"type": "json_schema", "schema": {}},
            speed="fast",
            some_future_field=True,
        )
    )
    assert set(out) == {"anthropic_version", "max_tokens", "messages"}


def test_betas_go_in_the_body_deduplicated() -> None:
    out = _invoke(
        _body(),
        betas=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07", "context-1m-2025-08-07"],
    )
    assert out["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]


def test_unfiltered_betas_never_reach_bedrock() -> None:
    out = _invoke(_body(), betas=["claude-code-20250219"])
    assert "anthropic_beta" not in out


# -- request: system messages and turns --------------------------------------------------------


def test_system_role_messages_are_folded_into_system() -> None:
    cached = {"type": "text", "text": "Reminder", "cache_control": {"type": "ephemeral"}}
    body = _body(
        system="You are Claude Code.",
        messages=[
            {"role": "user", "content": "List files."},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b"}],
            },
            {"role": "system", "content": [cached, {"type": "image", "source": {}}]},
            {"role": "user", "content": "Now read a."},
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": ""},
        ],
    )
    out = _invoke(body)
    assert out["system"] == [
        {"type": "text", "text": "You are Claude Code."},
        cached,
        {"type": "text", "text": "Be brief."},
    ]
    assert out["messages"] == [
        {"role": "user", "content": "List files."},
        body["messages"][1],
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b"},
                {"type": "text", "text": "Now read a."},
            ],
        },
    ]


def test_system_list_is_kept_and_extended() -> None:
    system = [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}]
    out = _invoke(_body(system=system, messages=[{"role": "system", "content": "B"}, USER_HI]))
    assert out["system"] == [*system, {"type": "text", "text": "B"}]
    assert out["messages"] == [USER_HI]


def test_system_messages_without_a_system_prompt() -> None:
    out = _invoke(_body(messages=[USER_HI, {"role": "system", "content": "Note"}]))
    assert out["system"] == [{"type": "text", "text": "Note"}]
    assert out["messages"] == [USER_HI]


def test_system_is_passed_unchanged_without_system_messages() -> None:
    assert _invoke(_body(system="Plain."))["system"] == "Plain."


def test_consecutive_turns_of_one_role_are_merged() -> None:
    out = _invoke(
        _body(
            messages=[
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "ok"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": None},
            ]
        )
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": None},
    ]


def test_messages_that_are_not_a_list() -> None:
    assert _invoke(_body(messages="nope"))["messages"] == []


# -- request: thinking -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thinking", "model_id", "max_tokens", "effort", "expected", "flags"),
    [
        # Adaptive exists from 4.6 on, and on models we cannot identify it is left alone.
        ({"type": "adaptive"}, OPUS_4_6, 32000, None, {"type": "adaptive"}, []),
        (
            {"type": "adaptive", "display": "x"},
            None,
            32000,
            None,
            {"type": "adaptive", "display": "x"},
            [],
        ),
        ({"type": "adaptive"}, APP_PROFILE, 32000, None, {"type": "adaptive"}, []),
        # Older models get a fixed budget, and the interleaving adaptive thinking implies.
        (
            {"type": "adaptive"},
            SONNET_4_5,
            32000,
            None,
            {"type": "enabled", "budget_tokens": 24000},
            ["interleaved-thinking-2025-05-14"],
        ),
        (
            {"type": "adaptive"},
            SONNET_4_5,
            32000,
            "low",
            {"type": "enabled", "budget_tokens": 8000},
            ["interleaved-thinking-2025-05-14"],
        ),
        (
            {"type": "adaptive"},
            OPUS_4_5,
            32000,
            "medium",
            {"type": "enabled", "budget_tokens": 16000},
            ["interleaved-thinking-2025-05-14"],
        ),
        (
            {"type": "adaptive"},
            SONNET_4,
            10000,
            "max",
            {"type": "enabled", "budget_tokens": 9000},
            ["interleaved-thinking-2025-05-14"],
        ),
        (
            {"type": "adaptive"},
            SONNET_4_5,
            32000,
            "extreme",
            {"type": "enabled", "budget_tokens": 24000},
            ["interleaved-thinking-2025-05-14"],
        ),
        (
            {"type": "adaptive"},
            SONNET_4_5,
            32000,
            {"odd": 1},
            {"type": "enabled", "budget_tokens": 24000},
            ["interleaved-thinking-2025-05-14"],
        ),
        # Claude 3.7 thinks but knows no interleaving.
        (
            {"type": "adaptive"},
            SONNET_3_7,
            20000,
            None,
            {"type": "enabled", "budget_tokens": 15000},
            [],
        ),
        # Too little room for the minimum budget: no thinking at all.
        ({"type": "adaptive"}, SONNET_4_5, 1000, None, None, []),
        ({"type": "adaptive"}, SONNET_4_5, 4000, "low", None, []),
        ({"type": "adaptive"}, SONNET_4_5, None, None, None, []),
        ({"type": "adaptive"}, SONNET_4_5, True, None, None, []),
        # No extended thinking before 3.7.
        ({"type": "adaptive"}, HAIKU_3_5, 32000, None, None, []),
        ({"type": "enabled", "budget_tokens": 2048}, HAIKU_3_5, 32000, None, None, []),
        # Fixed budgets are what 4.6 and older accept; 4.7 on knows only adaptive.
        (
            {"type": "enabled", "budget_tokens": 2048},
            SONNET_4_5,
            32000,
            None,
            {"type": "enabled", "budget_tokens": 2048},
            [],
        ),
        (
            {"type": "enabled", "budget_tokens": 2048},
            OPUS_4_7,
            32000,
            None,
            {"type": "adaptive"},
            [],
        ),
        (
            {"type": "enabled", "budget_tokens": 2048},
            None,
            32000,
            None,
            {"type": "enabled", "budget_tokens": 2048},
            [],
        ),
        # Disabled is the default, and the adaptive-only models reject it.
        ({"type": "disabled"}, OPUS_4_7, 32000, None, None, []),
        ({"type": "disabled"}, None, 32000, None, None, []),
        ("adaptive", SONNET_4_5, 32000, None, None, []),
        ({"type": "something-new"}, SONNET_4_5, 32000, None, {"type": "something-new"}, []),
    ],
)
def test_thinking(
    thinking: Any,
    model_id: str | None,
    max_tokens: Any,
    effort: Any,
    expected: dict[str, Any] | None,
    flags: list[str],
) -> None:
    body = _body(thinking=thinking, max_tokens=max_tokens)
    if effort is not None:
        body["output_config"] = {"effort": effort}
    out = _invoke(body, model_id=model_id)
    assert out.get("thinking") == expected
    assert out.get("anthropic_beta", []) == flags


def test_no_thinking_field_stays_absent() -> None:
    assert "thinking" not in _invoke(_body(), model_id=SONNET_4_5)


def test_thinking_flag_is_not_duplicated() -> None:
    out = _invoke(
        _body(thinking={"type": "adaptive"}),
        betas=["interleaved-thinking-2025-05-14"],
        model_id=SONNET_4_5,
    )
    assert out["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]


# -- request: output_config --------------------------------------------------------------------

FORMAT = {"type": "json_schema", "schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("output_config", "model_id", "betas", "expected"),
    [
        ({"effort": "high"}, OPUS_4_6, [], {"effort": "high"}),
        ({"effort": "high"}, None, [], {"effort": "high"}),
        ({"effort": "high"}, OPUS_4_5, ["effort-2025-11-24"], {"effort": "high"}),
        ({"effort": "high"}, OPUS_4_5, [], None),
        ({"effort": "high"}, SONNET_4_5, ["effort-2025-11-24"], None),
        ({"effort": "high"}, SONNET_4, ["effort-2025-11-24"], None),
        ({"effort": "high"}, SONNET_4_5, [], None),
        ({"format": FORMAT}, SONNET_4_5, [], {"format": FORMAT}),
        ({"format": FORMAT}, None, [], {"format": FORMAT}),
        ({"format": FORMAT}, SONNET_4, [], None),
        (
            {"effort": "low", "format": FORMAT, "task_budget": 5},
            OPUS_4_6,
            [],
            {"effort": "low", "format": FORMAT},
        ),
        ({"effort": "low", "format": FORMAT}, SONNET_4_5, [], {"format": FORMAT}),
        ({"task_budget": 5}, OPUS_4_6, [], None),
        ("high", OPUS_4_6, [], None),
    ],
)
def test_output_config(
    output_config: Any, model_id: str | None, betas: list[str], expected: dict[str, Any] | None
) -> None:
    out = _invoke(_body(output_config=output_config), betas=betas, model_id=model_id)
    assert out.get("output_config") == expected


# -- request: cache_control --------------------------------------------------------------------

ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
SCOPED = {"type": "ephemeral", "ttl": "5m", "scope": "global"}


def _cached_body() -> dict[str, Any]:
    return _body(
        system=[{"type": "text", "text": "S", "cache_control": SCOPED}],
        tools=[{"name": "t", "input_schema": {"type": "object"}, "cache_control": ONE_HOUR}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x", "cache_control": ONE_HOUR},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "r", "cache_control": SCOPED}],
                    },
                    {"type": "text", "text": "plain"},
                    "odd block",
                ],
            }
        ],
    )


@pytest.mark.parametrize("model_id", [SONNET_4_5, OPUS_4_6, None])
def test_cache_ttl_is_kept_from_4_5_and_scope_never(model_id: str | None) -> None:
    out = _invoke(_cached_body(), model_id=model_id)
    assert out["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert out["tools"][0]["cache_control"] == ONE_HOUR
    content = out["messages"][0]["content"]
    assert content[0]["cache_control"] == ONE_HOUR
    assert content[1]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert content[2:] == [{"type": "text", "text": "plain"}, "odd block"]


@pytest.mark.parametrize("model_id", [SONNET_4, SONNET_3_7])
def test_cache_ttl_is_dropped_before_4_5(model_id: str) -> None:
    out = _invoke(_cached_body(), model_id=model_id)
    ephemeral = {"type": "ephemeral"}
    assert out["system"][0]["cache_control"] == ephemeral
    assert out["tools"][0]["cache_control"] == ephemeral
    content = out["messages"][0]["content"]
    assert content[0]["cache_control"] == ephemeral
    assert content[1]["content"][0]["cache_control"] == ephemeral


def test_unchanged_blocks_are_shared_not_copied() -> None:
    body = _cached_body()
    out = _invoke(body, model_id=SONNET_4_5)
    assert out["messages"][0]["content"][0] is body["messages"][0]["content"][0]
    assert out["messages"][0]["content"][2] is body["messages"][0]["content"][2]


# -- request: tools ----------------------------------------------------------------------------

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SEARCH_TOOL = {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}
BASH_TOOL = {"type": "bash_20250124", "name": "bash", "cache_control": {"type": "ephemeral"}}


def test_custom_tools_lose_keys_bedrock_rejects() -> None:
    tool = {
        **WEATHER,
        "type": "custom",
        "defer_loading": True,
        "custom": {"defer_loading": True},
        "eager_input_streaming": True,
        "cache_control": {"type": "ephemeral"},
    }
    out = _invoke(_body(tools=[tool]), model_id=SONNET_4_5)
    assert out["tools"] == [{**WEATHER, "type": "custom", "cache_control": {"type": "ephemeral"}}]
    assert "anthropic_beta" not in out


def test_tool_search_is_kept_from_4_5_with_its_beta() -> None:
    deferred = {**WEATHER, "defer_loading": True}
    out = _invoke(_body(tools=[SEARCH_TOOL, deferred, BASH_TOOL]), model_id=OPUS_4_6)
    assert out["tools"] == [SEARCH_TOOL, deferred, BASH_TOOL]
    assert out["anthropic_beta"] == ["tool-search-tool-2025-10-19"]


def test_tool_search_is_removed_before_4_5() -> None:
    out = _invoke(
        _body(tools=[SEARCH_TOOL, {**WEATHER, "defer_loading": True}]),
        betas=["tool-search-tool-2025-10-19"],
        model_id=SONNET_4,
    )
    assert out["tools"] == [WEATHER]


def test_anthropic_hosted_tools_are_removed() -> None:
    tools = [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "mcp_toolset", "mcp_server_name": "x"},
        WEATHER,
        BASH_TOOL,
        "not a tool",
    ]
    assert _invoke(_body(tools=tools), model_id=SONNET_4_5)["tools"] == [WEATHER, BASH_TOOL]


@pytest.mark.parametrize(
    ("model_id", "kept"), [(SONNET_4_5, True), (None, True), (SONNET_4, False)]
)
def test_strict_and_input_examples_from_4_5(model_id: str | None, kept: bool) -> None:
    tool = {**WEATHER, "strict": True, "input_examples": [{"city": "Paris"}]}
    out = _invoke(_body(tools=[tool]), model_id=model_id)
    assert out["tools"] == [tool if kept else WEATHER]
    assert out.get("anthropic_beta", []) == (["tool-examples-2025-10-29"] if kept else [])


@pytest.mark.parametrize(
    ("tool_choice", "kept"),
    [
        ({"type": "auto"}, True),
        ({"type": "any", "disable_parallel_tool_use": True}, True),
        ({"type": "none"}, True),
        ({"type": "tool", "name": "get_weather"}, True),
        ({"type": "tool", "name": "web_search"}, False),
    ],
)
def test_tool_choice(tool_choice: dict[str, Any], kept: bool) -> None:
    tools = [WEATHER, {"type": "web_search_20250305", "name": "web_search"}]
    out = _invoke(_body(tools=tools, tool_choice=tool_choice), model_id=SONNET_4_5)
    assert ("tool_choice" in out) is kept
    assert out.get("tool_choice") == (tool_choice if kept else None)


def test_no_tools_left_means_no_tools_and_no_choice() -> None:
    out = _invoke(
        _body(
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            tool_choice={"type": "auto"},
        )
    )
    assert "tools" not in out and "tool_choice" not in out
    assert "tools" not in _invoke(_body(tools="nope", tool_choice={"type": "auto"}))


# -- request: context management ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("context_management", "expected", "flags"),
    [
        (
            {
                "edits": [
                    {"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}
                ]
            },
            {
                "edits": [
                    {"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}
                ]
            },
            ["context-management-2025-06-27"],
        ),
        (
            {
                "edits": [
                    {"type": "clear_thinking_20251015", "keep": "all"},
                    {"type": "compact_20260112"},
                    "junk",
                ],
                "extra": 1,
            },
            {"edits": [{"type": "compact_20260112"}]},
            ["compact-2026-01-12"],
        ),
        ({"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}, None, []),
        ({"edits": "nope"}, None, []),
        ("nope", None, []),
    ],
)
def test_context_management(
    context_management: Any, expected: dict[str, Any] | None, flags: list[str]
) -> None:
    out = _invoke(
        _body(context_management=context_management),
        betas=["context-management-2025-06-27"] if expected else [],
    )
    assert out.get("context_management") == expected
    assert out.get("anthropic_beta", []) == (
        list(dict.fromkeys(["context-management-2025-06-27", *flags])) if expected else []
    )


# -- a realistic Claude Code request -----------------------------------------------------------


def test_claude_code_request_end_to_end() -> None:
    body = {
        "model": "claude-opus-4-6",
        "max_tokens": 64000,
        "stream": True,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": '{"session_id":"3f1e"}'},
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "tools": [SEARCH_TOOL, {**WEATHER, "defer_loading": True}],
        "messages": [USER_HI, {"role": "system", "content": "Today is Monday."}],
    }
    betas = bedrock_betas(
        "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
        "advanced-tool-use-2025-11-20,effort-2025-11-24,oauth-2025-04-20"
    )
    out = _invoke(body, betas=betas, model_id=SONNET_4_5)
    assert out == {
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": [
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "tool-search-tool-2025-10-19",
            "effort-2025-11-24",
        ],
        "max_tokens": 64000,
        "thinking": {"type": "enabled", "budget_tokens": 48000},
        "system": [
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "Today is Monday."},
        ],
        "tools": [SEARCH_TOOL, {**WEATHER, "defer_loading": True}],
        "messages": [USER_HI],
    }


# -- the Bedrock leg's request: URL images fetched into bytes ----------------------------------


async def test_the_bedrock_leg_invokes_with_url_images_fetched_as_base64(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bedrock's Anthropic body takes images as base64 only (a ``url`` source is refused), so
    the leg fetches them; the media type is what the bytes are, not what the server said."""
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}
    body = _body(
        stream=False,
        messages=[
            {"role": "user", "content": "Take a screenshot."},
            {"role": "assistant", "content": [tool_use]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [url_image("/screen")],
                    },
                    url_image("/photo.jpg", cache_control={"type": "ephemeral"}),
                    {"type": "text", "text": "Same?"},
                ],
            },
        ],
    )
    original = copy.deepcopy(body)
    images = {"/photo.jpg": PNG_BYTES, "/screen": JPEG_BYTES}
    requests = image_host(monkeypatch, images)
    url, out = await bedrock_request(bedrock_target("invoke", SONNET_4_5), bedrock_call(body), [])
    assert url.endswith("/invoke")
    assert len(requests) == 2
    png = base64.b64encode(PNG_BYTES).decode()
    jpeg = base64.b64encode(JPEG_BYTES).decode()
    assert out["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": jpeg},
                }
            ],
        },
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": png},
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "text", "text": "Same?"},
    ]
    assert out["messages"][:2] == body["messages"][:2]
    assert body == original, "the client's body must not be modified"


# -- non-streamed response ---------------------------------------------------------------------

BEDROCK_RESPONSE = {
    "id": "msg_bdrk_01Abc",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Weather tool.", "signature": "EqQBCkYI"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "Checking Zürich."},
        {
            "type": "tool_use",
            "id": "toolu_bdrk_01",
            "name": "get_weather",
            "input": {"city": "Zürich"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 40},
}


def test_response_echoes_the_requested_model_and_validates() -> None:
    original = copy.deepcopy(BEDROCK_RESPONSE)
    out = invoke_response_to_anthropic(BEDROCK_RESPONSE, model="claude-sonnet-4-5")
    assert original == BEDROCK_RESPONSE
    assert out["model"] == "claude-sonnet-4-5"
    assert out["content"] == BEDROCK_RESPONSE["content"]
    assert out["usage"] == {
        "input_tokens": 12,
        "output_tokens": 40,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    message = Message.model_validate(out)
    assert message.model == "claude-sonnet-4-5"
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]


def test_response_keeps_extra_usage_and_drops_bedrock_keys() -> None:
    body = {
        **BEDROCK_RESPONSE,
        "usage": {
            "input_tokens": 3,
            "output_tokens": 4,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": None,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        },
        "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3},
    }
    out = invoke_response_to_anthropic(body, model="m")
    assert "amazon-bedrock-invocationMetrics" not in out
    assert out["usage"]["cache_read_input_tokens"] == 1000
    assert out["usage"]["cache_creation_input_tokens"] == 0
    assert out["usage"]["cache_creation"] == body["usage"]["cache_creation"]
    Message.model_validate(out)


def test_sparse_response_is_completed() -> None:
    out = invoke_response_to_anthropic({"content": [{"type": "text", "text": "hi"}]}, model="m")
    assert out["id"].startswith("msg_bdrk_")
    assert (out["type"], out["role"], out["stop_reason"], out["stop_sequence"]) == (
        "message",
        "assistant",
        None,
        None,
    )
    assert out["usage"] == Usage().as_dict()
    Message.model_validate(out)


# -- streamed response -------------------------------------------------------------------------


def _frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One binary eventstream message, as Bedrock writes it (string headers only)."""
    encoded_headers = b"".join(
        bytes([len(name)])
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value))
        + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded_headers + payload
    return message + struct.pack(">I", binascii.crc32(message))


def _chunk_frame(event: dict[str, Any]) -> bytes:
    raw = json.dumps(event, ensure_ascii=False).encode()
    payload = {"bytes": base64.b64encode(raw).decode(), "p": "abcdefghijklmnopq"}
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return _frame(headers, json.dumps(payload).encode())


BEDROCK_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_bdrk_01Abc",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1000,
                "output_tokens": 2,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Grüß dich 👋"},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_bdrk_01",
            "name": "get_weather",
            "input": {},
        },
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 40},
    },
    {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 1012,
            "outputTokenCount": 40,
            "invocationLatency": 912,
            "firstByteLatency": 300,
        },
    },
]


def _decoded_payloads(data: bytes, chunk_size: int) -> list[dict[str, Any]]:
    buffer = EventStreamBuffer()
    payloads = []
    for start in range(0, len(data), chunk_size):
        buffer.add_data(data[start : start + chunk_size])
        for message in buffer:
            assert message.headers[":event-type"] == "chunk"
            payloads.append(json.loads(message.payload))
    return payloads


@pytest.mark.parametrize("chunk_size", [1, 13, 4096])
def test_stream_translator_produces_anthropic_events(chunk_size: int) -> None:
    wire = b"".join(_chunk_frame(event) for event in BEDROCK_EVENTS)
    translator = InvokeStreamTranslator(model="claude-sonnet-4-5")
    produced = []
    for payload in _decoded_payloads(wire, chunk_size):
        produced.extend(translator.feed(payload))

    expected = copy.deepcopy(BEDROCK_EVENTS)
    expected[0]["message"]["model"] = "claude-sonnet-4-5"
    del expected[-1]["amazon-bedrock-invocationMetrics"]
    assert produced == [(event["type"], event) for event in expected]

    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    for _name, data in produced:
        adapter.validate_python(data)

    # Events carried the usage; invocationMetrics counts total input, so they are not used.
    assert translator.usage == Usage(
        input_tokens=12,
        output_tokens=40,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=0,
    )
    assert translator.stop_reason == "tool_use"
    assert translator.message_id == "msg_bdrk_01Abc"
    assert translator.saw_message_stop is True
    assert translator.error is None


def _payload(event: dict[str, Any]) -> dict[str, Any]:
    return {"bytes": base64.b64encode(json.dumps(event).encode()).decode()}


def test_invocation_metrics_fill_usage_the_events_lacked() -> None:
    translator = InvokeStreamTranslator(model="m")
    translator.feed(_payload({"type": "message_start", "message": {"id": "x"}}))
    translator.feed(_payload({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}))
    events = translator.feed(
        _payload(
            {
                "type": "message_stop",
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 30,
                    "outputTokenCount": 7,
                    "cacheReadInputTokenCount": 5,
                    "cacheWriteInputTokenCount": None,
                },
            }
        )
    )
    assert events == [("message_stop", {"type": "message_stop"})]
    assert translator.usage == Usage(input_tokens=30, output_tokens=7, cache_read_input_tokens=5)
    assert translator.stop_reason == "end_turn"


def test_delta_usage_is_cumulative() -> None:
    translator = InvokeStreamTranslator(model="m")
    translator.feed(
        _payload(
            {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}
        )
    )
    translator.feed(_payload({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5}}))
    translator.feed(
        _payload(
            {
                "type": "message_delta",
                "delta": {},
                "usage": {"output_tokens": 11, "input_tokens": None, "cache_read_input_tokens": 4},
            }
        )
    )
    assert translator.usage == Usage(input_tokens=9, output_tokens=11, cache_read_input_tokens=4)
    assert translator.stop_reason is None


def test_error_ping_and_unknown_events_pass_through() -> None:
    translator = InvokeStreamTranslator(model="m")
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert translator.feed(_payload(error)) == [("error", error)]
    assert translator.error == ("overloaded_error", "Overloaded")
    assert translator.feed(_payload({"type": "ping"})) == [("ping", {"type": "ping"})]
    novel = {"type": "something_new", "x": 1}
    assert translator.feed(_payload(novel)) == [("something_new", novel)]
    odd = {"type": "message_start", "message": "not an object"}
    assert translator.feed(_payload(odd)) == [("message_start", odd)]
    assert translator.feed(_payload({"type": "error", "error": None})) == [
        ("error", {"type": "error", "error": None})
    ]
    assert translator.error == ("overloaded_error", "Overloaded")
    assert translator.usage == Usage()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"bytes": 12},
        {"bytes": "not base64!"},
        {"bytes": base64.b64encode(b"not json").decode()},
        {"bytes": base64.b64encode(b"[1, 2]").decode()},
        {"bytes": base64.b64encode(b'{"no_type": 1}').decode()},
        {"bytes": base64.b64encode(b'{"type": 5}').decode()},
        {"bytes": base64.b64encode("\udcff".encode("utf-8", "surrogatepass")).decode()},
        "not a mapping",
    ],
)
def test_malformed_chunks_raise(payload: Any) -> None:
    translator = InvokeStreamTranslator(model="m")
    with pytest.raises(InvokeStreamError):
        translator.feed(payload)
    assert issubclass(InvokeStreamError, ValueError)
