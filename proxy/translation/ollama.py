"""Anthropic Messages hub <-> Ollama's native API (/api/chat, /api/embed, /api/tags).

The native API is used rather than Ollama's OpenAI-compatible one: tools there break streaming
(PROTOCOLS.md §9). Field names follow Ollama's ``api/types.go`` (``ChatRequest``, ``Message``,
``ToolCall``, ``Options``, ``EmbedRequest``); Ollama ignores fields it does not know, so nothing
else is ever sent and a translator bug cannot pass silently.

Requests (``anthropic_to_ollama``):

- ``system`` -> a first ``system`` message; ``role: "system"`` messages between turns stay where
  they are (Ollama accepts system messages anywhere).
- Text blocks of a message are joined with newlines into ``content``; base64 images go to that
  message's ``images``. Ollama cannot fetch: URL images (and PDFs, and URL documents) are a
  ``TranslationError`` naming the block — the caller inlines URL images before translating.
- ``tool_use`` -> assistant ``tool_calls`` ``[{id, function{name, arguments: <object>}}]``;
  ``tool_result`` -> one ``tool`` message each, before the rest of that user turn, with
  ``tool_name`` (found by the ``tool_use`` id) and ``tool_call_id``; an error result's text is
  prefixed with ``Error:`` since Ollama has no error flag. Thinking text goes back in the
  assistant message's ``thinking`` (the chat templates of thinking models read it).
- ``thinking`` disabled -> ``think: false``. Enabled or adaptive -> ``think: true`` only when the
  caller says the model can think (``supports_thinking=True``); otherwise no ``think`` at all:
  Ollama turns thinking on by itself for every model that can think (ChatHandler defaults
  ``think`` to true for them) and answers 400 "does not support thinking" when ``think: true``
  reaches any other model — which is what Claude Code, asking for thinking by default, would
  otherwise get from most local models. No ``thinking`` field leaves the model's default.
- ``max_tokens`` -> ``options.num_predict``; ``temperature``, ``top_p``, ``top_k``,
  ``stop_sequences`` -> ``options``. Tools -> ``[{type: "function", function{name, description,
  parameters}}]``. Ollama has no ``tool_choice``: ``none`` drops the tools, ``any`` / ``tool``
  keep them and let the model decide (it cannot be forced). ``stream`` is always explicit
  (Ollama streams unless told not to).

Answers (``ollama_to_anthropic``, ``OllamaStreamToAnthropic``): ``message.thinking`` -> a
``thinking`` block with an empty signature (Ollama signs nothing: a translator towards Anthropic or
Bedrock must drop unsigned thinking blocks, as ``converse`` does); ``content`` -> text; each tool
call (whole, arguments as an object) -> a ``tool_use`` with a generated id. ``done_reason``
``length`` -> ``max_tokens``; otherwise ``tool_use`` when tools were called, else ``end_turn``.
``prompt_eval_count`` -> ``input_tokens``, ``eval_count`` -> ``output_tokens`` (both arrive only
on the last line, so ``message_start`` carries zeros and ``message_delta`` the real counts).

Pure functions: no Django, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxy.translation.embedding_vectors import (
    openai_dimensions,
    openai_embedding_list,
    openai_embedding_texts,
    openai_encoding_format,
)
from proxy.translation.errors import (
    INVALID_REQUEST_ERROR,
    PROMPT_TOO_LONG,
    error_body,
    upstream_status_error,
)
from proxy.translation.hub import (
    JSON,
    HubEvent,
    TranslationError,
    client_tools,
    system_texts,
    tool_names_by_id,
)
from proxy.translation.hub_stream import (
    HubStreamBuilder,
    ToolIdFactory,
    assemble_message,
    new_tool_use_id,
)
from proxy.translation.json_values import is_int, is_number
from proxy.translation.sse import Usage, as_token_count

__all__ = [
    "OllamaStreamToAnthropic",
    "anthropic_to_ollama",
    "ollama_embeddings_to_openai",
    "ollama_error_to_anthropic",
    "ollama_tags_to_ids",
    "ollama_to_anthropic",
    "openai_embeddings_to_ollama",
]

_ERROR_PREFIX = "Error: "


# --- requests ----------------------------------------------------------------------------------


def anthropic_to_ollama(body: JSON, *, model: str, supports_thinking: bool | None = None) -> JSON:
    """The /api/chat body for a hub request; ``model`` is the Ollama model name.

    ``supports_thinking`` is whether the model can think (its ``/api/show`` capabilities), None
    when unknown; it only decides whether enabled thinking is sent as ``think: true``.
    """
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise TranslationError("messages must be a list", param="messages")
    tool_names = tool_names_by_id(raw_messages)
    messages: list[JSON] = []
    system = _system_text(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(raw_messages):
        path = f"messages.{index}"
        if not isinstance(message, Mapping):
            raise TranslationError("each message must be an object", param=path)
        role = message.get("role")
        if role == "system":
            text = _system_text(message.get("content"), f"{path}.content")
            if text:
                messages.append({"role": "system", "content": text})
        elif role == "user":
            messages += _user_messages(message.get("content"), path, tool_names)
        elif role == "assistant":
            assistant = _assistant_message(message.get("content"), path)
            if assistant is not None:
                messages.append(assistant)
        else:
            raise TranslationError(f"unsupported role {role!r}", param=f"{path}.role")

    request: JSON = {"model": model, "messages": messages, "stream": body.get("stream") is True}
    tools = _tools(body.get("tools"))
    choice = body.get("tool_choice")
    if tools and not (isinstance(choice, Mapping) and choice.get("type") == "none"):
        request["tools"] = tools
    options = _options(body)
    if options:
        request["options"] = options
    think = _think(body.get("thinking"))
    if think is False or (think is True and supports_thinking is True):
        request["think"] = think
    return request


def _system_text(system: Any, path: str) -> str:
    # Ollama takes one system message per place: the texts of a list are one message.
    return "\n\n".join(system_texts(system, path))


def _blocks(content: Any, path: str) -> list[tuple[str, Mapping[str, Any]]]:
    """``(path, block)`` for every block of a message's content (a string is one text block)."""
    if isinstance(content, str):
        return [(f"{path}.content", {"type": "text", "text": content})]
    if not isinstance(content, list):
        raise TranslationError("content must be a string or a list", param=f"{path}.content")
    blocks = []
    for index, block in enumerate(content):
        if not isinstance(block, Mapping):
            raise TranslationError(
                "each content block must be an object", param=f"{path}.content.{index}"
            )
        blocks.append((f"{path}.content.{index}", block))
    return blocks


