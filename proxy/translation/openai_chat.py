"""OpenAI Chat Completions as a client format: client requests → hub, hub answers → client.

- ``chat_request_to_anthropic``: a client's ``chat.completions`` request → hub request.
- ``anthropic_message_to_chat``: a hub answer → ``chat.completion``.

The upstream direction (an OpenAI-compatible provider behind the hub) is in ``openai_upstream``
and errors in ``openai_errors``; their public names are re-exported here, so request and answer
translation is imported from this one module. Streams are in ``openai_stream``, the legacy
``/v1/completions`` surface in ``openai_completions``. The mapping follows PROTOCOLS.md §7;
every choice a table could not make (temperature, reasoning effort, response_format, what is
dropped) is documented where it is made. Pure functions over dicts: no Django, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxy.translation.hub import JSON, TranslationError
from proxy.translation.json_values import is_number
from proxy.translation.media import parse_data_url, sniff_base64_image_type
from proxy.translation.openai_common import (
    REASONING_BUDGETS,
    compact_json,
    finish_reason_for,
    is_blank,
    openai_tool_call,
    openai_usage,
    positive_int,
)
from proxy.translation.openai_errors import (
    anthropic_error_to_openai,
    openai_error_body,
    openai_error_to_anthropic,
    openai_status_for_anthropic,
)
from proxy.translation.openai_upstream import (
    anthropic_request_to_chat,
    chat_completion_to_anthropic,
)
from proxy.translation.sse import as_token_count

__all__ = [
    "anthropic_error_to_openai",
    "anthropic_message_to_chat",
    "anthropic_request_to_chat",
    "chat_completion_to_anthropic",
    "chat_request_to_anthropic",
    "openai_error_body",
    "openai_error_to_anthropic",
    "openai_status_for_anthropic",
]

# Anthropic requires top_p ≥ 0.95 (or unset) while thinking.
_THINKING_MIN_TOP_P = 0.95

# Anthropic has no response_format; the closest portable equivalent is an instruction, appended
# to the system prompt. It works on every upstream behind the hub (Bedrock included) but is not a
# guarantee: the client still validates what it gets, as it must with json_object on OpenAI too.
_JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
_JSON_SCHEMA_INSTRUCTION = (
    "Respond with a single JSON value that conforms to the following JSON schema, and nothing "
    "else (no prose, no code fences):\n"
)

# Roles whose messages become user turns: tool results are user content in Anthropic.
_USER_ROLES = frozenset({"user", "tool"})

# --- OpenAI request → hub request -------------------------------------------------------------


def chat_request_to_anthropic(body: JSON, *, default_max_tokens: int) -> JSON:
    """The hub (Anthropic Messages) request for an OpenAI ``chat.completions`` request.

    ``model`` is copied as is (the caller replaces it). Unknown fields are ignored; fields with no
    Anthropic meaning are dropped (``stream_options``: hub streams always carry usage;
    ``metadata``, ``logit_bias``, ``seed``, penalties...). Raises ``TranslationError`` naming the
    field for what cannot be expressed (``n`` > 1, audio and file parts, bad tool arguments...).
    """
    if not isinstance(body, dict):
        raise TranslationError("The request body must be a JSON object.")
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("Only n=1 is supported.", param="n")

    system, messages = _translate_messages(body.get("messages"))
    request: JSON = {"model": body.get("model"), "messages": messages}
    max_tokens = body.get("max_completion_tokens")
    param = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, param = body.get("max_tokens"), "max_tokens"
    request["max_tokens"] = (
        default_max_tokens if max_tokens is None else positive_int(max_tokens, param)
    )

    instruction = _response_format_instruction(body.get("response_format"))
    if instruction:
        system.append({"type": "text", "text": instruction})
    if system:
        request["system"] = system

    temperature = body.get("temperature")
    if temperature is not None:
        if not is_number(temperature):
            raise TranslationError("temperature must be a number.", param="temperature")
        # OpenAI's range is 0..2, Anthropic's 0..1; like Anthropic's own OpenAI endpoint, values
        # above 1 are capped rather than rescaled, so 0..1 keeps its meaning exactly.
        request["temperature"] = min(max(float(temperature), 0.0), 1.0)
    top_p = body.get("top_p")
    if top_p is not None:
        if not is_number(top_p):
            raise TranslationError("top_p must be a number.", param="top_p")
        request["top_p"] = top_p
    stop = _stop_sequences(body.get("stop"))
    if stop:
        request["stop_sequences"] = stop

    tools = _translate_tools(body.get("tools"))
    tool_choice, allowed = _translate_tool_choice(body.get("tool_choice"))
    if allowed is not None:
        tools = [tool for tool in tools if tool["name"] in allowed]
    if tools:
        request["tools"] = tools
        if body.get("parallel_tool_calls") is False and (tool_choice or {}).get("type") != "none":
            tool_choice = {**(tool_choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
    # tool_choice without tools means nothing to Anthropic (OpenAI rejects it): dropped.

    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        request["metadata"] = {"user_id": user}
    if isinstance(body.get("stream"), bool):
        request["stream"] = body["stream"]
    _apply_reasoning_effort(body.get("reasoning_effort"), request)
    return request


def _translate_messages(raw: Any) -> tuple[list[JSON], list[JSON]]:
    if not isinstance(raw, list) or not raw:
        raise TranslationError("messages must be a non-empty list.", param="messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise TranslationError("Each message must be an object.", param=f"messages.{i}")
        role = message.get("role")
        if role in ("system", "developer"):
            system += _text_blocks(message.get("content"), f"messages.{i}", allow_refusal=False)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"messages.{i}")
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
        elif role == "tool":
            blocks = [_tool_result(message, i)]
        else:
            raise TranslationError(
                f"Unsupported message role {role!r}.", param=f"messages.{i}.role"
            )
        anthropic_role = "user" if role in _USER_ROLES else "assistant"
        if not blocks:
            continue
        # Consecutive same-role messages become one turn (consecutive tool messages included).
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # tool_result blocks must open the user turn that answers the tool calls.
            content = turn["content"]
            results = [b for b in content if b["type"] == "tool_result"]
            if results and len(results) != len(content):
                turn["content"] = results + [b for b in content if b["type"] != "tool_result"]
    _trim_final_assistant(turns)
    if not turns:
        raise TranslationError(
            "messages must contain at least one non-empty user or assistant message.",
            param="messages",
        )
    return system, turns


def _trim_final_assistant(turns: list[JSON]) -> None:
    # A final assistant turn is a prefill; Anthropic rejects one ending in whitespace.
    if not turns or turns[-1]["role"] != "assistant":
        return
    content = turns[-1]["content"]
    while content and content[-1]["type"] == "text":
        stripped = content[-1]["text"].rstrip()
        if stripped:
            content[-1] = {**content[-1], "text": stripped}
            break
        content.pop()
    if not content:
        turns.pop()


def _text_blocks(content: Any, where: str, *, allow_refusal: bool) -> list[JSON]:
    """Text blocks of a string or a list of text parts; blank text is dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [] if is_blank(content) else [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise TranslationError("content must be a string or a list.", param=f"{where}.content")
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text: Any = None
        if kind == "text":
            text = part.get("text")
        elif kind == "refusal" and allow_refusal:
            text = part.get("refusal")
        else:
            raise TranslationError(
                f"Unsupported content part type {kind!r} here.",
                param=f"{where}.content.{j}.type",
            )
        if not isinstance(text, str):
            raise TranslationError(
                f"A {kind} part needs a {kind} string.", param=f"{where}.content.{j}.{kind}"
            )
        if not is_blank(text):
            blocks.append({"type": "text", "text": text})
    return blocks


def _user_blocks(content: Any, where: str) -> list[JSON]:
    if not isinstance(content, list):
        return _text_blocks(content, where, allow_refusal=False)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{where}.content.{j}"))
        elif kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise TranslationError(
                    "A text part needs a text string.", param=f"{where}.content.{j}.text"
                )
            if not is_blank(text):
                blocks.append({"type": "text", "text": text})
        else:
            # input_audio, file and anything newer: the hub has no equivalent.
            raise TranslationError(
                f"Content parts of type {kind!r} are not supported.",
                param=f"{where}.content.{j}.type",
            )
    return blocks


def _image_block(image_url: Any, where: str) -> JSON:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    param = f"{where}.image_url.url"
    if not isinstance(url, str) or not url:
        raise TranslationError("An image_url part needs a url.", param=param)
    lowered = url[:8].lower()
    if lowered.startswith("data:"):
        _claimed, payload = parse_data_url(url, param=param)
        # The bytes decide the type: clients mislabel images and Anthropic rejects a mismatch.
        media_type = sniff_base64_image_type(payload)
        if media_type is None:
            raise TranslationError(
                "Unsupported image format: only JPEG, PNG, GIF and WebP images are accepted.",
                param=param,
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": payload},
        }
    if lowered.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("Image URLs must be https://, http:// or data: URLs.", param=param)


def _assistant_blocks(message: Mapping[str, Any], i: int) -> list[JSON]:
    # reasoning_content (a non-standard field some clients echo back) is not sent: it carries no
    # signature, and Anthropic only accepts thinking blocks it signed itself.
    where = f"messages.{i}"
    blocks = _text_blocks(message.get("content"), where, allow_refusal=True)
    tool_calls = message.get("tool_calls")
    if tool_calls is None:
        return blocks
    if not isinstance(tool_calls, list):
        raise TranslationError("tool_calls must be a list.", param=f"{where}.tool_calls")
    for j, call in enumerate(tool_calls):
        call_where = f"{where}.tool_calls.{j}"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise TranslationError("Only function tool calls are supported.", param=call_where)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id, name = call.get("id"), function.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise TranslationError("A tool call needs an id.", param=f"{call_where}.id")
        if not isinstance(name, str) or not name:
            raise TranslationError(
                "A tool call needs a function name.", param=f"{call_where}.function.name"
            )
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": name,
                "input": _parse_arguments(
                    function.get("arguments"), f"{call_where}.function.arguments"
                ),
            }
        )
    return blocks


