"""Checks that a translated request is one Bedrock would accept, and tests of those checks.

Two layers, used by every Converse translation test:

- ``shape_errors``: botocore's own ``ParamValidator`` against the ``bedrock-runtime`` input shapes
  (blob strings decoded to bytes first, as the Python side of botocore wants), plus the
  constraints ParamValidator skips (``max`` lengths, ``pattern``, ``enum``).
- ``rule_errors``: rules Bedrock enforces beyond the shapes, each one a failure seen in the wild
  (alternating roles, blank text, cache point placement and count, documents without text, tool
  blocks without toolConfig...).

The tests at the bottom feed known-bad requests to prove each check can fail.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import cache
from typing import Any

import pytest
from botocore.model import OperationModel, Shape
from botocore.session import get_session
from botocore.validate import ParamValidator

MODEL_ID = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"


@cache
def operation(name: str) -> OperationModel:
    return get_session().get_service_model("bedrock-runtime").operation_model(name)


def to_boto_params(value: Any, shape: Shape) -> Any:
    """Wire JSON -> the Python params botocore takes: base64 blob strings become bytes."""
    if shape.type_name == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            return _NotBase64(value)
    if shape.type_name == "structure" and not getattr(shape, "is_document_type", False):
        if not isinstance(value, dict):
            return value
        members = shape.members
        return {k: to_boto_params(v, members[k]) if k in members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [to_boto_params(item, shape.member) for item in value]
    return value


class _NotBase64:
    """Stands in for a blob string that is not base64, so validation reports it."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"NotBase64({self.value[:20]!r})"


# Unions in the Bedrock API reference that the service model does not mark as unions, so
# ParamValidator lets a block with two members (text and image at once) through.
_UNDECLARED_UNIONS = frozenset(
    {"ContentBlock", "SystemContentBlock", "ToolResultContentBlock", "Tool"}
)


