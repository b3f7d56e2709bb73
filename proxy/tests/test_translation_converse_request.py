"""Anthropic Messages request -> Bedrock Converse request (and the CountTokens body).

Each table row is one behaviour or one known failure of other gateways (PROTOCOLS.md §4): an
Anthropic body and the exact Converse fields it must produce. Every request built here is also
checked against botocore's ``bedrock-runtime`` input shapes and Bedrock's extra rules.

The last section builds the Bedrock leg's whole request (``bedrock_request``), which fetches URL
images first: the image host is a mock transport behind a replaced resolver, never the network.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any, NamedTuple

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import media_fetch
from proxy.context import ProxyContext
from proxy.providers import media as provider_media
from proxy.providers.base import Call
from proxy.providers.bedrock.provider import bedrock_request
from proxy.routing import BedrockTarget
from proxy.surfaces import ANTHROPIC_MESSAGES
from proxy.testing.metadata import key_metadata
from proxy.tests.test_translation_converse_validation import (
    MODEL_ID,
    assert_valid_converse,
    assert_valid_count_tokens,
)
from proxy.translation.converse import (
    anthropic_to_converse,
    converse_count_tokens_body,
    tool_name_map,
)
from proxy.translation.converse_common import (
    DOCUMENT_ONLY_TEXT,
    EMPTY_TOOL_RESULT_TEXT,
    EMPTY_TURN_TEXT,
    STUB_TOOL,
    STUB_TOOL_NAME,
    TOOL_NAME_RE,
    TOOL_USE_ID_RE,
    UNFETCHED_SOURCE_TEXT,
    UNSUPPORTED_MEDIA_TEXT,
    sanitise_tool_name,
    sanitise_tool_use_id,
)
from proxy.translation.hub import TranslationError

NOVA_ID = "us.amazon.nova-pro-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").decode()
PDF = base64.b64encode(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n").decode()
EPHEMERAL = {"type": "ephemeral"}
CACHE = {"cachePoint": {"type": "default"}}
ABSENT = object()  # the key must not be in the Converse request


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def cache(ttl: str) -> dict[str, Any]:
    return {"cachePoint": {"type": "default", "ttl": ttl}}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def user(*content: Any) -> dict[str, Any]:
    return {
        "role": "user",
        "content": content[0]
        if len(content) == 1 and isinstance(content[0], str)
        else list(content),
    }


def assistant(*content: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content[0]
        if len(content) == 1 and isinstance(content[0], str)
        else list(content),
    }


def c_user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": b} if isinstance(b, str) else b for b in blocks]}


def c_assistant(*blocks: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"text": b} if isinstance(b, str) else b for b in blocks],
    }


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": list(messages), **extra}


def tool_use(tool_id: str = "toolu_01", name: str = "get_weather", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {"city": "Paris"}, **extra}


def tool_result(content: Any = "22C", tool_id: str = "toolu_01", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content, **extra}


def c_tool_use(tool_id: str = "toolu_01", name: str = "get_weather") -> dict[str, Any]:
    return {"toolUse": {"toolUseId": tool_id, "name": name, "input": {"city": "Paris"}}}


def c_tool_result(*content: Any, tool_id: str = "toolu_01", **extra: Any) -> dict[str, Any]:
    parts = [{"text": c} if isinstance(c, str) else c for c in content]
    return {"toolResult": {"toolUseId": tool_id, "content": parts, **extra}}


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}
C_WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Weather",
        "inputSchema": {"json": WEATHER_SCHEMA},
    }
}
TOOL_TURNS = (user("Weather?"), assistant(tool_use()), user(tool_result()))
C_TOOL_TURNS = [c_user("Weather?"), c_assistant(c_tool_use()), c_user(c_tool_result("22C"))]


def thinking(value: str = "Let me think.", signature: str | None = "EqQBsig") -> dict[str, Any]:
    block: dict[str, Any] = {"type": "thinking", "thinking": value}
    if signature is not None:
        block["signature"] = signature
    return block


def c_reasoning(value: str = "Let me think.", signature: str = "EqQBsig") -> dict[str, Any]:
    return {"reasoningContent": {"reasoningText": {"text": value, "signature": signature}}}


def image(media_type: str = "image/png", data: str = PNG, **extra: Any) -> dict[str, Any]:
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "image", "source": source, **extra}


def pdf(title: str | None = None, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        **extra,
    }
    if title is not None:
        block["title"] = title
    return block


def c_pdf(name: str = "document", **extra: Any) -> dict[str, Any]:
    return {"document": {"format": "pdf", "source": {"bytes": PDF}, "name": name, **extra}}


def note(kind: str, reference: str, source_type: str) -> dict[str, str]:
    return {
        "text": UNFETCHED_SOURCE_TEXT.format(
            kind=kind, reference=reference, source_type=source_type
        )
    }


class Case(NamedTuple):
    id: str
    body: dict[str, Any]
    expect: dict[str, Any]
    model_id: str = MODEL_ID
    betas: tuple[str, ...] = ()


SYSTEM_CASES = [
    Case(
        "system string", body(user("hi"), system="Be terse."), {"system": [{"text": "Be terse."}]}
    ),
    Case("blank system string is dropped", body(user("hi"), system=" \n"), {"system": ABSENT}),
    Case(
        "system blocks: blank dropped, cache_control becomes a cachePoint after the block",
        body(user("hi"), system=[text("A"), text("B", cache_control=EPHEMERAL), text("  ")]),
        {"system": [{"text": "A"}, {"text": "B"}, CACHE]},
    ),
    Case(
        "cache_control ttl 1h is kept on the cachePoint",
        body(user("hi"), system=[text("A", cache_control={"type": "ephemeral", "ttl": "1h"})]),
        {"system": [{"text": "A"}, cache("1h")]},
    ),
    Case(
        "unknown cache ttl is left out rather than sent",
        body(user("hi"), system=[text("A", cache_control={"type": "ephemeral", "ttl": "2h"})]),
        {"system": [{"text": "A"}, CACHE]},
    ),
    Case(
        "role system messages between turns fold into the system list",
        body(
            user("a"),
            {"role": "system", "content": "Mid"},
            user("b"),
            {"role": "system", "content": [text("M2", cache_control=EPHEMERAL)]},
            assistant("ok"),
            user("c"),
            system="S",
        ),
        {
            "system": [{"text": "S"}, {"text": "Mid"}, {"text": "M2"}, CACHE],
            "messages": [c_user("a", "b"), c_assistant("ok"), c_user("c")],
        },
    ),
]

MESSAGE_CASES = [
    Case("string content", body(user("hi")), {"messages": [c_user("hi")]}),
    Case(
        "blank text is dropped and an emptied turn gets a placeholder",
        body(user(text(""), text(" \n")), assistant("ok"), user("go")),
        {"messages": [c_user(EMPTY_TURN_TEXT), c_assistant("ok"), c_user("go")]},
    ),
    Case(
        "empty content list in the middle gets a placeholder",
        body(user("a"), assistant(), user("b")),
        {"messages": [c_user("a"), c_assistant(EMPTY_TURN_TEXT), c_user("b")]},
    ),
    Case(
        "an empty final assistant turn (prefill of nothing) is dropped",
        body(user("a"), assistant(text(""))),
        {"messages": [c_user("a")]},
    ),
    Case(
        "a conversation opening with assistant gets a user turn first",
        body(assistant("prefix"), user("q")),
        {"messages": [c_user(EMPTY_TURN_TEXT), c_assistant("prefix"), c_user("q")]},
    ),
    Case("no messages at all", body(), {"messages": [c_user(EMPTY_TURN_TEXT)]}),
    Case(
        "consecutive user turns merge, tool results first",
        body(*TOOL_TURNS[:2], user(text("see above")), user(tool_result()), tools=[WEATHER_TOOL]),
        {"messages": [*C_TOOL_TURNS[:2], c_user(c_tool_result("22C"), "see above")]},
    ),
    Case(
        "tool results move first inside one user turn too, with their cachePoint",
        body(
            *TOOL_TURNS[:2],
            user(text("note"), tool_result(cache_control=EPHEMERAL)),
            tools=[WEATHER_TOOL],
        ),
        {"messages": [*C_TOOL_TURNS[:2], c_user(c_tool_result("22C"), CACHE, "note")]},
    ),
    Case(
        "consecutive assistant turns merge",
        body(user("a"), assistant("x"), assistant(text("y"))),
        {"messages": [c_user("a"), c_assistant("x", "y")]},
    ),
    Case(
        "unknown roles are dropped",
        body(user("a"), {"role": "tool", "content": "r"}, user("b")),
        {"messages": [c_user("a", "b")]},
    ),
    Case(
        "cache_control on an assistant block is kept (LiteLLM #12695)",
        body(user("a"), assistant(text("x", cache_control=EPHEMERAL)), user("b")),
        {"messages": [c_user("a"), c_assistant("x", CACHE), c_user("b")]},
    ),
    Case(
        "unknown content block types are dropped",
        body(
            user("a"),
            assistant(
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                text("found it"),
            ),
        ),
        {"messages": [c_user("a"), c_assistant("found it")]},
    ),
]

IMAGE_CASES = [
    Case(
        "base64 image: media type -> format, data copied as is",
        body(user(image(), text("what is it?"))),
        {
            "messages": [
                c_user({"image": {"format": "png", "source": {"bytes": PNG}}}, "what is it?")
            ]
        },
    ),
    Case(
        "jpeg image with cache_control",
        body(user(image("image/jpeg", cache_control=EPHEMERAL), text("q"))),
        {"messages": [c_user({"image": {"format": "jpeg", "source": {"bytes": PNG}}}, CACHE, "q")]},
    ),
    Case(
        "url image the leg did not fetch (a CountTokens body): a text note says so",
        body(user({"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}})),
        {"messages": [c_user(note("image", "https://x.test/a.png", "url"))]},
    ),
    Case(
        "files-api image becomes a note too",
        body(user({"type": "image", "source": {"type": "file", "file_id": "file_1"}})),
        {"messages": [c_user(note("image", "file_1", "file"))]},
    ),
    Case(
        "unsupported image media type becomes a note",
        body(user(image("image/bmp"))),
        {
            "messages": [
                c_user(
                    {"text": UNSUPPORTED_MEDIA_TEXT.format(kind="image", media_type="image/bmp")}
                )
            ]
        },
    ),
]

DOCUMENT_CASES = [
    Case(
        "pdf: valid name from the title, context kept, citations dropped, text added",
        body(user(pdf("Q3 report: final/v2.pdf", context="Finance", citations={"enabled": True}))),
        {
            "messages": [
                c_user(c_pdf("Q3 report final v2 pdf", context="Finance"), DOCUMENT_ONLY_TEXT)
            ]
        },
    ),
    Case(
        "document with a text block in the same message gets no extra text",
        body(user(pdf(), text("Summarise"))),
        {"messages": [c_user(c_pdf(), "Summarise")]},
    ),
    Case(
        "document alone in a later merged turn still gets its text block",
        body(user("a"), assistant("b"), user(pdf("(draft) [v1]"))),
        {
            "messages": [
                c_user("a"),
                c_assistant("b"),
                c_user(c_pdf("(draft) [v1]"), DOCUMENT_ONLY_TEXT),
            ]
        },
    ),
    Case(
        "plain text document travels as a txt file (text sources need citations)",
        body(
            user(
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "plain"},
                },
                text("q"),
            )
        ),
        {
            "messages": [
                c_user(
                    {
                        "document": {
                            "format": "txt",
                            "source": {"bytes": b64("plain")},
                            "name": "document",
                        }
                    },
                    "q",
                )
            ]
        },
    ),
    Case(
        "content document: its text parts travel as a txt file",
        body(
            user(
                {
                    "type": "document",
                    "title": "Notes",
                    "source": {"type": "content", "content": [text("p1"), image(), text("p2")]},
                },
                text("q"),
            )
        ),
        {
            "messages": [
                c_user(
                    {
                        "document": {
                            "format": "txt",
                            "source": {"bytes": b64("p1\n\np2")},
                            "name": "Notes",
                        }
                    },
                    "q",
                )
            ]
        },
    ),
    Case(
        "url document is not fetched",
        body(user({"type": "document", "source": {"type": "url", "url": "https://x.test/d.pdf"}})),
        {"messages": [c_user(note("document", "https://x.test/d.pdf", "url"))]},
    ),
    Case(
        "document names are unique per request",
        body(user(pdf("notes"), pdf("Notes"), pdf(), pdf(""), text("q"))),
        {
            "messages": [
                c_user(
                    c_pdf("notes"),
                    c_pdf("Notes (2)"),
                    c_pdf("document"),
                    c_pdf("document (2)"),
                    "q",
                )
            ]
        },
    ),
    Case(
        "blank text document is dropped",
        body(user({"type": "document", "source": {"type": "text", "data": " "}}, text("q"))),
        {"messages": [c_user("q")]},
    ),
]

TOOL_BLOCK_CASES = [
    Case(
        "tool ids pass through unchanged (toolu_ and tooluse_)",
        body(
            user("a"),
            assistant(tool_use("toolu_01A"), tool_use("tooluse_kZJ.1:x")),
            user(tool_result(tool_id="toolu_01A"), tool_result(tool_id="tooluse_kZJ.1:x")),
            tools=[WEATHER_TOOL],
        ),
        {
            "messages": [
                c_user("a"),
                c_assistant(c_tool_use("toolu_01A"), c_tool_use("tooluse_kZJ.1:x")),
                c_user(
                    c_tool_result("22C", tool_id="toolu_01A"),
                    c_tool_result("22C", tool_id="tooluse_kZJ.1:x"),
                ),
            ]
        },
    ),
    Case(
        "ids outside Bedrock's pattern are sanitised the same way on both sides",
        body(
            user("a"),
            assistant(tool_use("call/abc def")),
            user(tool_result(tool_id="call/abc def")),
            tools=[WEATHER_TOOL],
        ),
        {
            "messages": [
                c_user("a"),
                c_assistant(c_tool_use(sanitise_tool_use_id("call/abc def"))),
                c_user(c_tool_result("22C", tool_id=sanitise_tool_use_id("call/abc def"))),
            ]
        },
    ),
    Case(
        "tool_result blocks: text, image and document each map; inner cache_control ignored",
        body(
            *TOOL_TURNS[:2],
            user(
                tool_result(
                    [
                        text("line", cache_control=EPHEMERAL),
                        text(" "),
                        image(),
                        pdf("spec"),
                        {"type": "tool_reference", "tool_name": "x"},
                    ]
                )
            ),
            tools=[WEATHER_TOOL],
        ),
        {
            "messages": [
                *C_TOOL_TURNS[:2],
                c_user(
                    c_tool_result(
                        "line",
                        {"image": {"format": "png", "source": {"bytes": PNG}}},
                        c_pdf("spec"),
                    )
                ),
            ]
        },
    ),
    Case(
        "tool_result url image becomes a note inside the result",
        body(
            *TOOL_TURNS[:2],
            user(
                tool_result(
                    [{"type": "image", "source": {"type": "url", "url": "https://x.test/i"}}]
                )
            ),
            tools=[WEATHER_TOOL],
        ),
        {
            "messages": [
                *C_TOOL_TURNS[:2],
                c_user(c_tool_result(note("image", "https://x.test/i", "url"))),
            ]
        },
    ),
    Case(
        "is_error becomes status error",
        body(*TOOL_TURNS[:2], user(tool_result("boom", is_error=True)), tools=[WEATHER_TOOL]),
        {"messages": [*C_TOOL_TURNS[:2], c_user(c_tool_result("boom", status="error"))]},
    ),
    *[
        Case(
            f"empty tool_result content ({label}) gets a placeholder",
            body(*TOOL_TURNS[:2], user(tool_result(content)), tools=[WEATHER_TOOL]),
            {"messages": [*C_TOOL_TURNS[:2], c_user(c_tool_result(EMPTY_TOOL_RESULT_TEXT))]},
        )
        for label, content in [
            ("empty list", []),
            ("missing", None),
            ("blank string", "  "),
            ("blank blocks", [text("")]),
        ]
    ],
    Case(
        "cache_control on a tool_result is a sibling cachePoint, never inside",
        body(*TOOL_TURNS[:2], user(tool_result(cache_control=EPHEMERAL)), tools=[WEATHER_TOOL]),
        {"messages": [*C_TOOL_TURNS[:2], c_user(c_tool_result("22C"), CACHE)]},
    ),
    Case(
        "tool_use input that is not an object becomes {}",
        body(user("a"), assistant({**tool_use(), "input": "oops"}), tools=[WEATHER_TOOL]),
        {
            "messages": [
                c_user("a"),
                c_assistant(
                    {"toolUse": {"toolUseId": "toolu_01", "name": "get_weather", "input": {}}}
                ),
            ]
        },
    ),
]

THINKING_CASES = [
    Case(
        "thinking -> reasoningText with its signature, verbatim",
        body(user("a"), assistant(thinking(), text("b")), user("c")),
        {"messages": [c_user("a"), c_assistant(c_reasoning(), "b"), c_user("c")]},
    ),
    Case(
        "thinking without signature (other provider) is dropped, not failed",
        body(
            user("a"),
            assistant(thinking(signature=None), thinking(signature=""), text("b")),
            user("c"),
        ),
        {"messages": [c_user("a"), c_assistant("b"), c_user("c")]},
    ),
    Case(
        "signature-only thinking block is kept (LiteLLM #38809)",
        body(
            user("a"),
            assistant(thinking(""), tool_use()),
            user(tool_result()),
            tools=[WEATHER_TOOL],
        ),
        {
            "messages": [
                c_user("a"),
                c_assistant(c_reasoning(""), c_tool_use()),
                c_user(c_tool_result("22C")),
            ]
        },
    ),
    Case(
        "redacted_thinking -> redactedContent, same base64 string",
        body(
            user("a"),
            assistant({"type": "redacted_thinking", "data": "RW5jcnlwdGVk"}, text("b")),
            user("c"),
        ),
        {
            "messages": [
                c_user("a"),
                c_assistant({"reasoningContent": {"redactedContent": "RW5jcnlwdGVk"}}, "b"),
                c_user("c"),
            ]
        },
    ),
    Case(
        "no cachePoint right after a reasoning block",
        body(
            user("a"),
            assistant({**thinking(), "cache_control": EPHEMERAL}, text("b")),
            user("c"),
        ),
        {"messages": [c_user("a"), c_assistant(c_reasoning(), "b"), c_user("c")]},
    ),
    Case(
        "top-level cache_control skips a turn ending in reasoning",
        body(user("a"), assistant(thinking()), cache_control=EPHEMERAL),
        {"messages": [c_user("a"), c_assistant(c_reasoning())]},
    ),
    Case(
        "non-Claude model: reasoning and Claude-only fields are dropped",
        body(
            user("a"),
            assistant(thinking(), {"type": "redacted_thinking", "data": "eA=="}, text("b")),
            user("c"),
            top_k=5,
            thinking={"type": "enabled", "budget_tokens": 2000},
            max_tokens=4000,
        ),
        {
            "messages": [c_user("a"), c_assistant("b"), c_user("c")],
            "additionalModelRequestFields": ABSENT,
            "additionalModelResponseFieldPaths": ABSENT,
        },
        model_id=NOVA_ID,
        betas=("interleaved-thinking-2025-05-14",),
    ),
]

TOOL_CASES = [
    Case(
        "tools -> toolSpec with inputSchema.json; cache_control -> cachePoint after the tool",
        body(user("a"), tools=[{**WEATHER_TOOL, "cache_control": EPHEMERAL}]),
        {"toolConfig": {"tools": [C_WEATHER_TOOL, CACHE]}},
    ),
    Case(
        "unknown tool fields dropped (defer_loading, input_examples, type); strict kept",
        body(
            user("a"),
            tools=[
                {
                    "type": "custom",
                    "name": "t",
                    "description": " ",
                    "input_schema": {"type": "object"},
                    "defer_loading": True,
                    "input_examples": [{}],
                    "strict": True,
                }
            ],
        ),
        {
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": "t",
                            "inputSchema": {"json": {"type": "object"}},
                            "strict": True,
                        }
                    }
                ]
            }
        },
    ),
    Case(
        "server tools are dropped; their cache breakpoint moves to the last kept tool",
        body(
            user("a"),
            tools=[
                WEATHER_TOOL,
                {
                    "type": "web_search_20250305",
                    "name": "web_search",
                    "max_uses": 3,
                    "cache_control": EPHEMERAL,
                },
            ],
        ),
        {"toolConfig": {"tools": [C_WEATHER_TOOL, CACHE]}},
    ),
    Case(
        "duplicate tool names keep the first",
        body(user("a"), tools=[WEATHER_TOOL, {**WEATHER_TOOL, "description": "dup"}]),
        {"toolConfig": {"tools": [C_WEATHER_TOOL]}},
    ),
    Case(
        "tool names outside Bedrock's pattern are sanitised everywhere",
        body(
            user("a"),
            assistant(tool_use(name="mcp.server/read")),
            user(tool_result()),
            tools=[{"name": "mcp.server/read", "input_schema": {"type": "object"}}],
            tool_choice={"type": "tool", "name": "mcp.server/read"},
        ),
        {
            "messages": [
                c_user("a"),
                c_assistant(c_tool_use(name=sanitise_tool_name("mcp.server/read"))),
                c_user(c_tool_result("22C")),
            ],
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": sanitise_tool_name("mcp.server/read"),
                            "inputSchema": {"json": {"type": "object"}},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": sanitise_tool_name("mcp.server/read")}},
            },
        },
    ),
    *[
        Case(
            f"tool_choice {label}",
            body(user("a"), tools=[WEATHER_TOOL], tool_choice=choice),
            {"toolConfig": {"tools": [C_WEATHER_TOOL], **expected}},
        )
        for label, choice, expected in [
            ("auto", {"type": "auto"}, {"toolChoice": {"auto": {}}}),
            ("any", {"type": "any"}, {"toolChoice": {"any": {}}}),
            (
                "tool",
                {"type": "tool", "name": "get_weather"},
                {"toolChoice": {"tool": {"name": "get_weather"}}},
            ),
            # Converse has no "none": keep the tools (history and cache prefix), default choice.
            ("none", {"type": "none"}, {}),
            (
                "auto with disable_parallel_tool_use (dropped)",
                {"type": "auto", "disable_parallel_tool_use": True},
                {"toolChoice": {"auto": {}}},
            ),
            ("naming an unknown tool", {"type": "tool", "name": "nope"}, {}),
        ]
    ],
    Case(
        "tool_choice without tools sends no toolConfig",
        body(user("a"), tool_choice={"type": "any"}),
        {"toolConfig": ABSENT},
    ),
    Case(
        "history with tool blocks but no tools gets a stub tool",
        body(*TOOL_TURNS),
        {"toolConfig": {"tools": [STUB_TOOL]}, "messages": C_TOOL_TURNS},
    ),
    Case(
        "history with tool blocks and only server tools gets a stub tool",
        body(
            *TOOL_TURNS,
            tools=[{"type": "bash_20250124", "name": "bash"}],
            tool_choice={"type": "any"},
        ),
        {"toolConfig": {"tools": [STUB_TOOL]}},
    ),
    Case("no tools and no tool blocks: no toolConfig", body(user("a")), {"toolConfig": ABSENT}),
]

INFERENCE_CASES = [
    Case(
        "inferenceConfig: maxTokens, temperature, topP, stop sequences without empty strings",
        body(
            user("a"),
            max_tokens=500,
            temperature=0.2,
            top_p=0.9,
            stop_sequences=["END", "", 3, "\n"],
        ),
        {
            "inferenceConfig": {
                "maxTokens": 500,
                "temperature": 0.2,
                "topP": 0.9,
                "stopSequences": ["END", "\n"],
            }
        },
    ),
    Case(
        "only empty stop sequences: none sent; integer temperature becomes a float",
        body(user("a"), temperature=1, stop_sequences=[""]),
        {"inferenceConfig": {"maxTokens": 1024, "temperature": 1.0}},
    ),
    Case(
        "non-numeric sampling values are ignored",
        body(user("a"), temperature=True, top_p=None, top_k="5", max_tokens=0),
        {"inferenceConfig": ABSENT, "additionalModelRequestFields": ABSENT},
    ),
    Case(
        "top_k, thinking and betas go to additionalModelRequestFields",
        body(
            user("a"),
            max_tokens=4096,
            top_k=40,
            thinking={"type": "enabled", "budget_tokens": 2048, "x": 1},
        ),
        {
            "additionalModelRequestFields": {
                "top_k": 40,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "anthropic_beta": ["interleaved-thinking-2025-05-14"],
            },
            "additionalModelResponseFieldPaths": ["/stop_sequence"],
        },
        betas=("interleaved-thinking-2025-05-14",),
    ),
    Case(
        "adaptive thinking becomes enabled with budget max_tokens - 1",
        body(user("a"), max_tokens=32000, thinking={"type": "adaptive"}),
        {"additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 31999}}},
    ),
    Case(
        "adaptive thinking without room for the minimum budget is dropped",
        body(user("a"), max_tokens=1024, thinking={"type": "adaptive"}),
        {"additionalModelRequestFields": ABSENT},
    ),
    Case(
        "thinking is left out when the pending tool calls came without reasoning",
        body(*TOOL_TURNS, tools=[WEATHER_TOOL], max_tokens=4096, thinking={"type": "adaptive"}),
        {"additionalModelRequestFields": ABSENT},
    ),
    Case(
        "thinking stays when the pending tool calls came after reasoning",
        body(
            user("Weather?"),
            assistant(thinking(), tool_use()),
            user(tool_result()),
            tools=[WEATHER_TOOL],
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
        ),
        {"additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2048}}},
    ),
    Case(
        "disabled thinking is omitted",
        body(user("a"), thinking={"type": "disabled"}),
        {"additionalModelRequestFields": ABSENT},
    ),
    Case(
        "unknown thinking type is omitted",
        body(user("a"), thinking={"type": "turbo"}),
        {"additionalModelRequestFields": ABSENT},
    ),
]

CACHE_CASES = [
    Case(
        "at most 4 cache points: system kept, then the latest message points",
        body(
            user(text("m1", cache_control=EPHEMERAL)),
            assistant(text("m2", cache_control=EPHEMERAL)),
            user(text("m3", cache_control=EPHEMERAL)),
            assistant(text("m4", cache_control=EPHEMERAL)),
            user(text("m5")),
            system=[text("s1", cache_control=EPHEMERAL), text("s2", cache_control=EPHEMERAL)],
        ),
        {
            "system": [{"text": "s1"}, CACHE, {"text": "s2"}, CACHE],
            "messages": [
                c_user("m1"),
                c_assistant("m2"),
                c_user("m3", CACHE),
                c_assistant("m4", CACHE),
                c_user("m5"),
            ],
        },
    ),
    Case(
        "at most 4 cache points across tools and system",
        body(
            user("a"),
            tools=[{**WEATHER_TOOL, "name": f"t{i}", "cache_control": EPHEMERAL} for i in range(3)],
            system=[text("s1", cache_control=EPHEMERAL), text("s2", cache_control=EPHEMERAL)],
        ),
        {"system": [{"text": "s1"}, CACHE, {"text": "s2"}]},
    ),
    Case(
        "top-level cache_control puts a cachePoint at the end of the last turn",
        body(
            user("a"), assistant("b"), user("c"), cache_control={"type": "ephemeral", "ttl": "1h"}
        ),
        {"messages": [c_user("a"), c_assistant("b"), c_user("c", cache("1h"))]},
    ),
    Case(
        "top-level cache_control never doubles an existing cachePoint",
        body(user(text("a", cache_control=EPHEMERAL)), cache_control=EPHEMERAL),
        {"messages": [c_user("a", CACHE)]},
    ),
]

UNKNOWN_FIELD_CASES = [
    Case(
        "unknown top-level fields are dropped, never an error",
        body(
            user("a"),
            stream=True,
            context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
            output_config={"effort": "high"},
            metadata={"user_id": '{"device_id":"x"}'},
            service_tier="auto",
            container="cntr_1",
            mcp_servers=[{"type": "url", "url": "https://mcp.test", "name": "m"}],
            a_field_from_the_future={"x": 1},
        ),
        {
            "messages": [c_user("a")],
            "inferenceConfig": {"maxTokens": 1024},
            "additionalModelResponseFieldPaths": ["/stop_sequence"],
            "system": ABSENT,
            "toolConfig": ABSENT,
            "additionalModelRequestFields": ABSENT,
        },
    ),
]


def claude_code_body() -> dict[str, Any]:
    """A request shaped like a current Claude Code turn (PROTOCOLS.md §6)."""
    return {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": True,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": '{"device_id":"d","session_id":"s"}'},
        "system": [
            text("You are Claude Code.", cache_control={"type": "ephemeral"}),
            text("Environment: linux", cache_control={"type": "ephemeral", "ttl": "1h"}),
        ],
        "tools": [
            {
                "name": "Bash",
                "description": "Run a command",
                "input_schema": {
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                    "additionalProperties": False,
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                },
            },
            {
                "name": "mcp__github__create_issue",
                "description": "Create issue",
                "input_schema": {"type": "object"},
                "defer_loading": True,
            },
            {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
            {
                "name": "Read",
                "description": "Read a file",
                "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            user(text("<system-reminder>ctx</system-reminder>"), text("Fix the bug")),
            assistant(
                thinking("I should look.", "sigA"),
                text(""),
                tool_use("toolu_01", "Bash", input={"command": "ls"}),
            ),
            user(tool_result([text("a.py\nb.py")]), text("", cache_control={"type": "ephemeral"})),
            {"role": "system", "content": "The user switched to plan mode."},
            user(text("continue", cache_control={"type": "ephemeral"})),
        ],
    }


TABLES = {
    "system": SYSTEM_CASES,
    "messages": MESSAGE_CASES,
    "images": IMAGE_CASES,
    "documents": DOCUMENT_CASES,
    "tool blocks": TOOL_BLOCK_CASES,
    "thinking": THINKING_CASES,
    "tools": TOOL_CASES,
    "inference": INFERENCE_CASES,
    "cache": CACHE_CASES,
    "unknown fields": UNKNOWN_FIELD_CASES,
}
ALL_CASES = [case for cases in TABLES.values() for case in cases]
ALL_CASES.append(
    Case("claude code turn", claude_code_body(), {}, betas=("interleaved-thinking-2025-05-14",))
)


def _translate(case: Case) -> dict[str, Any]:
    return anthropic_to_converse(
        copy.deepcopy(case.body), model_id=case.model_id, betas=list(case.betas)
    )


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_request_translation(case: Case) -> None:
    result = _translate(case)
    for key, expected in case.expect.items():
        if expected is ABSENT:
            assert key not in result, key
        else:
            assert result.get(key) == expected, key


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_every_request_validates_against_botocore_and_bedrock_rules(case: Case) -> None:
    assert_valid_converse(_translate(case), model_id=case.model_id)


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_every_count_tokens_body_validates(case: Case) -> None:
    count_body = {
        k: v for k, v in copy.deepcopy(case.body).items() if k not in ("max_tokens", "stream")
    }
    assert_valid_count_tokens(converse_count_tokens_body(count_body, betas=list(case.betas)))


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_translation_does_not_modify_the_client_body(case: Case) -> None:
    original = copy.deepcopy(case.body)
    anthropic_to_converse(case.body, model_id=case.model_id, betas=list(case.betas))
    converse_count_tokens_body(case.body, betas=list(case.betas))
    assert case.body == original


def test_claude_code_turn() -> None:
    result = anthropic_to_converse(
        claude_code_body(), model_id=MODEL_ID, betas=["interleaved-thinking-2025-05-14"]
    )
    assert set(result) == {
        "messages",
        "system",
        "toolConfig",
        "inferenceConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
    }
    assert result["system"] == [
        {"text": "You are Claude Code."},
        CACHE,
        {"text": "Environment: linux"},
        cache("1h"),
        {"text": "The user switched to plan mode."},
    ]
    assert [t.get("toolSpec", {}).get("name") for t in result["toolConfig"]["tools"]] == [
        "Bash",
        "mcp__github__create_issue",
        "Read",
        None,
    ]
    assert result["toolConfig"]["tools"][-1] == CACHE
    assert result["messages"] == [
        c_user("<system-reminder>ctx</system-reminder>", "Fix the bug"),
        c_assistant(
            c_reasoning("I should look.", "sigA"),
            {"toolUse": {"toolUseId": "toolu_01", "name": "Bash", "input": {"command": "ls"}}},
        ),
        # The blank text's cache_control goes with it; the last turn's point is one of the four.
        c_user(c_tool_result("a.py\nb.py"), "continue", CACHE),
    ]
    assert result["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
    }
    assert result["inferenceConfig"] == {"maxTokens": 32000}


def test_sanitised_ids_and_names_match_bedrock_patterns_and_are_stable() -> None:
    for raw in ["call/abc def", "x" * 80, "", "ümlaut", "a.b:c"]:
        tool_id = sanitise_tool_use_id(raw)
        assert TOOL_USE_ID_RE.fullmatch(tool_id)
        assert sanitise_tool_use_id(raw) == tool_id
        name = sanitise_tool_name(raw)
        assert TOOL_NAME_RE.fullmatch(name)
    assert sanitise_tool_use_id("a.b:c") == "a.b:c"  # valid ids pass unchanged
    assert sanitise_tool_name("a.b") != sanitise_tool_name("a_b")  # no collisions
    assert sanitise_tool_name("get_weather") == "get_weather"


def test_tool_name_map_reverses_every_rewritten_name() -> None:
    request = body(
        user("a"),
        assistant(tool_use(name="old.tool")),
        user(tool_result()),
        tools=[{"name": "mcp.srv/read", "input_schema": {}}, WEATHER_TOOL],
    )
    assert tool_name_map(request) == {
        sanitise_tool_name("mcp.srv/read"): "mcp.srv/read",
        sanitise_tool_name("old.tool"): "old.tool",
    }
    assert tool_name_map(body(user("a"), tools=[WEATHER_TOOL])) == {}


# --- count_tokens --------------------------------------------------------------------------------


def test_count_tokens_body_reuses_the_request_translation() -> None:
    count_body = {
        "model": "claude-sonnet-4-5",
        "system": "S",
        "messages": [*TOOL_TURNS, assistant("It is 22C."), user("Thanks")],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "top_k": 3,
        "temperature": 0.5,
        "stop_sequences": ["x"],
    }
    assert converse_count_tokens_body(count_body, betas=["b1"]) == {
        "input": {
            "converse": {
                "messages": [*C_TOOL_TURNS, c_assistant("It is 22C."), c_user("Thanks")],
                "system": [{"text": "S"}],
                "toolConfig": {"tools": [C_WEATHER_TOOL], "toolChoice": {"auto": {}}},
                "additionalModelRequestFields": {
                    "top_k": 3,
                    "thinking": {"type": "enabled", "budget_tokens": 2048},
                    "anthropic_beta": ["b1"],
                },
            }
        }
    }


def test_count_tokens_minimal_and_adaptive() -> None:
    assert converse_count_tokens_body({"messages": [user("hi")]}, betas=[]) == {
        "input": {"converse": {"messages": [c_user("hi")]}}
    }
    adaptive = converse_count_tokens_body(
        {"messages": [user("hi")], "thinking": {"type": "adaptive"}}, betas=[]
    )
    assert adaptive["input"]["converse"]["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }


def test_count_tokens_gets_the_stub_tool() -> None:
    result = converse_count_tokens_body({"messages": list(TOOL_TURNS)}, betas=[])
    assert result["input"]["converse"]["toolConfig"] == {"tools": [STUB_TOOL]}
    assert STUB_TOOL["toolSpec"]["name"] == STUB_TOOL_NAME


# --- any body a client may send still gives a valid request --------------------------------------

_texts = st.sampled_from(["", " ", "\n\t", "hello", "two words", "ünïcödé"])
_cache_controls = st.sampled_from(
    [
        None,
        EPHEMERAL,
        {"type": "ephemeral", "ttl": "1h"},
        {"type": "ephemeral", "ttl": "5m"},
        {"type": "x"},
    ]
)
_ids = st.one_of(st.sampled_from(["toolu_01", "tooluse_a.b:c", "call_1"]), st.text(max_size=80))
_names = st.one_of(st.sampled_from(["get_weather", "Bash", "mcp__x__y"]), st.text(max_size=80))


def _with_cache(block: dict[str, Any], cache_control: dict[str, Any] | None) -> dict[str, Any]:
    return {**block, "cache_control": cache_control} if cache_control else block


_sources = st.sampled_from(
    [
        {"type": "base64", "media_type": "image/png", "data": PNG},
        {"type": "base64", "media_type": "image/tiff", "data": PNG},
        {"type": "url", "url": "https://x.test/i.png"},
        {"type": "file", "file_id": "file_1"},
    ]
)
_doc_sources = st.sampled_from(
    [
        {"type": "base64", "media_type": "application/pdf", "data": PDF},
        {"type": "text", "media_type": "text/plain", "data": "body"},
        {"type": "text", "media_type": "text/plain", "data": " "},
        {"type": "content", "content": [text("c1"), text("")]},
        {"type": "content", "content": []},
        {"type": "url", "url": "https://x.test/d.pdf"},
    ]
)
_text_blocks = st.builds(lambda t, c: _with_cache(text(t), c), _texts, _cache_controls)
_image_blocks = st.builds(
    lambda s, c: _with_cache({"type": "image", "source": s}, c), _sources, _cache_controls
)
_doc_blocks = st.builds(
    lambda s, t, c: _with_cache({"type": "document", "source": s, "title": t}, c),
    _doc_sources,
    st.one_of(st.none(), st.text(max_size=30)),
    _cache_controls,
)
_result_content = st.one_of(
    st.none(), _texts, st.lists(st.one_of(_text_blocks, _image_blocks, _doc_blocks), max_size=3)
)
_result_blocks = st.builds(
    lambda i, content, err, c: _with_cache(tool_result(content, tool_id=i, is_error=err), c),
    _ids,
    _result_content,
    st.booleans(),
    _cache_controls,
)
_user_blocks = st.one_of(_text_blocks, _image_blocks, _doc_blocks, _result_blocks)
_assistant_blocks = st.one_of(
    _text_blocks,
    st.builds(lambda i, n, c: _with_cache(tool_use(i, n), c), _ids, _names, _cache_controls),
    st.builds(thinking, _texts, st.sampled_from([None, "", "sig"])),
    st.just({"type": "redacted_thinking", "data": "RW5j"}),
    st.just({"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}}),
)
_messages = st.lists(
    st.one_of(
        st.builds(
            lambda c: {"role": "user", "content": c},
            st.one_of(_texts, st.lists(_user_blocks, max_size=4)),
        ),
        st.builds(
            lambda c: {"role": "assistant", "content": c},
            st.one_of(_texts, st.lists(_assistant_blocks, max_size=4)),
        ),
        st.builds(
            lambda c: {"role": "system", "content": c},
            st.one_of(_texts, st.lists(_text_blocks, max_size=2)),
        ),
    ),
    max_size=6,
)
_tools = st.lists(
    st.one_of(
        st.builds(
            lambda n, d, c: _with_cache(
                {"name": n, "description": d, "input_schema": {"type": "object"}}, c
            ),
            _names,
            _texts,
            _cache_controls,
        ),
        st.builds(
            lambda c: _with_cache({"type": "web_search_20250305", "name": "web_search"}, c),
            _cache_controls,
        ),
    ),
    max_size=4,
)
_bodies = st.fixed_dictionaries(
    {"messages": _messages},
    optional={
        "system": st.one_of(_texts, st.lists(_text_blocks, max_size=3)),
        "tools": _tools,
        "tool_choice": st.one_of(
            st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"}]),
            st.builds(lambda n: {"type": "tool", "name": n}, _names),
        ),
        "max_tokens": st.sampled_from([1, 1024, 1025, 32000]),
        "thinking": st.sampled_from(
            [{"type": "adaptive"}, {"type": "disabled"}, {"type": "other"}]
        ),
        "temperature": st.floats(0, 1),
        "top_k": st.integers(0, 500),
        "stop_sequences": st.lists(st.sampled_from(["", "END", " "]), max_size=3),
        "cache_control": _cache_controls,
        "output_config": st.just({"effort": "low"}),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_body=_bodies, betas=st.lists(st.sampled_from(["b1", "b2"]), max_size=2))
def test_any_client_body_translates_to_a_valid_request(
    request_body: dict[str, Any], betas: list[str]
) -> None:
    assert_valid_converse(anthropic_to_converse(request_body, model_id=MODEL_ID, betas=betas))
    assert_valid_converse(
        anthropic_to_converse(request_body, model_id=NOVA_ID, betas=betas), NOVA_ID
    )
    count_body = {k: v for k, v in request_body.items() if k != "max_tokens"}
    assert_valid_count_tokens(converse_count_tokens_body(count_body, betas=betas))


# --- the Bedrock leg's request: URL images fetched into bytes first ------------------------------

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\x00" * 40
IMAGE_HOST = "images.test"
PUBLIC_ADDRESS = "93.184.215.14"  # what IMAGE_HOST resolves to; the mock transport answers


def url_image(path: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "image",
        "source": {"type": "url", "url": f"https://{IMAGE_HOST}{path}"},
        **extra,
    }


def image_host(
    monkeypatch: pytest.MonkeyPatch, images: dict[str, bytes], *, address: str = PUBLIC_ADDRESS
) -> list[httpx.Request]:
    """IMAGE_HOST, resolved to ``address``, serving ``images`` (path -> bytes, all labelled
    image/jpeg, which the bytes must overrule) to the gateway's image fetches; returns the list
    the requests it gets are appended to."""
    requests: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        data = images.get(request.url.path)
        if data is None:
            return httpx.Response(404)
        return httpx.Response(200, content=data, headers={"content-type": "image/jpeg"})

    async def resolve(host: str, port: int) -> list[str]:
        assert host == IMAGE_HOST
        return [address]

    monkeypatch.setattr(media_fetch, "resolve_host", resolve)
    monkeypatch.setattr(
        provider_media,
        "_image_client",
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(serve)),
    )
    return requests


def bedrock_call(request_body: dict[str, Any], *, stream: bool = False) -> Call:
    """The Anthropic client's call as a Bedrock leg gets it."""
    context = ProxyContext(
        metadata=key_metadata(), request_id="req_test", stream=stream, log_level="off"
    )
    return Call(
        surface=ANTHROPIC_MESSAGES,
        context=context,
        data=request_body,
        body=json.dumps(request_body).encode(),
        headers={},
    )