def _parse_arguments(arguments: Any, param: str) -> JSON:
    if isinstance(arguments, dict):  # some clients send the object itself
        return dict(arguments)
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}  # a call without arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError:
            raise TranslationError("Tool call arguments are not valid JSON.", param=param) from None
        if isinstance(parsed, dict):
            return parsed
    raise TranslationError("Tool call arguments must be a JSON object.", param=param)


def _tool_result(message: Mapping[str, Any], i: int) -> JSON:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(
            "A tool message needs a tool_call_id.", param=f"messages.{i}.tool_call_id"
        )
    result: JSON = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    else:
        blocks = _text_blocks(content, f"messages.{i}", allow_refusal=False)
        if blocks:
            result["content"] = blocks
    return result


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise TranslationError("stop must be a string or a list of strings.", param="stop")
    return [s for s in stop if s]  # Anthropic and Bedrock reject empty stop sequences


def _translate_tools(raw: Any) -> list[JSON]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TranslationError("tools must be a list.", param="tools")
    tools: list[JSON] = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise TranslationError("Only function tools are supported.", param=f"tools.{i}.type")
        function = tool.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("A tool needs a name.", param=f"tools.{i}.function.name")
        parameters = function.get("parameters")
        # ``strict`` has no Anthropic equivalent and is dropped.
        schema = dict(parameters) if isinstance(parameters, dict) else {}
        schema.setdefault("type", "object")
        translated: JSON = {"name": name, "input_schema": schema}
        if isinstance(function.get("description"), str) and function["description"]:
            translated["description"] = function["description"]
        tools.append(translated)
    return tools