def _strict_errors(value: Any, shape: Shape, path: str) -> list[str]:
    """The constraints botocore's ParamValidator does not check: max, pattern, enum, unions."""
    errors: list[str] = []
    meta = shape.metadata
    if shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: longer than {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if "enum" in meta and value not in meta["enum"]:
            errors.append(f"{path}: {value!r} not in {meta['enum']}")
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: more than {meta['max']} items")
        for i, item in enumerate(value):
            errors += _strict_errors(item, shape.member, f"{path}[{i}]")
    elif shape.type_name in ("integer", "long", "float", "double") and isinstance(
        value, int | float
    ):
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: above {meta['max']}")
    elif shape.type_name == "blob" and isinstance(value, _NotBase64):
        errors.append(f"{path}: blob is not base64")
    elif shape.type_name == "structure" and isinstance(value, dict):
        if shape.name in _UNDECLARED_UNIONS and len(value) != 1:
            errors.append(f"{path}: a {shape.name} needs exactly one member, got {list(value)}")
        if not getattr(shape, "is_document_type", False):
            for key, item in value.items():
                if key in shape.members:
                    errors += _strict_errors(item, shape.members[key], f"{path}.{key}")
    return errors


def shape_errors(request: dict[str, Any], operation_name: str) -> list[str]:
    """Errors of a wire-form request against the operation's input shape."""
    shape = operation(operation_name).input_shape
    params = to_boto_params(dict(request), shape)
    report = ParamValidator().validate(params, shape)
    errors = report.generate_report().splitlines() if report.has_errors() else []
    return errors + _strict_errors(params, shape, "input")


def _blocks(container: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = container.get(key)
    return value if isinstance(value, list) else []


def _cache_point_errors(blocks: list[dict[str, Any]], where: str) -> list[str]:
    errors = []
    for i, block in enumerate(blocks):
        if "cachePoint" not in block:
            continue
        if i == 0:
            errors.append(f"{where}: cachePoint with nothing before it")
        elif "cachePoint" in blocks[i - 1]:
            errors.append(f"{where}: two cachePoints in a row")
        elif "reasoningContent" in blocks[i - 1]:
            errors.append(f"{where}: cachePoint right after a reasoning block")
    return errors


def _document_errors(document: dict[str, Any], where: str) -> list[str]:
    # strands-agents/harness-sdk#3582: text/content sources are refused without citations.
    source = document.get("source") or {}
    cited = (document.get("citations") or {}).get("enabled") is True
    if ("text" in source or "content" in source) and not cited:
        return [f"{where}: text/content document sources need citations enabled"]
    return []


def rule_errors(converse: dict[str, Any]) -> list[str]:
    """Bedrock rules beyond the input shapes, for Converse or CountTokens' ``converse`` body."""
    errors: list[str] = []
    messages = _blocks(converse, "messages")
    system = _blocks(converse, "system")
    tool_config = converse.get("toolConfig") or {}
    tools = _blocks(tool_config, "tools")
    if not messages:
        errors.append("messages: empty")
    elif messages[0].get("role") != "user":
        errors.append("messages[0]: a conversation must start with a user message")
    for i in range(1, len(messages)):
        if messages[i].get("role") == messages[i - 1].get("role"):
            errors.append(f"messages[{i}]: roles must alternate")
    points = sum("cachePoint" in b for b in system + tools)
    errors += _cache_point_errors(system, "system") + _cache_point_errors(tools, "tools")
    has_tool_blocks = False
    document_names: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        content = _blocks(message, "content")
        if role not in ("user", "assistant"):
            errors.append(f"{where}: role {role!r}")
        if not content:
            errors.append(f"{where}: empty content")
        errors += _cache_point_errors(content, where)
        points += sum("cachePoint" in b for b in content)
        seen_other = False
        for j, block in enumerate(content):
            if "text" in block and not block["text"].strip():
                errors.append(f"{where}.content[{j}]: blank text")
            if ("image" in block or "document" in block) and role != "user":
                errors.append(f"{where}.content[{j}]: images/documents only in user turns")
            if "document" in block:
                document_names.append(block["document"].get("name", "").lower())
                errors += _document_errors(block["document"], f"{where}.content[{j}]")
            if "toolUse" in block or "toolResult" in block:
                has_tool_blocks = True
            if "toolResult" in block:
                if seen_other:
                    errors.append(f"{where}.content[{j}]: toolResult after other content")
                for k, part in enumerate(block["toolResult"].get("content") or []):
                    if "text" in part and not part["text"].strip():
                        errors.append(f"{where}.content[{j}].toolResult[{k}]: blank text")
                    if "document" in part:
                        document_names.append(part["document"].get("name", "").lower())
                        errors += _document_errors(part["document"], f"{where}.toolResult[{k}]")
            elif "cachePoint" not in block:
                seen_other = True
        if any("document" in b for b in content) and not any("text" in b for b in content):
            errors.append(f"{where}: a text block must be included when using documents")
    for j, block in enumerate(system):
        if "text" in block and not block["text"].strip():
            errors.append(f"system[{j}]: blank text")
    if points > 4:
        errors.append(f"{points} cache points (at most 4)")
    if len(document_names) != len(set(document_names)):
        errors.append(f"duplicate document names {document_names}")
    if has_tool_blocks and not tools:
        errors.append("toolConfig must be defined when using toolUse and toolResult")
    choice = tool_config.get("toolChoice")
    if isinstance(choice, dict) and "tool" in choice:
        names = {t["toolSpec"]["name"] for t in tools if "toolSpec" in t}
        if choice["tool"].get("name") not in names:
            errors.append("toolChoice names a tool that is not defined")
    spec_names = [t["toolSpec"]["name"] for t in tools if "toolSpec" in t]
    if len(spec_names) != len(set(spec_names)):
        errors.append("duplicate tool names")
    stops = (converse.get("inferenceConfig") or {}).get("stopSequences") or []
    if any(not s for s in stops):
        errors.append("empty stop sequence")
    thinking = (converse.get("additionalModelRequestFields") or {}).get("thinking")
    if thinking is not None:
        max_tokens = (converse.get("inferenceConfig") or {}).get("maxTokens")
        budget = thinking.get("budget_tokens")
        if thinking.get("type") != "enabled" or not isinstance(budget, int) or budget < 1024:
            errors.append(f"thinking {thinking} is not valid on every Claude model")
        elif max_tokens is not None and budget >= max_tokens:
            errors.append("thinking budget_tokens must be below maxTokens")
        last, previous = messages[-1:], messages[-2:-1]
        if (
            last
            and previous
            and any("toolResult" in b for b in last[0]["content"])
            and "reasoningContent" not in previous[0]["content"][0]
        ):
            errors.append("Expected `thinking` or `redacted_thinking`, but found `tool_use`")
    return errors


def assert_valid_converse(request: dict[str, Any], model_id: str = MODEL_ID) -> None:
    """The body passes botocore's Converse and ConverseStream input shapes and the rules."""
    for name in ("Converse", "ConverseStream"):
        assert shape_errors({"modelId": model_id, **request}, name) == [], name
    assert rule_errors(request) == []


def assert_valid_count_tokens(body: dict[str, Any], model_id: str = MODEL_ID) -> None:
    assert shape_errors({"modelId": model_id, **body}, "CountTokens") == []
    assert rule_errors(body["input"]["converse"]) == []


# --- the checks themselves can fail ---------------------------------------------------------------

_USER_HI = {"role": "user", "content": [{"text": "hi"}]}
_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
_REASONING = {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "sig"}}}
_CACHE = {"cachePoint": {"type": "default"}}
_TOOLS = {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {}}}}]}


def test_valid_request_passes() -> None:
    assert_valid_converse({"messages": [_USER_HI]})