def bedrock_target(api_mode: str, model_id: str = MODEL_ID) -> BedrockTarget:
    return BedrockTarget(
        model_id=model_id,
        endpoint="https://bedrock-runtime.us-west-2.amazonaws.com",
        api_mode=api_mode,
        credential_id=1,
        secret="bedrock-key",
    )


async def test_the_bedrock_leg_sends_url_images_as_fetched_bytes_of_the_sniffed_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_body = body(
        user("Weather?"),
        assistant(tool_use()),
        user(
            tool_result([text("the chart"), url_image("/chart")]),
            # Named .jpg and labelled image/jpeg by the server, but a PNG: the bytes decide.
            url_image("/photo.jpg", cache_control=EPHEMERAL),
            text("Compare them."),
        ),
        tools=[WEATHER_TOOL],
    )
    original = copy.deepcopy(request_body)
    images = {"/photo.jpg": PNG_BYTES, "/chart": JPEG_BYTES}
    requests = image_host(monkeypatch, images)
    url, payload = await bedrock_request(
        bedrock_target("converse"), bedrock_call(request_body, stream=True), []
    )
    assert url.endswith("/converse-stream")
    assert sorted(request.url.path for request in requests) == ["/chart", "/photo.jpg"]
    chart = {
        "image": {"format": "jpeg", "source": {"bytes": base64.b64encode(JPEG_BYTES).decode()}}
    }
    photo = {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG_BYTES).decode()}}}
    assert payload["messages"] == [
        c_user("Weather?"),
        c_assistant(c_tool_use()),
        c_user(c_tool_result("the chart", chart), photo, CACHE, "Compare them."),
    ]
    assert_valid_converse(payload)
    assert request_body == original, "the client's body must not be modified"