def _user_messages(content: Any, path: str, tool_names: dict[str, str]) -> list[JSON]:
    tool_messages: list[JSON] = []
    texts: list[str] = []
    images: list[str] = []
    for block_path, block in _blocks(content, path):
        kind = block.get("type")
        if kind == "tool_result":
            tool_messages.append(_tool_message(block, block_path, tool_names))
        else:
            _collect(block, block_path, texts, images)
    messages = tool_messages
    text = "\n".join(texts)
    if text.strip() or images:
        user: JSON = {"role": "user", "content": text}
        if images:
            user["images"] = images
        messages.append(user)
    return messages


def _collect(block: Mapping[str, Any], path: str, texts: list[str], images: list[str]) -> None:
    """Add a text, image or document block's text and images; other blocks carry nothing here."""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if isinstance(text, str) and text.strip():
            texts.append(text)
        return
    if kind not in ("image", "document"):
        return  # thinking is handled by the caller; server-tool blocks have no Ollama form
    source = block.get("source")
    source_type = source.get("type") if isinstance(source, Mapping) else None
    if kind == "image" and source_type == "base64" and isinstance(source, Mapping):
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise TranslationError("image has no data", param=f"{path}.source.data")
        images.append(data)
    elif kind == "document" and source_type == "text" and isinstance(source, Mapping):
        text = source.get("data")
        if isinstance(text, str) and text.strip():
            texts.append(text)
    elif kind == "document" and source_type == "content" and isinstance(source, Mapping):
        inner = source.get("content")
        if isinstance(inner, str):
            _collect({"type": "text", "text": inner}, f"{path}.source.content", texts, images)
        for index, item in enumerate(inner if isinstance(inner, list) else []):
            if isinstance(item, Mapping):
                _collect(item, f"{path}.source.content.{index}", texts, images)
    else:
        raise TranslationError(
            f"{kind} source type {source_type!r} cannot be sent to Ollama (only inline images"
            " and text documents)",
            param=f"{path}.source",
        )