def _translate_tool_choice(choice: Any) -> tuple[JSON | None, set[str] | None]:
    """(Anthropic tool_choice, names allowed by an ``allowed_tools`` choice or None)."""
    if choice is None:
        return None, None
    simple = {"auto": "auto", "required": "any", "none": "none"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}, None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            function = choice.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if isinstance(name, str) and name:
                return {"type": "tool", "name": name}, None
        if choice.get("type") == "allowed_tools":
            allowed = choice.get("allowed_tools")
            allowed = allowed if isinstance(allowed, dict) else {}
            mode, listed = allowed.get("mode"), allowed.get("tools")
            if mode in ("auto", "required") and isinstance(listed, list):
                names = {
                    str(t["function"].get("name"))
                    for t in listed
                    if isinstance(t, dict) and isinstance(t.get("function"), dict)
                }
                return {"type": simple[mode]}, names
    raise TranslationError("Unsupported tool_choice.", param="tool_choice")


def _response_format_instruction(response_format: Any) -> str | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return _JSON_SCHEMA_INSTRUCTION + compact_json(schema)
        return _JSON_OBJECT_INSTRUCTION
    return None  # "text" is the default; unknown kinds are ignored


def _apply_reasoning_effort(effort: Any, request: JSON) -> None:
    if effort is None:
        return
    if effort not in REASONING_BUDGETS:
        raise TranslationError(
            f"Unsupported reasoning_effort {effort!r}; use one of "
            + ", ".join(REASONING_BUDGETS)
            + ".",
            param="reasoning_effort",
        )
    budget = REASONING_BUDGETS[effort]
    if budget is None:
        return
    if request.get("tool_choice", {}).get("type") in ("any", "tool"):
        # Anthropic rejects thinking together with a forced tool; the client's explicit tool
        # choice wins and the request runs without thinking.
        return
    if request["max_tokens"] <= budget:
        # OpenAI counts reasoning inside max_completion_tokens as Anthropic does, but Anthropic
        # requires budget < max_tokens: the budget is added on top of the client's figure, so the
        # visible answer keeps the room the client asked for.
        request["max_tokens"] += budget
    request["thinking"] = {"type": "enabled", "budget_tokens": budget}
    # Thinking requires the default temperature and a top_p of at least 0.95.
    request.pop("temperature", None)
    if request.get("top_p", 1) < _THINKING_MIN_TOP_P:
        request.pop("top_p")


def anthropic_message_to_chat(
    message: JSON, *, model: str, completion_id: str, created: int
) -> JSON:
    """The ``chat.completion`` for a hub message.

    Text blocks are joined into ``content`` (null when the turn only calls tools); thinking goes
    to ``message.reasoning_content``, the non-standard field DeepSeek introduced and most clients
    that show reasoning read. A turn that called tools and ended normally reports ``tool_calls``.
    """
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[JSON] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif kind == "tool_use":
            calls.append(openai_tool_call(block))
    text = "".join(texts)
    chat_message: JSON = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        chat_message["tool_calls"] = calls
    if reasoning:
        chat_message["reasoning_content"] = "".join(reasoning)
    stop_reason = message.get("stop_reason")
    finish_reason = finish_reason_for(stop_reason)
    if calls and stop_reason in (None, "end_turn", "stop_sequence", "pause_turn"):
        finish_reason = "tool_calls"
    usage = message.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": chat_message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": openai_usage(
            input_tokens=as_token_count(usage.get("input_tokens")),
            output_tokens=as_token_count(usage.get("output_tokens")),
            cache_read=as_token_count(usage.get("cache_read_input_tokens")),
            cache_creation=as_token_count(usage.get("cache_creation_input_tokens")),
        ),
    }