async def test_a_request_tried_on_several_bedrock_legs_fetches_its_images_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = bedrock_call(body(user(url_image("/photo.jpg"), text("What is it?"))))
    requests = image_host(monkeypatch, {"/photo.jpg": PNG_BYTES})
    _, converse = await bedrock_request(bedrock_target("converse"), call, [])
    _, invoke = await bedrock_request(bedrock_target("invoke", "us.anthropic.x-v1:0"), call, [])
    assert len(requests) == 1
    data = base64.b64encode(PNG_BYTES).decode()
    assert converse["messages"][0]["content"][0] == {
        "image": {"format": "png", "source": {"bytes": data}}
    }
    assert invoke["messages"][0]["content"][0]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": data,
    }
    # The client's own request is untouched, for a leg that passes URLs on (Anthropic).
    assert call.hub_request()["messages"][0]["content"][0] == url_image("/photo.jpg")


@pytest.mark.parametrize(
    ("address", "images", "reason"),
    [
        ("10.0.0.7", {"/photo.jpg": PNG_BYTES}, "resolves to a private address"),
        ("169.254.169.254", {"/photo.jpg": PNG_BYTES}, "resolves to a link-local address"),
        (PUBLIC_ADDRESS, {}, "answered HTTP 404"),
        (PUBLIC_ADDRESS, {"/photo.jpg": b"<html>not an image</html>"}, "JPEG, PNG, GIF or WebP"),
    ],
    ids=["private", "link-local", "missing", "not-an-image"],
)
async def test_an_image_the_bedrock_leg_cannot_fetch_is_the_clients_error_not_a_note(
    monkeypatch: pytest.MonkeyPatch, address: str, images: dict[str, bytes], reason: str
) -> None:
    call = bedrock_call(body(user(text("What is it?"), url_image("/photo.jpg"))))
    requests = image_host(monkeypatch, images, address=address)
    with pytest.raises(TranslationError, match=reason) as raised:
        await bedrock_request(bedrock_target("converse"), call, [])
    assert raised.value.param == "messages.0.content.1.source.url"
    if "address" in reason:
        assert requests == []  # refused before any connection
