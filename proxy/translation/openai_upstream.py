"""OpenAI-compatible upstreams behind the hub: hub requests → ``chat.completions`` requests,
and their answers → hub messages.

- ``anthropic_request_to_chat``: hub request → request for OpenAI, vLLM, Ollama's /v1, Groq...
- ``chat_completion_to_anthropic``: their ``chat.completion`` → hub message.

Streams are in ``openai_stream`` (``ChatChunksToAnthropic``). Pure: no Django, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxy.translation.hub import JSON, TranslationError, hub_message
from proxy.translation.json_values import is_number
from proxy.translation.openai_common import (
    HIGH_EFFORT_FROM,
    LOW_EFFORT_BELOW,
    is_blank,
    openai_tool_call,
    stop_reason_for,
    usage_from_openai,
)

__all__ = ["anthropic_request_to_chat", "chat_completion_to_anthropic"]

# OpenAI's `user` is sent upstream only up to this length (its successor safety_identifier is
# limited to 64 characters; Claude Code's metadata.user_id is a longer JSON string).
_MAX_OPENAI_USER = 64


# --- hub request → OpenAI request -------------------------------------------------------------


def anthropic_request_to_chat(body: JSON, *, model: str) -> JSON:
    """The ``chat.completions`` request for an OpenAI-compatible upstream, from a hub request.

    Only fields of openai-python's ``CompletionCreateParams`` are produced. Choices:

    - ``max_tokens`` (not ``max_completion_tokens``): vLLM, Ollama's /v1, Groq and most other
      compatible servers know the older name; OpenAI still accepts it for non-reasoning models.
    - thinking and redacted_thinking blocks are dropped: their signatures only mean something to
      Anthropic, and compatible servers ignore reasoning sent back in a request.
    - ``top_k``, ``cache_control``, server tools (web search, code execution...) and unknown
      blocks have no Chat Completions equivalent and are dropped; so is ``is_error`` on a tool
      result (the tool's text says what failed).
    - images inside a tool result go into a user message right after the tool messages, since
      ``tool`` messages carry text only.
    - thinking → ``reasoning_effort`` by budget (below 4096 low, below 16384 medium, else high;
      adaptive → the ``output_config.effort`` if given, else medium). Callers routing to a model
      that does not reason should remove it.
    """
    if not isinstance(body, dict):
        raise TranslationError("The request body must be a JSON object.")
    messages: list[JSON] = []
    system_text = _joined_text(body.get("system"))
    if system_text:
        messages.append({"role": "system", "content": system_text})
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise TranslationError("messages must be a list.", param="messages")
    for i, message in enumerate(raw_messages):
        if isinstance(message, dict):
            messages += _chat_messages(message, i)

    request: JSON = {"model": model, "messages": messages}
    if isinstance(body.get("max_tokens"), int):
        request["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if is_number(body.get(name)):
            request[name] = body[name]
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        request["stop"] = [s for s in stop if isinstance(s, str) and s]

    tools = [
        _chat_tool(tool)
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and "input_schema" in tool
    ]
    if tools:
        request["tools"] = tools
        _apply_chat_tool_choice(
            body.get("tool_choice"), {t["function"]["name"] for t in tools}, request
        )

    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user, str) and 0 < len(user) <= _MAX_OPENAI_USER:
        request["user"] = user
    if body.get("stream") is True:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    effort = _effort_for_thinking(body.get("thinking"), body.get("output_config"))
    if effort is not None:
        request["reasoning_effort"] = effort
    return request


def _joined_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        return "\n\n".join(t for t in texts if t)
    return ""


def _chat_messages(message: Mapping[str, Any], i: int) -> list[JSON]:
    role, content = message.get("role"), message.get("content")
    if role == "system":  # Claude Code puts system messages between turns
        text = _joined_text(content)
        return [{"role": "system", "content": text}] if text else []
    if isinstance(content, str):
        return [{"role": role, "content": content}] if role in ("user", "assistant") else []
    if not isinstance(content, list):
        return []
    if role == "assistant":
        return _chat_assistant(content)
    if role != "user":
        return []
    out: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result":
            text, images = _tool_result_parts(block, f"messages.{i}.content.{j}")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(block.get("tool_use_id") or ""),
                    "content": text,
                }
            )
            parts = images + parts
        else:
            parts += _chat_parts(block, f"messages.{i}.content.{j}")
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _chat_parts(block: Mapping[str, Any], where: str) -> list[JSON]:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return [{"type": "text", "text": block["text"]}]
    if kind == "image":
        return [_chat_image(block.get("source"), where)]
    if kind == "document":
        return _chat_document(block, where)
    return []  # thinking, server tool blocks, search results...: nothing to send


def _chat_image(source: Any, where: str) -> JSON:
    source = source if isinstance(source, dict) else {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise TranslationError("Unsupported image source.", param=f"{where}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _chat_document(block: Mapping[str, Any], where: str) -> list[JSON]:
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    kind = source.get("type")
    if kind == "base64" and source.get("media_type") == "application/pdf":
        title = block.get("title")
        file: JSON = {
            "file_data": f"data:application/pdf;base64,{source.get('data')}",
            "filename": title if isinstance(title, str) and title else "document.pdf",
        }
        return [{"type": "file", "file": file}]
    if kind == "text" and isinstance(source.get("data"), str):
        return [{"type": "text", "text": source["data"]}]
    if kind == "content" and isinstance(source.get("content"), list | str):
        text = _joined_text(source["content"])
        return [{"type": "text", "text": text}] if text else []
    raise TranslationError(
        "This document source cannot be sent to an OpenAI-compatible upstream.",
        param=f"{where}.source",
    )


def _tool_result_parts(block: Mapping[str, Any], where: str) -> tuple[str, list[JSON]]:
    content = block.get("content")
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[JSON] = []
    for k, item in enumerate(content if isinstance(content, list) else []):
        if not isinstance(item, dict):
            continue
        for part in _chat_parts(item, f"{where}.content.{k}"):
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
    return "\n".join(texts), images


def _chat_assistant(content: list[Any]) -> list[JSON]:
    texts: list[str] = []
    calls: list[JSON] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(openai_tool_call(block))
    text = "".join(texts)
    if not text and not calls:
        return []
    message: JSON = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _chat_tool(tool: Mapping[str, Any]) -> JSON:
    function: JSON = {"name": str(tool.get("name") or "")}
    if isinstance(tool.get("description"), str) and tool["description"]:
        function["description"] = tool["description"]
    schema = tool.get("input_schema")
    function["parameters"] = dict(schema) if isinstance(schema, dict) else {"type": "object"}
    return {"type": "function", "function": function}


def _apply_chat_tool_choice(choice: Any, names: set[str], request: JSON) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "auto":
        request["tool_choice"] = "auto"
    elif kind == "any":
        request["tool_choice"] = "required"
    elif kind == "none":
        request["tool_choice"] = "none"
    elif kind == "tool" and choice.get("name") in names:
        request["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        request["parallel_tool_calls"] = False


def _effort_for_thinking(thinking: Any, output_config: Any) -> str | None:
    if not isinstance(thinking, dict):
        return None
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int):
            return "medium"
        if budget < LOW_EFFORT_BELOW:
            return "low"
        return "medium" if budget < HIGH_EFFORT_FROM else "high"
    if thinking.get("type") == "adaptive":
        effort = output_config.get("effort") if isinstance(output_config, dict) else None
        if effort in ("low", "medium", "high"):
            return str(effort)
        return "high" if effort in ("xhigh", "max") else "medium"
    return None


# --- answers ----------------------------------------------------------------------------------


def chat_completion_to_anthropic(completion: JSON, *, model: str, message_id: str) -> JSON:
    """The hub message (Anthropic Messages answer) for an upstream ``chat.completion``.

    ``reasoning_content`` (or ``reasoning``, as vLLM and OpenRouter name it) becomes a leading
    thinking block with an empty signature. Tool call arguments that are not a JSON object are
    kept as ``{"_raw": "<arguments>"}``: the client sees the call and what the model produced,
    and its tool reports the bad input back to the model, instead of the whole turn failing.
    A message with tool calls stops with ``tool_use`` whatever ``finish_reason`` says.
    """
    choices = completion.get("choices") if isinstance(completion, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[JSON] = []
    reasoning = _reasoning_text(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and not is_blank(text):
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and not is_blank(refusal):
        content.append({"type": "text", "text": refusal})
    calls = message.get("tool_calls")
    for j, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict):
            content.append(_tool_use_from_call(call, message_id=message_id, position=j))
    if any(block["type"] == "tool_use" for block in content):
        stop_reason = "tool_use"
    elif isinstance(refusal, str) and refusal:
        stop_reason = "refusal"
    else:
        stop_reason = stop_reason_for(choice.get("finish_reason"))
    return hub_message(
        message_id=message_id,
        model=model,
        content=content,
        stop_reason=stop_reason,
        stop_sequence=None,
        usage=usage_from_openai(completion.get("usage")),
    )


def _reasoning_text(message: Mapping[str, Any]) -> str:
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _tool_use_from_call(call: Mapping[str, Any], *, message_id: str, position: int) -> JSON:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments")
    tool_input: JSON
    if isinstance(arguments, dict):
        tool_input = dict(arguments)
    elif arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        tool_input = {}
    else:
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            parsed = None
        tool_input = parsed if isinstance(parsed, dict) else {"_raw": str(arguments)}
    call_id = call.get("id")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else f"toolu_{message_id}_{position}",
        "name": str(function.get("name") or ""),
        "input": tool_input,
    }