def _tool_message(block: Mapping[str, Any], path: str, tool_names: dict[str, str]) -> JSON:
    tool_use_id = block.get("tool_use_id")
    name = tool_names.get(str(tool_use_id)) if isinstance(tool_use_id, str) else None
    if not name:
        raise TranslationError(
            f"tool_result {tool_use_id!r} answers no earlier tool_use", param=f"{path}.tool_use_id"
        )
    texts: list[str] = []
    images: list[str] = []
    content = block.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for index, item in enumerate(content):
            if isinstance(item, Mapping):
                _collect(item, f"{path}.content.{index}", texts, images)
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = _ERROR_PREFIX + text
    message: JSON = {
        "role": "tool",
        "content": text,
        "tool_name": name,
        "tool_call_id": str(tool_use_id),
    }
    if images:
        message["images"] = images
    return message


def _assistant_message(content: Any, path: str) -> JSON | None:
    texts: list[str] = []
    images: list[str] = []
    thinking: list[str] = []
    calls: list[JSON] = []
    for block_path, block in _blocks(content, path):
        kind = block.get("type")
        if kind == "thinking":
            text = block.get("thinking")
            if isinstance(text, str) and text.strip():
                thinking.append(text)
        elif kind == "tool_use":
            name = block.get("name")
            if not isinstance(name, str) or not name:
                raise TranslationError("tool_use needs a name", param=f"{block_path}.name")
            arguments = block.get("input")
            function = {
                "name": name,
                "arguments": dict(arguments) if isinstance(arguments, Mapping) else {},
            }
            calls.append({"id": str(block.get("id") or ""), "function": function})
        else:
            _collect(block, block_path, texts, images)
    text = "\n".join(texts)
    if not (text.strip() or calls or thinking or images):
        return None
    message: JSON = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = "\n".join(thinking)
    if images:
        message["images"] = images
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: Any) -> list[JSON]:
    result: list[JSON] = []
    for _index, tool, name in client_tools(tools):
        function: JSON = {"name": name}
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        schema = tool.get("input_schema")
        function["parameters"] = (
            dict(schema) if isinstance(schema, Mapping) else {"type": "object", "properties": {}}
        )
        result.append({"type": "function", "function": function})
    return result


def _options(body: JSON) -> JSON:
    options: JSON = {}
    max_tokens = body.get("max_tokens")
    if is_int(max_tokens) and max_tokens > 0:
        options["num_predict"] = max_tokens
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if is_number(value):
            options[name] = value
    top_k = body.get("top_k")
    if is_int(top_k) and top_k > 0:
        options["top_k"] = top_k
    stops = body.get("stop_sequences")
    if isinstance(stops, list):
        stops = [stop for stop in stops if isinstance(stop, str) and stop]
        if stops:
            options["stop"] = stops
    return options


def _think(thinking: Any) -> bool | None:
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind in ("enabled", "adaptive"):
        return True
    if kind == "disabled":
        return False
    return None


# --- answers -----------------------------------------------------------------------------------


class OllamaStreamToAnthropic:
    """Translate one /api/chat answer (NDJSON lines, or one whole answer) into hub events.

    ``feed`` each parsed line; call ``finish`` when the upstream ends (normally or not): it closes
    what is open and emits ``message_delta`` + ``message_stop`` exactly once. A line
    ``{"error": "..."}`` becomes an ``error`` event that ends the stream (``finish`` then adds
    nothing). ``new_tool_id`` makes tool_use ids (injectable for tests).
    """

    def __init__(
        self, *, model: str, message_id: str, new_tool_id: ToolIdFactory = new_tool_use_id
    ) -> None:
        self._builder = HubStreamBuilder(model=model, message_id=message_id)
        self._new_tool_id = new_tool_id
        self._done_reason: str | None = None

    @property
    def usage(self) -> Usage:
        """Usage of the answer: zeros until the last line (``done: true``) arrives."""
        return self._builder.usage

    def feed(self, line: JSON) -> list[HubEvent]:
        builder = self._builder
        if builder.done or not isinstance(line, Mapping):
            return []
        if "error" in line:
            builder.error(ollama_error_to_anthropic(500, line)[1])
            return builder.drain()
        builder.start()
        message = line.get("message")
        if isinstance(message, Mapping):
            thinking = message.get("thinking")
            if isinstance(thinking, str):
                builder.thinking(thinking)
            content = message.get("content")
            if isinstance(content, str):
                builder.text(content)
            calls = message.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    builder.tool_use(
                        tool_id=self._new_tool_id(),
                        name=str(function.get("name") or ""),
                        arguments=_arguments(function.get("arguments")),
                    )
        if line.get("done") is True:
            reason = line.get("done_reason")
            self._done_reason = reason if isinstance(reason, str) else None
            builder.usage = Usage(
                input_tokens=as_token_count(line.get("prompt_eval_count")),
                output_tokens=as_token_count(line.get("eval_count")),
            )
        return builder.drain()

    def finish(self) -> list[HubEvent]:
        builder = self._builder
        if not builder.done:
            if self._done_reason == "length":
                stop_reason = "max_tokens"
            elif builder.tool_calls:
                stop_reason = "tool_use"
            else:
                stop_reason = "end_turn"
            builder.finish(stop_reason)
        return builder.drain()


