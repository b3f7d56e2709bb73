"""Anthropic Messages <-> Bedrock Converse, for whole requests and non-streaming responses.

``anthropic_to_converse`` builds the Converse request JSON (wire form: blobs stay base64 text),
``converse_count_tokens_body`` the CountTokens body from the same translation, and
``converse_to_anthropic`` (defined in ``converse_response``, re-exported here) turns a Converse
response into an Anthropic Message. Streaming lives in ``converse_stream``; constants and helpers
shared by all directions in ``converse_common``.

The request side repairs what Anthropic accepts and Bedrock rejects (blank text, empty turns,
consecutive same-role turns, documents without text, tool blocks without tools, too many cache
points, identifiers outside Bedrock's patterns) and drops every field it does not know, so a new
client field never turns a fallback into an error. Pure functions: no Django, no I/O.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

from proxy.translation.converse_common import (
    CACHE_TTLS,
    DEFAULT_DOCUMENT_NAME,
    DOCUMENT_FORMATS,
    DOCUMENT_NAME_MAX,
    DOCUMENT_ONLY_TEXT,
    EMPTY_TOOL_RESULT_TEXT,
    EMPTY_TURN_TEXT,
    IMAGE_FORMATS,
    JSON,
    MAX_CACHE_POINTS,
    MIN_THINKING_BUDGET,
    STOP_SEQUENCE_FIELD_PATHS,
    STUB_TOOL,
    UNFETCHED_SOURCE_TEXT,
    UNSUPPORTED_MEDIA_TEXT,
    as_dict,
    as_list,
    dicts,
    sanitise_tool_name,
    sanitise_tool_use_id,
)
from proxy.translation.converse_response import converse_to_anthropic
from proxy.translation.json_values import is_int, is_number

__all__ = [
    "anthropic_to_converse",
    "converse_count_tokens_body",
    "converse_to_anthropic",
    "tool_name_map",
]

# One translated Anthropic block: the Converse block, optionally followed by its cachePoint. Units
# move as a whole when turns are merged or tool results are moved first, so a cache point always
# stays right after the block that asked for it.
Unit = list[JSON]


@dataclass
class _Context:
    # Reasoning blocks, thinking, top_k and anthropic_beta only mean something to Claude models.
    anthropic_model: bool
    document_names: set[str] = field(default_factory=set)


def anthropic_to_converse(body: dict[str, Any], *, model_id: str, betas: list[str]) -> JSON:
    """The Converse / ConverseStream request body for an Anthropic Messages request body.

    ``betas`` must already be filtered to the flags Bedrock accepts. ``model_id`` goes in the URL,
    not the body; it only decides whether Claude-specific fields are sent.
    """
    context = _Context(anthropic_model=_is_anthropic_model(model_id))
    request = _translate(body, betas=betas, context=context)
    inference = _inference_config(body)
    if inference:
        request["inferenceConfig"] = inference
    if context.anthropic_model:
        request["additionalModelResponseFieldPaths"] = list(STOP_SEQUENCE_FIELD_PATHS)
    return request


def converse_count_tokens_body(body: dict[str, Any], *, betas: list[str]) -> JSON:
    """The Bedrock CountTokens body ``{"input": {"converse": {...}}}`` for a count_tokens body.

    count_tokens bodies carry no ``max_tokens``; CountTokens takes no inferenceConfig anyway.
    """
    request = _translate(body, betas=betas, context=_Context(anthropic_model=True))
    converse = {
        key: request[key]
        for key in ("messages", "system", "toolConfig", "additionalModelRequestFields")
        if key in request
    }
    return {"input": {"converse": converse}}


def tool_name_map(body: dict[str, Any]) -> dict[str, str]:
    """Sanitised tool name -> the client's name, for every name the request had to rewrite.

    Pass it as ``tool_names`` to ``converse_to_anthropic`` / ``ConverseStreamTranslator`` so the
    client gets its own tool names back.
    """
    names: list[Any] = [tool.get("name") for tool in dicts(body.get("tools"))]
    for message in dicts(body.get("messages")):
        content = message.get("content")
        if isinstance(content, list):
            names += [b.get("name") for b in dicts(content) if b.get("type") == "tool_use"]
    mapping: dict[str, str] = {}
    for name in names:
        if isinstance(name, str) and sanitise_tool_name(name) != name:
            mapping[sanitise_tool_name(name)] = name
    return mapping


# --- request: top level -------------------------------------------------------------------------


def _is_anthropic_model(model_id: str) -> bool:
    # ARNs (application inference profiles, provisioned throughput) do not name the provider; this
    # gateway fronts Claude, so assume Claude there.
    return "anthropic." in model_id or model_id.startswith("arn:")


def _translate(body: dict[str, Any], *, betas: list[str], context: _Context) -> JSON:
    system_units = _system_units(body.get("system"))
    turns: list[tuple[str, list[Unit]]] = []
    for message in dicts(body.get("messages")):
        role = message.get("role")
        if role == "system":
            # Claude Code puts system messages between turns. Converse has one system list, so
            # they join it; their position in the conversation is lost, their text is not.
            system_units += _system_units(message.get("content"))
        elif role in ("user", "assistant"):
            turns.append((role, _content_units(message.get("content"), context)))
        # Any other role cannot be expressed in Converse and is dropped.

    messages = _build_messages(turns)
    _add_top_level_cache_point(messages, body.get("cache_control"))
    system = [block for unit in system_units for block in unit]
    tools = _tools(body.get("tools"))

    request: JSON = {"messages": messages}
    if system:
        request["system"] = system
    if not tools and _has_tool_blocks(messages):
        # Bedrock: "The toolConfig field must be defined when using toolUse and toolResult".
        tools = [copy.deepcopy(STUB_TOOL)]
        request["toolConfig"] = {"tools": tools}
    elif tools:
        request["toolConfig"] = {"tools": tools}
        choice = _tool_choice(body.get("tool_choice"), tools)
        if choice is not None:
            request["toolConfig"]["toolChoice"] = choice
    _limit_cache_points(tools, system, messages)
    fields = _additional_fields(body, betas=betas, context=context)
    if "thinking" in fields and _tool_loop_without_reasoning(messages):
        # With thinking on, Claude requires the assistant turn whose tool calls are being answered
        # to start with a reasoning block ("Expected `thinking` or `redacted_thinking`, but found
        # `tool_use`"). When the history has none (thinking was off for that turn, or its block
        # had no signature and was dropped), answering without thinking beats a 400.
        del fields["thinking"]
    if fields:
        request["additionalModelRequestFields"] = fields
    return request


def _inference_config(body: dict[str, Any]) -> JSON:
    config: JSON = {}
    max_tokens = body.get("max_tokens")
    if is_int(max_tokens) and max_tokens > 0:
        config["maxTokens"] = max_tokens
    for source, target in (("temperature", "temperature"), ("top_p", "topP")):
        value = body.get(source)
        if is_number(value):
            config[target] = float(value)
    # Bedrock needs every stop sequence to be at least one character long.
    stops = [s for s in as_list(body.get("stop_sequences")) if isinstance(s, str) and s]
    if stops:
        config["stopSequences"] = stops
    return config


def _additional_fields(body: dict[str, Any], *, betas: list[str], context: _Context) -> JSON:
    if not context.anthropic_model:
        return {}
    fields: JSON = {}
    top_k = body.get("top_k")
    if is_int(top_k) and top_k >= 0:
        fields["top_k"] = top_k
    thinking = _thinking(body.get("thinking"), body.get("max_tokens"))
    if thinking is not None:
        fields["thinking"] = thinking
    if betas:
        fields["anthropic_beta"] = list(betas)
    return fields


def _thinking(thinking: Any, max_tokens: Any) -> JSON | None:
    """The ``thinking`` field Claude on Bedrock accepts for the client's ``thinking``.

    ``enabled`` passes with its budget. ``adaptive`` is newer than several Claude models Bedrock
    serves, and this translator cannot know which model the profile runs, so it becomes
    ``enabled`` with the largest budget the request allows (``max_tokens - 1``): every thinking
    model accepts that, and like adaptive thinking it lets the model think as long as it needs.
    Without room for the minimum budget it is dropped (the answer comes without thinking).
    ``disabled`` is the default, so it is simply omitted. Unknown types are dropped.
    """
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if is_int(budget):
            return {"type": "enabled", "budget_tokens": budget}
    elif kind == "adaptive":
        if max_tokens is None:  # count_tokens: no output, so any valid budget does
            return {"type": "enabled", "budget_tokens": MIN_THINKING_BUDGET}
        if is_int(max_tokens) and max_tokens > MIN_THINKING_BUDGET:
            return {"type": "enabled", "budget_tokens": max_tokens - 1}
    return None


# --- request: system and messages ----------------------------------------------------------------


def _system_units(system: Any) -> list[Unit]:
    if isinstance(system, str):
        return [[{"text": system}]] if system.strip() else []
    units: list[Unit] = []
    for block in dicts(system):
        text = block.get("text")
        if block.get("type", "text") == "text" and isinstance(text, str) and text.strip():
            units.append(_with_cache_point({"text": text}, block))
    return units


def _content_units(content: Any, context: _Context) -> list[Unit]:
    if isinstance(content, str):
        return [[{"text": content}]] if content.strip() else []
    units: list[Unit] = []
    for block in dicts(content):
        converted = _content_block(block, context)
        if converted is None:
            continue
        if "reasoningContent" in converted:
            # Bedrock: "Cache point cannot be inserted after reasoning block".
            units.append([converted])
        else:
            units.append(_with_cache_point(converted, block))
    return units


def _content_block(block: JSON, context: _Context) -> JSON | None:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return {"text": text} if isinstance(text, str) and text.strip() else None
    if kind == "image":
        return _image(block.get("source"))
    if kind == "document":
        return _document(block, context)
    if kind == "tool_use":
        tool_input = block.get("input")
        return {
            "toolUse": {
                "toolUseId": sanitise_tool_use_id(str(block.get("id") or "")),
                "name": sanitise_tool_name(str(block.get("name") or "")),
                "input": tool_input if isinstance(tool_input, dict) else {},
            }
        }
    if kind == "tool_result":
        return _tool_result(block, context)
    if kind == "thinking":
        # Claude signatures are valid across Anthropic and Bedrock, so they pass verbatim. A
        # thinking block without a signature (written by another provider or a client) cannot be
        # verified by Bedrock and would fail the whole request: it is dropped. Non-Claude models
        # cannot read Claude reasoning at all.
        signature = block.get("signature")
        text = block.get("thinking")
        if context.anthropic_model and isinstance(signature, str) and signature:
            reasoning = {"text": text if isinstance(text, str) else "", "signature": signature}
            return {"reasoningContent": {"reasoningText": reasoning}}
        return None
    if kind == "redacted_thinking":
        data = block.get("data")
        if context.anthropic_model and isinstance(data, str) and data:
            return {"reasoningContent": {"redactedContent": data}}
        return None
    # Server tool blocks (server_tool_use, web_search_tool_result, mcp_*...) belong to tools that
    # only run on Anthropic's side; Converse has no form for them.
    return None


def _image(source: Any) -> JSON:
    """A Converse image, or a text note saying why the image is missing.

    Translation stays pure: the Bedrock leg fetches URL images into base64 sources before it
    translates (``proxy.providers.media``, with its SSRF guards). What still arrives here
    unfetched (a Files-API reference, which only Anthropic can resolve, or a URL in a
    CountTokens body) becomes the note, which keeps the conversation valid and tells the model
    what it is not seeing.
    """
    source = as_dict(source)
    if source.get("type") == "base64":
        media_type = str(source.get("media_type") or "")
        image_format = IMAGE_FORMATS.get(media_type.lower())
        data = source.get("data")
        if image_format and isinstance(data, str) and data:
            # Base64 text is exactly what the JSON wire wants for a blob: no decoding.
            return {"image": {"format": image_format, "source": {"bytes": data}}}
        return {"text": UNSUPPORTED_MEDIA_TEXT.format(kind="image", media_type=media_type or "?")}
    return {"text": _unfetched_note("image", source)}


def _document(block: JSON, context: _Context) -> JSON | None:
    source = as_dict(block.get("source"))
    source_type = source.get("type")
    data = source.get("data")
    document: JSON
    if source_type == "base64":
        media_type = str(source.get("media_type") or "")
        document_format = DOCUMENT_FORMATS.get(media_type.lower())
        if not document_format:
            return {"text": UNSUPPORTED_MEDIA_TEXT.format(kind="document", media_type=media_type)}
        if not isinstance(data, str) or not data:
            return None
        document = {"format": document_format, "source": {"bytes": data}}
    elif source_type in ("text", "content"):
        # Converse's own ``text``/``content`` document sources are refused unless citations are
        # enabled, and citations are not forwarded (see below); so the text travels as a txt file.
        plain = data if source_type == "text" else _document_text(source.get("content"))
        if not isinstance(plain, str) or not plain.strip():
            return None
        encoded = base64.b64encode(plain.encode()).decode("ascii")
        document = {"format": "txt", "source": {"bytes": encoded}}
    else:
        return {"text": _unfetched_note("document", source)}
    document["name"] = _document_name(block.get("title"), context)
    doc_context = block.get("context")
    if isinstance(doc_context, str) and doc_context.strip():
        document["context"] = doc_context
    # ``citations`` is not forwarded: cited answers come back as citationsContent blocks whose
    # citation locations have no faithful Anthropic form, so the model answers in plain text.
    return {"document": document}


def _document_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    # Only the text parts of a content document travel; images inside it are dropped.
    return "\n\n".join(
        b["text"]
        for b in dicts(content)
        if b.get("type") == "text" and isinstance(b.get("text"), str)
    )


def _document_name(title: Any, context: _Context) -> str:
    """A name Bedrock accepts (letters, digits, single spaces, - ( ) [ ]), unique per request."""
    cleaned = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "-()[]") else " "
        for ch in (title if isinstance(title, str) else "")
    )
    # Leave room for a " (n)" suffix; strip again so the cut never leaves a trailing space.
    base = " ".join(cleaned.split())[: DOCUMENT_NAME_MAX - 8].strip() or DEFAULT_DOCUMENT_NAME
    name, number = base, 1
    while name.lower() in context.document_names:
        number += 1
        name = f"{base} ({number})"
    context.document_names.add(name.lower())
    return name


def _unfetched_note(kind: str, source: JSON) -> str:
    source_type = str(source.get("type") or "unknown")
    reference = source.get("url") or source.get("file_id") or "it"
    return UNFETCHED_SOURCE_TEXT.format(kind=kind, reference=reference, source_type=source_type)


def _tool_result(block: JSON, context: _Context) -> JSON:
    content = block.get("content")
    parts: list[JSON] = []
    if isinstance(content, str):
        if content.strip():
            parts.append({"text": content})
    else:
        for item in dicts(content):
            # cache_control inside tool_result content is ignored on purpose: Bedrock rejects a
            # cachePoint inside toolResult.content. The tool_result's own cache_control becomes a
            # sibling cachePoint after the whole toolResult instead.
            kind = item.get("type")
            text = item.get("text")
            if kind == "text" and isinstance(text, str) and text.strip():
                parts.append({"text": text})
            elif kind == "image":
                parts.append(_image(item.get("source")))
            elif kind == "document":
                document = _document(item, context)
                if document is not None:
                    parts.append(document)
    result: JSON = {
        "toolUseId": sanitise_tool_use_id(str(block.get("tool_use_id") or "")),
        "content": parts or [{"text": EMPTY_TOOL_RESULT_TEXT}],
    }
    if block.get("is_error") is True:
        result["status"] = "error"
    return {"toolResult": result}


def _build_messages(turns: list[tuple[str, list[Unit]]]) -> list[JSON]:
    # Bedrock rejects consecutive turns of one role; Anthropic merges them, so merge here too.
    merged: list[tuple[str, list[Unit]]] = []
    for role, units in turns:
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(units)
        else:
            merged.append((role, list(units)))
    # An empty final assistant turn is a prefill of nothing: drop it rather than have the model
    # continue a placeholder.
    if merged and merged[-1][0] == "assistant" and not merged[-1][1]:
        merged.pop()
    # Converse conversations must open with a user turn.
    if not merged or merged[0][0] != "user":
        merged.insert(0, ("user", []))

    messages: list[JSON] = []
    for role, units in merged:
        if role == "user":
            # tool_result blocks must come first in the user turn that answers the tool calls.
            units = [u for u in units if "toolResult" in u[0]] + [
                u for u in units if "toolResult" not in u[0]
            ]
            if any("document" in u[0] for u in units) and not any("text" in u[0] for u in units):
                units.append([{"text": DOCUMENT_ONLY_TEXT}])
        if not units:
            units = [[{"text": EMPTY_TURN_TEXT}]]
        messages.append({"role": role, "content": [block for unit in units for block in unit]})
    return messages


def _tool_loop_without_reasoning(messages: list[JSON]) -> bool:
    if len(messages) < 2 or not any("toolResult" in b for b in messages[-1]["content"]):
        return False
    previous = messages[-2]
    return previous["role"] == "assistant" and "reasoningContent" not in previous["content"][0]


def _has_tool_blocks(messages: list[JSON]) -> bool:
    return any(
        "toolUse" in block or "toolResult" in block
        for message in messages
        for block in message["content"]
    )


# --- request: tools -------------------------------------------------------------------------------


def _tools(tools: Any) -> list[JSON]:
    """Converse tool specs (with cachePoints) for the client's tools.

    Tools without an ``input_schema`` are Anthropic-defined or server tools (web_search, bash,
    code_execution, tool_search...): Bedrock Converse can neither run nor describe them, so they
    are dropped. Deferred tools (``defer_loading``) are sent like any other tool: the tool search
    that would load them is one of the dropped server tools, and sending them keeps them callable.
    Fields Converse has no place for (``type``, ``defer_loading``, ``input_examples``...) are
    dropped.
    """
    result: list[JSON] = []
    seen: set[str] = set()
    for tool in dicts(tools):
        schema = tool.get("input_schema")
        name = sanitise_tool_name(str(tool.get("name") or ""))
        if not isinstance(schema, dict) or name in seen:
            # Keep the client's cache breakpoint when it sat on a dropped tool (often the last).
            if _cache_point(tool.get("cache_control")) and result and "toolSpec" in result[-1]:
                result.append(_cache_point(tool.get("cache_control")) or {})
            continue
        seen.add(name)
        spec: JSON = {"name": name, "inputSchema": {"json": schema}}
        description = tool.get("description")
        if isinstance(description, str) and description.strip():
            spec["description"] = description
        if isinstance(tool.get("strict"), bool):
            spec["strict"] = tool["strict"]
        result.extend(_with_cache_point({"toolSpec": spec}, tool))
    return result


def _tool_choice(choice: Any, tools: list[JSON]) -> JSON | None:
    """Converse toolChoice, or None to leave Bedrock's default (auto).

    ``none`` has no Converse form. Removing the tools instead would break the tool blocks in the
    history and change the cached prompt prefix, so the tools stay and the choice falls back to
    auto. ``disable_parallel_tool_use`` has no Converse form either and is dropped.
    """
    choice = as_dict(choice)
    kind = choice.get("type")
    if kind == "auto":
        return {"auto": {}}
    if kind == "any":
        return {"any": {}}
    if kind == "tool":
        name = sanitise_tool_name(str(choice.get("name") or ""))
        # Naming a tool that is not sent would be rejected; fall back to auto.
        if any(t.get("toolSpec", {}).get("name") == name for t in tools):
            return {"tool": {"name": name}}
    return None


# --- request: cache points ------------------------------------------------------------------------


def _cache_point(cache_control: Any) -> JSON | None:
    if not isinstance(cache_control, dict) or cache_control.get("type") != "ephemeral":
        return None
    point: JSON = {"type": "default"}
    ttl = cache_control.get("ttl")
    if isinstance(ttl, str) and ttl in CACHE_TTLS:
        point["ttl"] = cache_control["ttl"]
    return {"cachePoint": point}


def _with_cache_point(converted: JSON, block: JSON) -> Unit:
    point = _cache_point(block.get("cache_control"))
    return [converted, point] if point else [converted]


def _add_top_level_cache_point(messages: list[JSON], cache_control: Any) -> None:
    """Top-level ``cache_control`` caches up to the last block: a cachePoint ends the last turn."""
    point = _cache_point(cache_control)
    content = messages[-1]["content"]
    if point and not any(k in content[-1] for k in ("cachePoint", "reasoningContent")):
        content.append(point)


def _limit_cache_points(tools: list[JSON], system: list[JSON], messages: list[JSON]) -> None:
    """Keep at most MAX_CACHE_POINTS cache points, in place.

    Tool and system points are kept first (they cache the stable prefix); among message points the
    latest win, since they cover the longest prefix.
    """
    fixed = [(tools, i) for i, b in enumerate(tools) if "cachePoint" in b]
    fixed += [(system, i) for i, b in enumerate(system) if "cachePoint" in b]
    in_messages = [
        (m["content"], i) for m in messages for i, b in enumerate(m["content"]) if "cachePoint" in b
    ]
    ranked = fixed + in_messages[::-1]
    for blocks, index in sorted(ranked[MAX_CACHE_POINTS:], key=lambda p: -p[1]):
        del blocks[index]