@pytest.mark.parametrize(
    ("request_body", "fragment"),
    [
        ({"messages": [_USER_HI], "stream": True}, "Unknown parameter"),
        ({"messages": [{"role": "user"}]}, "Missing required parameter"),
        (
            {"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]},
            "exactly one member",
        ),
        (
            {"messages": [{"role": "user", "content": [{"image": {"format": "png"}}]}]},
            'Missing required parameter in messages[0].content[0].image: "source"',
        ),
        (
            {"messages": [_USER_HI], "inferenceConfig": {"temperature": 1.5}},
            "inferenceConfig.temperature: above 1",
        ),
        (
            {"messages": [_USER_HI], "toolConfig": {"tools": [{"toolSpec": {"name": "a.b"}}]}},
            "does not match",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"image": {"format": "bmp", "source": {"bytes": _PNG}}}],
                    }
                ]
            },
            "not in",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"image": {"format": "png", "source": {"bytes": "%%%"}}}],
                    }
                ]
            },
            "blob is not base64",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"toolResult": {"toolUseId": "x", "content": [{"cachePoint": {}}]}}
                        ],
                    }
                ]
            },
            'Unknown parameter in messages[0].content[0].toolResult.content[0]: "cachePoint"',
        ),
    ],
)
def test_shape_errors_catch(request_body: dict[str, Any], fragment: str) -> None:
    errors = shape_errors({"modelId": MODEL_ID, **request_body}, "Converse")
    assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("request_body", "fragment"),
    [
        ({"messages": []}, "empty"),
        ({"messages": [{"role": "assistant", "content": [{"text": "a"}]}]}, "start with a user"),
        ({"messages": [_USER_HI, _USER_HI]}, "alternate"),
        ({"messages": [{"role": "user", "content": []}]}, "empty content"),
        ({"messages": [{"role": "user", "content": [{"text": " \n"}]}]}, "blank text"),
        ({"messages": [_USER_HI], "system": [{"text": " "}]}, "blank text"),
        ({"messages": [{"role": "user", "content": [_CACHE, {"text": "a"}]}]}, "nothing before"),
        (
            {"messages": [_USER_HI, {"role": "assistant", "content": [_REASONING, _CACHE]}]},
            "after a reasoning block",
        ),
        ({"messages": [_USER_HI], "system": [{"text": "a"}] + [_CACHE] * 2}, "in a row"),
        (
            {
                "messages": [_USER_HI],
                "system": [b for i in range(5) for b in ({"text": f"s{i}"}, _CACHE)],
            },
            "5 cache points",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "document": {
                                    "name": "d",
                                    "format": "txt",
                                    "source": {"bytes": "eA=="},
                                }
                            }
                        ],
                    }
                ]
            },
            "text block must be included",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"document": {"name": "d", "format": "txt", "source": {"text": "x"}}},
                            {"text": "q"},
                        ],
                    }
                ]
            },
            "need citations enabled",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"text": "a"},
                            {"toolResult": {"toolUseId": "x", "content": [{"text": "r"}]}},
                        ],
                    }
                ],
                "toolConfig": _TOOLS,
            },
            "toolResult after other content",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"toolResult": {"toolUseId": "x", "content": [{"text": ""}]}}],
                    }
                ],
                "toolConfig": _TOOLS,
            },
            "blank text",
        ),
        (
            {
                "messages": [
                    _USER_HI,
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "x", "name": "t", "input": {}}}],
                    },
                ]
            },
            "toolConfig must be defined",
        ),
        (
            {
                "messages": [_USER_HI],
                "toolConfig": {**_TOOLS, "toolChoice": {"tool": {"name": "u"}}},
            },
            "not defined",
        ),
        (
            {"messages": [_USER_HI], "inferenceConfig": {"stopSequences": ["a", ""]}},
            "empty stop sequence",
        ),
        (
            {
                "messages": [_USER_HI],
                "additionalModelRequestFields": {"thinking": {"type": "adaptive"}},
            },
            "not valid on every Claude model",
        ),
        (
            {
                "messages": [
                    _USER_HI,
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "x", "name": "t", "input": {}}}],
                    },
                    {
                        "role": "user",
                        "content": [{"toolResult": {"toolUseId": "x", "content": [{"text": "r"}]}}],
                    },
                ],
                "toolConfig": _TOOLS,
                "additionalModelRequestFields": {
                    "thinking": {"type": "enabled", "budget_tokens": 1024}
                },
            },
            "but found `tool_use`",
        ),
        (
            {
                "messages": [_USER_HI],
                "inferenceConfig": {"maxTokens": 2000},
                "additionalModelRequestFields": {
                    "thinking": {"type": "enabled", "budget_tokens": 2000}
                },
            },
            "below maxTokens",
        ),
    ],
)
def test_rule_errors_catch(request_body: dict[str, Any], fragment: str) -> None:
    errors = rule_errors(request_body)
    assert any(fragment in e for e in errors), errors