def _arguments(value: Any) -> Mapping[str, Any]:
    # Ollama sends an object; a JSON string (older servers, some proxies) is read as one too.
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, Mapping) else {}


def ollama_to_anthropic(
    response: JSON, *, model: str, message_id: str, new_tool_id: ToolIdFactory = new_tool_use_id
) -> JSON:
    """The Anthropic Message for a non-streamed /api/chat answer."""
    if "error" in response:
        raise ValueError("an Ollama error body is not an answer: use ollama_error_to_anthropic")
    stream = OllamaStreamToAnthropic(model=model, message_id=message_id, new_tool_id=new_tool_id)
    return assemble_message([*stream.feed(response), *stream.finish()])


# --- embeddings, models, errors ----------------------------------------------------------------


def openai_embeddings_to_ollama(body: JSON, *, model: str) -> JSON:
    """The /api/embed body for an OpenAI embeddings request."""
    texts = openai_embedding_texts(body)
    dimensions = openai_dimensions(body)
    openai_encoding_format(body)  # validated here so a bad value fails before the upstream call
    request: JSON = {
        "model": model,
        "input": body["input"] if isinstance(body["input"], str) else texts,
    }
    if dimensions is not None:
        request["dimensions"] = dimensions
    return request


def ollama_embeddings_to_openai(
    response: JSON, *, model: str, encoding_format: str = "float"
) -> JSON:
    """The OpenAI embeddings answer for an /api/embed answer (``prompt_eval_count`` -> usage)."""
    embeddings = response.get("embeddings")
    if not isinstance(embeddings, list) or not all(isinstance(e, list) for e in embeddings):
        raise ValueError("/api/embed answer without embeddings")
    return openai_embedding_list(
        embeddings,
        model=model,
        prompt_tokens=as_token_count(response.get("prompt_eval_count")),
        encoding_format=encoding_format,
    )


def ollama_tags_to_ids(response: JSON) -> list[str]:
    """Model names of an /api/tags answer (``llama3.2:latest``...)."""
    models = response.get("models")
    ids: list[str] = []
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, Mapping):
            name = entry.get("name") or entry.get("model")
            if isinstance(name, str) and name:
                ids.append(name)
    return ids


_TOO_LONG = "exceeds the context length"
_DEFAULT_MESSAGE = "The Ollama server returned an error."


def ollama_error_to_anthropic(status: int, body: JSON | None) -> tuple[int, JSON]:
    """The Anthropic status and error body for an Ollama error answer (``{"error": "text"}``).

    The status decides as for every upstream (``upstream_status_error``): a 401/403 comes from an
    authenticating proxy or ollama.com in front of the server, i.e. the gateway's own credential,
    and 503 is "server busy". A context-length error says "prompt is too long" so Claude Code
    compacts the conversation.
    """
    mapped = upstream_status_error(status)
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):  # an OpenAI-shaped body from a proxy in front of Ollama
        error = error.get("message")
    text = error.strip() if isinstance(error, str) and error.strip() else _DEFAULT_MESSAGE
    if _TOO_LONG in text:
        mapped = (400, INVALID_REQUEST_ERROR)
        text = f"{PROMPT_TOO_LONG}: {text}"
    return mapped[0], error_body(mapped[1], text)
