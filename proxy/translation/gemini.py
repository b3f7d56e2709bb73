"""Anthropic Messages hub <-> Gemini API (generateContent, countTokens, embeddings, models).

Requests (this module):

- ``anthropic_to_gemini`` builds the ``generateContent`` / ``streamGenerateContent`` body (the
  model goes in the URL). ``system`` (and ``role: "system"`` messages between turns, which Claude
  Code sends) -> ``systemInstruction``; ``assistant`` -> ``model``; consecutive turns of one role
  are merged; blank text is dropped. Images and documents: base64 -> ``inlineData``; URL ->
  ``fileData`` with a MIME type guessed from the extension (images default to ``image/jpeg``,
  documents to ``application/pdf``) — the Gemini API fetches only some URLs, so the caller inlines
  URL images beforehand when the target needs bytes. ``tool_use`` -> ``functionCall``;
  ``tool_result`` -> ``functionResponse`` named after the ``tool_use`` with that id
  (``{"result": text}``, or ``{"error": text}`` when ``is_error``; images in a result follow it as
  ``inlineData`` parts). Thinking text is never sent; a thinking block signed ``gemini:<sig>``
  gives its signature back to the part it came with (see ``gemini_response``), and a function
  call whose thinking block was dropped gets it back from its tool_use id; other signatures
  (Claude's) mean nothing to Gemini and are dropped.
- Tools -> ``functionDeclarations`` with ``parametersJsonSchema``: Gemini reads it as full JSON
  Schema (``anyOf``, ``$ref``/``$defs``, ``const``, ``additionalProperties``), so ``input_schema``
  passes unchanged but for its root ``$schema`` marker (the OpenAPI-subset ``parameters`` field is
  what rejects those keywords, so no schema cleaning is needed). Server tools (typed, without an
  ``input_schema``) only run on Anthropic's side and are dropped. ``tool_choice`` auto / any /
  tool / none -> ``functionCallingConfig`` AUTO / ANY / ANY + ``allowedFunctionNames`` / NONE.
- ``max_tokens`` (capped at 65536, the output limit of current Gemini models), ``temperature``
  (copied: the hub's 0–1 is inside Gemini's 0–2), ``top_p``, ``top_k``, ``stop_sequences``
  (Gemini takes at most 5: more is a ``TranslationError``) -> ``generationConfig``. Thinking:
  ``enabled`` -> ``thinkingBudget`` (kept within 1024..24576, a range every Gemini 2.5 model
  accepts) with ``includeThoughts``; ``adaptive`` -> dynamic budget (-1) with
  ``includeThoughts``; ``disabled`` -> ``thinkingBudget: 0``, which 2.5 Flash and Flash-Lite
  accept and Pro models reject ("This model only works in thinking mode"): when the caller names
  a Pro model, ``disabled`` sends nothing (thoughts are then not returned anyway).
- ``gemini_count_tokens_body``: ``:countTokens`` takes either bare ``contents`` or a whole
  ``generateContentRequest`` (which needs ``model``); the latter is used so the system instruction
  and tools are counted too.
- Embeddings: ``openai_embeddings_to_gemini`` -> ``batchEmbedContents``;
  ``gemini_embeddings_to_openai`` back. Gemini reports no token count for embeddings, so the
  caller passes an estimate as ``input_tokens``; ``encoding_format: "base64"`` is honoured here.
- ``gemini_models_to_ids``: ``models.list`` -> model ids usable for chat or embeddings.

Answers, streams and errors live in ``gemini_response`` and are re-exported here. Anything the
hub carries that Gemini has no field for (metadata, cache_control, betas...) is dropped, so a new
client field never becomes an upstream error. Pure functions: no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.translation.embedding_vectors import (
    openai_dimensions,
    openai_embedding_list,
    openai_embedding_texts,
    openai_encoding_format,
)
from proxy.translation.gemini_response import (
    GEMINI_SIGNATURE_PREFIX,
    GeminiStreamToAnthropic,
    gemini_error_to_anthropic,
    gemini_reasoning_tokens,
    gemini_retry_after_seconds,
    gemini_to_anthropic,
    gemini_usage,
    signature_from_tool_id,
    tool_id_with_signature,
)
from proxy.translation.hub import (
    JSON,
    TranslationError,
    client_tools,
    system_texts,
    tool_names_by_id,
)
from proxy.translation.json_values import is_int, is_number

__all__ = [
    "GEMINI_MAX_EMBED_BATCH",
    "GEMINI_MAX_OUTPUT_TOKENS",
    "GEMINI_MAX_STOP_SEQUENCES",
    "GEMINI_MAX_THINKING_BUDGET",
    "GEMINI_SIGNATURE_PREFIX",
    "GeminiStreamToAnthropic",
    "anthropic_to_gemini",
    "gemini_count_tokens_body",
    "gemini_count_tokens_result",
    "gemini_embeddings_to_openai",
    "gemini_error_to_anthropic",
    "gemini_models_to_ids",
    "gemini_reasoning_tokens",
    "gemini_retry_after_seconds",
    "gemini_to_anthropic",
    "gemini_usage",
    "openai_embeddings_to_gemini",
    "signature_from_tool_id",
    "tool_id_with_signature",
]

GEMINI_MAX_STOP_SEQUENCES = 5
GEMINI_MAX_THINKING_BUDGET = 24576
# Anthropic's own minimum; above every Gemini 2.5 model's minimum (128 for Pro, 512 for Lite).
MIN_THINKING_BUDGET = 1024
# The largest output of current Gemini models (2.5 and 3); Claude Code asks for up to 128000 and
# Gemini refuses a maxOutputTokens beyond the model's range instead of capping it.
GEMINI_MAX_OUTPUT_TOKENS = 65536
# batchEmbedContents: "at most 100 requests can be in one batch".
GEMINI_MAX_EMBED_BATCH = 100
DYNAMIC_THINKING_BUDGET = -1

_IMAGE_TYPES: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
_DOCUMENT_TYPES: dict[str, str] = {
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".csv": "text/csv",
}
_TOOL_CHOICE_MODES = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}
_CHAT_METHODS = frozenset({"generateContent", "embedContent"})


# --- requests ----------------------------------------------------------------------------------


def anthropic_to_gemini(body: JSON, *, model: str | None = None) -> JSON:
    """The generateContent body for a hub request. ``model`` (the Gemini model id, optional) only
    decides whether ``thinking: disabled`` can be expressed (see the module docstring)."""
    request = _request_without_config(body)
    config = _generation_config(body, model)
    if config:
        request["generationConfig"] = config
    return request


def gemini_count_tokens_body(body: JSON, *, model: str | None = None) -> JSON:
    """The ``:countTokens`` body for a hub count_tokens body.

    ``model`` is the Gemini model id (as in the URL); without it the body's ``model`` is used.
    """
    name = model or str(body.get("model") or "")
    if not name:
        raise TranslationError("model is required", param="model")
    request = _request_without_config(body)
    return {"generateContentRequest": {"model": _model_resource(name), **request}}


def gemini_count_tokens_result(response: JSON) -> int:
    """The token count of a ``:countTokens`` answer (``totalTokens``)."""
    total = response.get("totalTokens")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError("countTokens answer without totalTokens")
    return total


def _request_without_config(body: JSON) -> JSON:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise TranslationError("messages must be a list", param="messages")
    system = system_texts(body.get("system"), "system")
    tool_names = tool_names_by_id(messages)
    contents: list[JSON] = []
    for index, message in enumerate(messages):
        path = f"messages.{index}"
        if not isinstance(message, Mapping):
            raise TranslationError("each message must be an object", param=path)
        role = message.get("role")
        if role == "system":
            system += system_texts(message.get("content"), f"{path}.content")
            continue
        if role not in ("user", "assistant"):
            raise TranslationError(f"unsupported role {role!r}", param=f"{path}.role")
        parts = _parts(message.get("content"), role=role, path=path, tool_names=tool_names)
        if not parts:
            continue
        gemini_role = "model" if role == "assistant" else "user"
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})

    request: JSON = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    declarations = _function_declarations(body.get("tools"))
    if declarations:
        request["tools"] = [{"functionDeclarations": declarations}]
        config = _tool_config(body.get("tool_choice"), declarations)
        if config is not None:
            request["toolConfig"] = config
    return request


def _parts(content: Any, *, role: str, path: str, tool_names: dict[str, str]) -> list[JSON]:
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise TranslationError("content must be a string or a list", param=f"{path}.content")
    parts: list[JSON] = []
    # A Gemini signature waiting for the part of the next block of this turn.
    pending_signature: str | None = None
    for index, block in enumerate(content):
        block_path = f"{path}.content.{index}"
        if not isinstance(block, Mapping):
            raise TranslationError("each content block must be an object", param=block_path)
        if block.get("type") == "thinking":
            signature = block.get("signature")
            if isinstance(signature, str) and signature.startswith(GEMINI_SIGNATURE_PREFIX):
                pending_signature = signature[len(GEMINI_SIGNATURE_PREFIX) :] or None
            continue
        new_parts = _block_parts(block, path=block_path, tool_names=tool_names)
        if new_parts and pending_signature is not None and role == "assistant":
            new_parts[0]["thoughtSignature"] = pending_signature
            pending_signature = None
        elif new_parts and block.get("type") == "tool_use" and role == "assistant":
            # The client dropped the thinking block: the call's id still carries its signature.
            from_id = signature_from_tool_id(str(block.get("id") or ""))
            if from_id is not None:
                new_parts[0]["thoughtSignature"] = from_id
        parts.extend(new_parts)
    if pending_signature is not None and role == "assistant" and parts:
        parts[-1].setdefault("thoughtSignature", pending_signature)
    return parts


def _block_parts(block: Mapping[str, Any], *, path: str, tool_names: dict[str, str]) -> list[JSON]:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return [{"text": text}] if isinstance(text, str) and text.strip() else []
    if kind in ("image", "document"):
        return _media_parts(block, path=path)
    if kind == "tool_use":
        name = block.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("tool_use needs a name", param=f"{path}.name")
        args = block.get("input")
        return [
            {
                "functionCall": {
                    "name": name,
                    "args": dict(args) if isinstance(args, Mapping) else {},
                }
            }
        ]
    if kind == "tool_result":
        return _tool_result_parts(block, path=path, tool_names=tool_names)
    # redacted_thinking and server-tool blocks (server_tool_use, web_search_tool_result...) have
    # no Gemini form: they belong to Anthropic's side of an earlier turn.
    return []


def _media_parts(block: Mapping[str, Any], *, path: str) -> list[JSON]:
    kind = str(block.get("type"))
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise TranslationError(f"{kind} needs a source", param=f"{path}.source")
    source_type = source.get("type")
    if source_type == "base64":
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise TranslationError(f"{kind} has no data", param=f"{path}.source.data")
        default = "image/jpeg" if kind == "image" else "application/pdf"
        mime = str(source.get("media_type") or default)
        # Clients write the non-standard image/jpg; Gemini knows only image/jpeg.
        mime = "image/jpeg" if mime == "image/jpg" else mime
        return [{"inlineData": {"mimeType": mime, "data": data}}]
    if source_type == "url" and isinstance(source.get("url"), str):
        url = str(source["url"])
        return [{"fileData": {"mimeType": _guess_mime(url, kind), "fileUri": url}}]
    if source_type == "text" and kind == "document":
        text = source.get("data")
        return [{"text": text}] if isinstance(text, str) and text.strip() else []
    if source_type == "content" and kind == "document":
        parts: list[JSON] = []
        inner = source.get("content")
        if isinstance(inner, str):
            return [{"text": inner}] if inner.strip() else []
        for index, item in enumerate(inner if isinstance(inner, list) else []):
            if isinstance(item, Mapping) and item.get("type") in ("text", "image"):
                parts += _block_parts(item, path=f"{path}.source.content.{index}", tool_names={})
        return parts
    raise TranslationError(
        f"{kind} source type {source_type!r} cannot be sent to Gemini", param=f"{path}.source"
    )


def _guess_mime(url: str, kind: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    table = _IMAGE_TYPES if kind == "image" else _DOCUMENT_TYPES
    for extension, mime in table.items():
        if path.endswith(extension):
            return mime
    return "image/jpeg" if kind == "image" else "application/pdf"


def _tool_result_parts(
    block: Mapping[str, Any], *, path: str, tool_names: dict[str, str]
) -> list[JSON]:
    tool_use_id = block.get("tool_use_id")
    name = tool_names.get(str(tool_use_id)) if isinstance(tool_use_id, str) else None
    if not name:
        raise TranslationError(
            f"tool_result {tool_use_id!r} answers no earlier tool_use",
            param=f"{path}.tool_use_id",
        )
    content = block.get("content")
    texts: list[str] = []
    media: list[JSON] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for index, item in enumerate(content):
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == "text" and isinstance(item.get("text"), str):
                texts.append(item["text"])
            elif item.get("type") in ("image", "document"):
                media += _media_parts(item, path=f"{path}.content.{index}")
    key = "error" if block.get("is_error") is True else "result"
    response = {"name": name, "response": {key: "\n".join(texts)}}
    return [{"functionResponse": response}, *media]


def _function_declarations(tools: Any) -> list[JSON]:
    declarations: list[JSON] = []
    for _index, tool, name in client_tools(tools):
        declaration: JSON = {"name": name}
        description = tool.get("description")
        if isinstance(description, str) and description:
            declaration["description"] = description
        schema = tool.get("input_schema")
        if isinstance(schema, Mapping):
            # The dialect marker means nothing to Gemini; other gateways saw it refused.
            declaration["parametersJsonSchema"] = {
                key: value for key, value in schema.items() if key != "$schema"
            }
        declarations.append(declaration)
    return declarations


def _tool_config(choice: Any, declarations: list[JSON]) -> JSON | None:
    if not isinstance(choice, Mapping) or choice.get("type") not in _TOOL_CHOICE_MODES:
        return None
    config: JSON = {"mode": _TOOL_CHOICE_MODES[str(choice["type"])]}
    if choice["type"] == "tool":
        name = choice.get("name")
        if name not in {d["name"] for d in declarations}:
            raise TranslationError(
                f"tool_choice names {name!r}, which is not in tools", param="tool_choice.name"
            )
        config["allowedFunctionNames"] = [name]
    return {"functionCallingConfig": config}


def _generation_config(body: JSON, model: str | None) -> JSON:
    config: JSON = {}
    max_tokens = body.get("max_tokens")
    if is_int(max_tokens) and max_tokens > 0:
        config["maxOutputTokens"] = min(max_tokens, GEMINI_MAX_OUTPUT_TOKENS)
    for source, target in (("temperature", "temperature"), ("top_p", "topP")):
        value = body.get(source)
        if is_number(value):
            config[target] = value
    top_k = body.get("top_k")
    if is_int(top_k) and top_k > 0:
        config["topK"] = top_k
    stops = body.get("stop_sequences")
    if isinstance(stops, list):
        stops = [stop for stop in stops if isinstance(stop, str) and stop]
        if len(stops) > GEMINI_MAX_STOP_SEQUENCES:
            raise TranslationError(
                f"Gemini accepts at most {GEMINI_MAX_STOP_SEQUENCES} stop sequences",
                param="stop_sequences",
            )
        if stops:
            config["stopSequences"] = stops
    thinking = _thinking_config(body.get("thinking"), model)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(thinking: Any, model: str | None) -> JSON | None:
    if not isinstance(thinking, Mapping):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if is_int(budget) and budget > 0:
            budget = min(max(budget, MIN_THINKING_BUDGET), GEMINI_MAX_THINKING_BUDGET)
        else:
            budget = DYNAMIC_THINKING_BUDGET
        return {"thinkingBudget": budget, "includeThoughts": True}
    if kind == "adaptive":
        return {"thinkingBudget": DYNAMIC_THINKING_BUDGET, "includeThoughts": True}
    if kind == "disabled":
        if model is not None and "-pro" in model.lower():
            return None
        return {"thinkingBudget": 0}
    return None


def _model_resource(model: str) -> str:
    return model if model.startswith("models/") else f"models/{model}"


# --- embeddings and models ---------------------------------------------------------------------


def openai_embeddings_to_gemini(body: JSON, *, model: str) -> JSON:
    """The ``batchEmbedContents`` body for an OpenAI embeddings request (one request per text)."""
    texts = openai_embedding_texts(body)
    if len(texts) > GEMINI_MAX_EMBED_BATCH:
        raise TranslationError(
            f"Gemini embeds at most {GEMINI_MAX_EMBED_BATCH} inputs per request", param="input"
        )
    dimensions = openai_dimensions(body)
    openai_encoding_format(body)  # validated here so a bad value fails before the upstream call
    requests: list[JSON] = []
    for text in texts:
        request: JSON = {"model": _model_resource(model), "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            request["outputDimensionality"] = dimensions
        requests.append(request)
    return {"requests": requests}


def gemini_embeddings_to_openai(
    response: JSON, *, model: str, input_tokens: int, encoding_format: str = "float"
) -> JSON:
    """The OpenAI embeddings answer for a ``batchEmbedContents`` answer.

    Gemini counts no tokens for embeddings: ``input_tokens`` is the caller's estimate, reported
    as ``prompt_tokens``. ``encoding_format`` is the client's (``float`` or ``base64``).
    """
    embeddings = response.get("embeddings")
    if not isinstance(embeddings, list):
        raise ValueError("batchEmbedContents answer without embeddings")
    vectors = []
    for embedding in embeddings:
        values = embedding.get("values") if isinstance(embedding, Mapping) else None
        if not isinstance(values, list):
            raise ValueError("an embedding without values")
        vectors.append(values)
    return openai_embedding_list(
        vectors, model=model, prompt_tokens=input_tokens, encoding_format=encoding_format
    )


def gemini_models_to_ids(response: JSON) -> list[str]:
    """Model ids (without ``models/``) of a ``models.list`` page that can chat or embed."""
    ids: list[str] = []
    models = response.get("models")
    for entry in models if isinstance(models, list) else []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        methods = entry.get("supportedGenerationMethods")
        if not isinstance(methods, list) or not _CHAT_METHODS.intersection(methods):
            continue
        name = entry["name"]
        ids.append(name.removeprefix("models/"))
    return ids
