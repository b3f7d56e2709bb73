"""One `ScriptedAnswer` rendered as OpenAI, Gemini and Ollama answers and streams.

The same scripted answer (Anthropic-style content blocks, stop reason, usage) becomes:

- OpenAI: a `chat.completion`, its `chat.completion.chunk` sequence, a legacy `text_completion`
  and its chunks, built through openai-python's own response models (`ChatCompletion`,
  `ChatCompletionChunk`, `Completion`, ...) and dumped, so no shape the real API never sends can
  come out (`sdk_dump` refuses fields a model does not declare);
- Gemini: `GenerateContentResponse` bodies (whole, or one per stream chunk) built through
  google-genai's types and dumped in the camelCase wire form;
- Ollama: `/api/chat` and `/api/generate` objects (whole, or NDJSON lines).

Also here: deterministic embedding vectors and the embeddings / model-list bodies, and the text of
the last user turn of each request format (for the answer given when nothing is scripted).

Pure functions over dicts: no I/O, no clock (callers pass ids and times). Byte encoding lives in
the fakes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import pydantic
from google.genai import types as genai_types
from openai.types import completion as openai_completion
from openai.types import completion_choice, completion_usage, create_embedding_response
from openai.types import embedding as openai_embedding
from openai.types import model as openai_model
from openai.types.chat import chat_completion, chat_completion_chunk
from openai.types.chat import chat_completion_message as openai_message
from openai.types.chat import chat_completion_message_function_tool_call as openai_tool_call

from proxy.testing.answers import ScriptedAnswer, split_text

# --- shared --------------------------------------------------------------------------------------


def sdk_dump(model: pydantic.BaseModel, *, allowed_extra: Sequence[str] = ()) -> dict[str, Any]:
    """The wire JSON of an SDK response model, refusing any field the model does not declare.

    openai-python's models accept unknown fields (`extra="allow"`), so a typo in a fake would
    otherwise reach the wire; `allowed_extra` names the deliberate ones (e.g. the
    `reasoning_content` some OpenAI-compatible servers add).
    """
    _check_no_extra(model, frozenset(allowed_extra), model.__class__.__name__)
    return model.model_dump(mode="json", exclude_unset=True, by_alias=True)


def _check_no_extra(value: Any, allowed: frozenset[str], path: str) -> None:
    if isinstance(value, pydantic.BaseModel):
        extra = set(value.model_extra or {}) - allowed
        if extra:
            raise ValueError(f"{path}: fields the SDK model does not declare: {sorted(extra)}")
        for name in type(value).model_fields:
            _check_no_extra(getattr(value, name), allowed, f"{path}.{name}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_no_extra(item, allowed, f"{path}[{position}]")


def answer_text(answer: ScriptedAnswer) -> str:
    return "".join(block["text"] for block in answer.content if block["type"] == "text")


def answer_thinking(answer: ScriptedAnswer) -> str:
    return "".join(block["thinking"] for block in answer.content if block["type"] == "thinking")


def answer_tool_uses(answer: ScriptedAnswer) -> list[dict[str, Any]]:
    return [block for block in answer.content if block["type"] == "tool_use"]


def prompt_tokens(answer: ScriptedAnswer) -> int:
    """Input tokens as OpenAI and Gemini count them: cached and cache-written ones included."""
    usage = answer.full_usage()
    return int(
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )


# --- OpenAI --------------------------------------------------------------------------------------

_OPENAI_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def openai_finish_reason(answer: ScriptedAnswer) -> str:
    if answer_tool_uses(answer):
        return "tool_calls"
    return _OPENAI_FINISH_REASONS.get(answer.stop_reason, "stop")


def openai_usage(answer: ScriptedAnswer) -> completion_usage.CompletionUsage:
    usage = answer.full_usage()
    prompt = prompt_tokens(answer)
    completion = int(usage["output_tokens"])
    return completion_usage.CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=completion_usage.PromptTokensDetails(
            cached_tokens=int(usage["cache_read_input_tokens"]), audio_tokens=0
        ),
        completion_tokens_details=completion_usage.CompletionTokensDetails(
            reasoning_tokens=answer.reasoning_tokens,
            audio_tokens=0,
            accepted_prediction_tokens=0,
            rejected_prediction_tokens=0,
        ),
    )


def _openai_tool_calls(answer: ScriptedAnswer) -> list[Any]:
    return [
        openai_tool_call.ChatCompletionMessageFunctionToolCall(
            id=block["id"],
            type="function",
            function=openai_tool_call.Function(
                name=block["name"], arguments=json.dumps(block["input"])
            ),
        )
        for block in answer_tool_uses(answer)
    ]


def openai_chat_completion(
    answer: ScriptedAnswer,
    *,
    model: str,
    completion_id: str,
    created: int,
    choices: int = 1,
    reasoning_field: str | None = None,
) -> dict[str, Any]:
    """The `chat.completion` body; `reasoning_field` (e.g. `reasoning_content`) carries thinking
    the way some OpenAI-compatible servers do (OpenAI itself never returns it)."""
    tool_calls = _openai_tool_calls(answer)
    text = answer_text(answer)
    message = openai_message.ChatCompletionMessage(
        role="assistant",
        content=text if text or not tool_calls else None,
        refusal=None,
        annotations=[],
    )
    if tool_calls:
        message.tool_calls = tool_calls
    thinking = answer_thinking(answer)
    if reasoning_field and thinking:
        setattr(message, reasoning_field, thinking)
    body = chat_completion.ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=created,
        model=answer.model or model,
        choices=[
            chat_completion.Choice(
                index=index,
                message=message,
                logprobs=None,
                finish_reason=openai_finish_reason(answer),  # type: ignore[arg-type]
            )
            for index in range(choices)
        ],
        usage=openai_usage(answer),
        service_tier="default",
        system_fingerprint="fp_fake",
    )
    return sdk_dump(body, allowed_extra=[reasoning_field] if reasoning_field else [])


def _chunk(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: list[chat_completion_chunk.Choice],
    include_usage: bool,
    usage: completion_usage.CompletionUsage | None = None,
) -> chat_completion_chunk.ChatCompletionChunk:
    chunk = chat_completion_chunk.ChatCompletionChunk(
        id=completion_id,
        object="chat.completion.chunk",
        created=created,
        model=model,
        choices=choices,
        service_tier="default",
        system_fingerprint="fp_fake",
    )
    if include_usage:  # OpenAI sends `"usage": null` on every chunk but the last then
        chunk.usage = usage
    return chunk


def openai_chat_chunks(
    answer: ScriptedAnswer,
    *,
    model: str,
    completion_id: str,
    created: int,
    text_deltas: int,
    include_usage: bool,
    choices: int = 1,
    reasoning_field: str | None = None,
) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a stream, in OpenAI's order.

    Per choice: a first chunk with `role` and empty content, then content pieces (reasoning pieces
    first when `reasoning_field` is set), then each tool call (id, type and name on its first
    fragment, then argument fragments; `index` counts tool calls), then a chunk with
    `finish_reason`. With `include_usage`, one last chunk with no choices and the usage.
    """
    model = answer.model or model
    allowed = [reasoning_field] if reasoning_field else []
    chunks: list[dict[str, Any]] = []

    def emit(index: int, delta: chat_completion_chunk.ChoiceDelta, finish: str | None) -> None:
        choice = chat_completion_chunk.Choice(
            index=index,
            delta=delta,
            logprobs=None,
            finish_reason=finish,  # type: ignore[arg-type]
        )
        chunk = _chunk(
            completion_id=completion_id,
            created=created,
            model=model,
            choices=[choice],
            include_usage=include_usage,
        )
        chunks.append(sdk_dump(chunk, allowed_extra=allowed))

    for index in range(choices):
        emit(
            index,
            chat_completion_chunk.ChoiceDelta(role="assistant", content="", refusal=None),
            None,
        )
        thinking = answer_thinking(answer)
        if reasoning_field and thinking:
            pieces = split_text(thinking, text_deltas)
            delta = chat_completion_chunk.ChoiceDelta()
            setattr(delta, reasoning_field, pieces[0])
            emit(index, delta, None)
            template = chunks[-1]
            chunks.extend(_with_delta(template, reasoning_field, piece) for piece in pieces[1:])
        text = answer_text(answer)
        if text:
            pieces = split_text(text, text_deltas)
            emit(index, chat_completion_chunk.ChoiceDelta(content=pieces[0]), None)
            template = chunks[-1]
            chunks.extend(_with_delta(template, "content", piece) for piece in pieces[1:])
        for call_index, block in enumerate(answer_tool_uses(answer)):
            first = chat_completion_chunk.ChoiceDeltaToolCall(
                index=call_index,
                id=block["id"],
                type="function",
                function=chat_completion_chunk.ChoiceDeltaToolCallFunction(
                    name=block["name"], arguments=""
                ),
            )
            emit(index, chat_completion_chunk.ChoiceDelta(tool_calls=[first]), None)
            for fragment in split_text(json.dumps(block["input"]), 3):
                part = chat_completion_chunk.ChoiceDeltaToolCall(
                    index=call_index,
                    function=chat_completion_chunk.ChoiceDeltaToolCallFunction(arguments=fragment),
                )
                emit(index, chat_completion_chunk.ChoiceDelta(tool_calls=[part]), None)
        emit(index, chat_completion_chunk.ChoiceDelta(), openai_finish_reason(answer))
    if include_usage:
        usage_chunk = _chunk(
            completion_id=completion_id,
            created=created,
            model=model,
            choices=[],
            include_usage=True,
            usage=openai_usage(answer),
        )
        chunks.append(sdk_dump(usage_chunk))
    return chunks


def _with_delta(chunk: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """A one-choice chunk with another delta value.

    The first chunk of a run is built through the SDK models; the next ones (hundreds in a
    benchmark stream) only differ in that value, and building each through pydantic would make
    the fake slower than what it stands in for.
    """
    choice = chunk["choices"][0]
    return {**chunk, "choices": [{**choice, "delta": {**choice["delta"], key: value}}]}


TextFinishReason = Literal["stop", "length", "content_filter"]


def _text_finish_reason(answer: ScriptedAnswer) -> TextFinishReason:
    reason = _OPENAI_FINISH_REASONS.get(answer.stop_reason, "stop")
    if reason in ("length", "content_filter"):
        return cast(TextFinishReason, reason)
    return "stop"


def openai_text_completion(
    answer: ScriptedAnswer, *, model: str, completion_id: str, created: int, choices: int = 1
) -> dict[str, Any]:
    """The legacy `text_completion` body (text blocks only: the endpoint has no tools)."""
    body = openai_completion.Completion(
        id=completion_id,
        object="text_completion",
        created=created,
        model=answer.model or model,
        choices=[
            completion_choice.CompletionChoice(
                index=index,
                text=answer_text(answer),
                logprobs=None,
                finish_reason=_text_finish_reason(answer),
            )
            for index in range(choices)
        ],
        usage=_plain_usage(answer),
    )
    return sdk_dump(body)


def _plain_usage(answer: ScriptedAnswer) -> completion_usage.CompletionUsage:
    prompt = prompt_tokens(answer)
    completion = int(answer.full_usage()["output_tokens"])
    return completion_usage.CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def openai_text_completion_chunks(
    answer: ScriptedAnswer,
    *,
    model: str,
    completion_id: str,
    created: int,
    text_deltas: int,
    include_usage: bool,
) -> list[dict[str, Any]]:
    """Legacy completion stream: text pieces, the last with `finish_reason`, then usage."""
    model = answer.model or model
    pieces = split_text(answer_text(answer), text_deltas)
    chunks = []
    for position, piece in enumerate(pieces):
        last = position == len(pieces) - 1
        choice = completion_choice.CompletionChoice(
            index=0, text=piece, logprobs=None, finish_reason=_text_finish_reason(answer)
        )
        if not last:
            # OpenAI sends `"finish_reason": null` until the last chunk, which the SDK's type
            # (shared with whole completions) does not allow: set it past validation.
            choice.finish_reason = None  # type: ignore[assignment]
        chunk = openai_completion.Completion(
            id=completion_id,
            object="text_completion",
            created=created,
            model=model,
            choices=[choice],
        )
        chunks.append(sdk_dump(chunk))
    if include_usage:
        usage_chunk = openai_completion.Completion(
            id=completion_id,
            object="text_completion",
            created=created,
            model=model,
            choices=[],
            usage=_plain_usage(answer),
        )
        chunks.append(sdk_dump(usage_chunk))
    return chunks


def embedding_vector(item: str | Sequence[int], *, model: str, dimensions: int) -> list[float]:
    """A unit vector derived only from the model and the input, so tests can predict it.

    Values are float32-exact, so the base64 form decodes to exactly the float form.
    """
    seed = hashlib.sha256(f"{model}\0{json.dumps(item)}".encode()).digest()
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        for offset in range(0, len(block), 2):
            values.append(int.from_bytes(block[offset : offset + 2], "big") / 32767.5 - 1.0)
        counter += 1
    values = values[:dimensions]
    norm = sum(value * value for value in values) ** 0.5 or 1.0
    return [struct.unpack("<f", struct.pack("<f", value / norm))[0] for value in values]


def float32_base64(values: Sequence[float]) -> str:
    """Little-endian float32 bytes in base64, OpenAI's `encoding_format: base64`."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def estimate_tokens(item: str | Sequence[int]) -> int:
    """A deterministic token count: token arrays count themselves, text about 4 chars a token."""
    if isinstance(item, str):
        return max(1, (len(item) + 3) // 4)
    return len(item)


def openai_embeddings(
    inputs: Sequence[str | Sequence[int]],
    *,
    model: str,
    dimensions: int,
    encoding_format: str = "float",
) -> dict[str, Any]:
    """The embeddings list body, vectors as floats or base64 float32."""
    vectors = [embedding_vector(item, model=model, dimensions=dimensions) for item in inputs]
    tokens = sum(estimate_tokens(item) for item in inputs)
    body = create_embedding_response.CreateEmbeddingResponse(
        object="list",
        model=model,
        data=[
            openai_embedding.Embedding(object="embedding", index=index, embedding=vector)
            for index, vector in enumerate(vectors)
        ],
        usage=create_embedding_response.Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
    dumped = sdk_dump(body)
    if encoding_format == "base64":
        # The SDK model types the vector as floats; the base64 string replaces it on the wire.
        for item, vector in zip(dumped["data"], vectors, strict=True):
            item["embedding"] = float32_base64(vector)
    return dumped


def openai_models_page(models: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`GET /v1/models`: every model as an SDK `Model`."""
    data = [
        sdk_dump(
            openai_model.Model(
                id=model["id"],
                object="model",
                created=int(model.get("created", 1_700_000_000)),
                owned_by=model.get("owned_by", "openai"),
            )
        )
        for model in models
    ]
    return {"object": "list", "data": data}


def openai_prompt_text(body: Any) -> str:
    """The last user message's text of a chat body, or the prompt of a legacy completion body."""
    if not isinstance(body, dict):
        return ""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], str):
        return prompt[-1]
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
    return ""


# --- Gemini --------------------------------------------------------------------------------------

_GEMINI_FINISH_REASONS = {
    "end_turn": "STOP",
    "stop_sequence": "STOP",
    "pause_turn": "STOP",
    "tool_use": "STOP",  # Gemini ends a turn with function calls with STOP too
    "max_tokens": "MAX_TOKENS",
    "model_context_window_exceeded": "MAX_TOKENS",
    "refusal": "SAFETY",
}

# Signs a functionCall part: bytes for its thoughtSignature, or None for no signature.
Signer = Callable[[dict[str, Any]], bytes | None]


def gemini_finish_reason(answer: ScriptedAnswer) -> str:
    return _GEMINI_FINISH_REASONS.get(answer.stop_reason, "STOP")


def gemini_usage(answer: ScriptedAnswer) -> genai_types.GenerateContentResponseUsageMetadata:
    """Gemini usage: candidates exclude thoughts; the total counts prompt, answer and thoughts."""
    usage = answer.full_usage()
    prompt = prompt_tokens(answer)
    thoughts = answer.reasoning_tokens
    candidates = max(0, int(usage["output_tokens"]) - thoughts)
    metadata = genai_types.GenerateContentResponseUsageMetadata(
        prompt_token_count=prompt,
        candidates_token_count=candidates,
        total_token_count=prompt + candidates + thoughts,
        prompt_tokens_details=[
            genai_types.ModalityTokenCount(
                modality=genai_types.MediaModality.TEXT, token_count=prompt
            )
        ],
    )
    if thoughts:
        metadata.thoughts_token_count = thoughts
    if usage["cache_read_input_tokens"]:
        metadata.cached_content_token_count = int(usage["cache_read_input_tokens"])
    return metadata


def gemini_parts(
    answer: ScriptedAnswer, *, include_thoughts: bool, sign: Signer | None = None
) -> list[genai_types.Part]:
    """The answer's parts: thought summaries (only when asked for), text, function calls (no ids,
    as Gemini sends none), each call signed by `sign` when thinking is on."""
    parts: list[genai_types.Part] = []
    for block in answer.content:
        block_type = block["type"]
        if block_type == "thinking" and include_thoughts:
            parts.append(genai_types.Part(text=block["thinking"], thought=True))
        elif block_type == "text" and block["text"]:
            parts.append(genai_types.Part(text=block["text"]))
        elif block_type == "tool_use":
            call = genai_types.Part(
                function_call=genai_types.FunctionCall(name=block["name"], args=block["input"])
            )
            signature = sign(block) if sign is not None else None
            if signature is not None:
                call.thought_signature = signature
            parts.append(call)
    return parts


def gemini_dump(model: pydantic.BaseModel) -> dict[str, Any]:
    """google-genai's wire form: camelCase aliases, unset fields left out."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def gemini_response(
    answer: ScriptedAnswer,
    *,
    model_version: str,
    response_id: str,
    include_thoughts: bool,
    sign: Signer | None = None,
) -> dict[str, Any]:
    """The `GenerateContentResponse` body of `:generateContent`."""
    response = genai_types.GenerateContentResponse(
        candidates=[
            genai_types.Candidate(
                content=genai_types.Content(
                    role="model",
                    parts=gemini_parts(answer, include_thoughts=include_thoughts, sign=sign),
                ),
                finish_reason=genai_types.FinishReason(gemini_finish_reason(answer)),
                index=0,
            )
        ],
        usage_metadata=gemini_usage(answer),
        model_version=answer.model or model_version,
        response_id=response_id,
    )
    return gemini_dump(response)


def gemini_stream_responses(
    answer: ScriptedAnswer,
    *,
    model_version: str,
    response_id: str,
    include_thoughts: bool,
    text_deltas: int,
    sign: Signer | None = None,
) -> list[dict[str, Any]]:
    """The `GenerateContentResponse` chunks of `:streamGenerateContent`.

    Text and thoughts arrive in pieces, each function call whole in its own chunk; the last chunk
    carries `finishReason` and the full usage (earlier ones only the prompt count).
    """
    # (part, text piece or None): text parts are split, function calls come whole.
    pieces: list[tuple[genai_types.Part, str | None]] = []
    for part in gemini_parts(answer, include_thoughts=include_thoughts, sign=sign):
        if part.text is not None:
            pieces.extend((part, text) for text in split_text(part.text, text_deltas))
        else:
            pieces.append((part, None))
    if not pieces:
        pieces.append((genai_types.Part(text=""), ""))
    model_version = answer.model or model_version
    prompt = prompt_tokens(answer)
    chunks = []
    # The first piece of each text part is built through the types; the next ones reuse its
    # dumped chunk with other text (see `_with_delta`).
    template: dict[str, Any] | None = None
    for position, (part, text) in enumerate(pieces):
        last = position == len(pieces) - 1
        previous = pieces[position - 1][0] if position else None
        if text is not None and not last and previous is part and template is not None:
            chunks.append(_with_text(template, text))
            continue
        piece = part if text is None else part.model_copy(update={"text": text})
        candidate = genai_types.Candidate(
            content=genai_types.Content(role="model", parts=[piece]), index=0
        )
        if last:
            candidate.finish_reason = genai_types.FinishReason(gemini_finish_reason(answer))
        usage = (
            gemini_usage(answer)
            if last
            else genai_types.GenerateContentResponseUsageMetadata(
                prompt_token_count=prompt, total_token_count=prompt
            )
        )
        response = genai_types.GenerateContentResponse(
            candidates=[candidate],
            usage_metadata=usage,
            model_version=model_version,
            response_id=response_id,
        )
        template = gemini_dump(response)
        chunks.append(template)
    return chunks


def _with_text(chunk: dict[str, Any], text: str) -> dict[str, Any]:
    candidate = chunk["candidates"][0]
    content = candidate["content"]
    part = {**content["parts"][0], "text": text}
    return {**chunk, "candidates": [{**candidate, "content": {**content, "parts": [part]}}]}


def gemini_count_tokens(total: int) -> dict[str, Any]:
    return gemini_dump(genai_types.CountTokensResponse(total_tokens=total))


def gemini_embedding(text: str, *, model: str, dimensions: int) -> dict[str, Any]:
    """One `ContentEmbedding` (`{"values": [...]}`)."""
    vector = embedding_vector(text, model=model, dimensions=dimensions)
    return gemini_dump(genai_types.ContentEmbedding(values=vector))


def gemini_models_page(models: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`GET /v1beta/models` (google-genai renames `supportedGenerationMethods`)."""
    page = []
    for model in models:
        dumped = gemini_dump(
            genai_types.Model(
                name=model["name"],
                display_name=model.get("display_name"),
                description=model.get("description"),
                version=model.get("version", "001"),
                input_token_limit=model.get("input_token_limit"),
                output_token_limit=model.get("output_token_limit"),
                supported_actions=model.get("supported_generation_methods"),
                temperature=model.get("temperature"),
                max_temperature=model.get("max_temperature"),
                top_p=model.get("top_p"),
                top_k=model.get("top_k"),
                thinking=model.get("thinking"),
            )
        )
        if "supportedActions" in dumped:
            dumped["supportedGenerationMethods"] = dumped.pop("supportedActions")
        page.append(dumped)
    return {"models": page}


def gemini_prompt_text(body: Any) -> str:
    """The text of the last user content of a generateContent body ("" if none)."""
    if not isinstance(body, dict):
        return ""
    contents = body.get("contents")
    for content in reversed(contents if isinstance(contents, list) else []):
        if not isinstance(content, dict) or content.get("role", "user") != "user":
            continue
        texts = [
            part["text"]
            for part in content.get("parts") or []
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        if texts:
            return " ".join(texts)
    return ""


# --- Ollama --------------------------------------------------------------------------------------

# Durations are nanoseconds on Ollama's wire; fixed ones keep answers deterministic.
OLLAMA_DURATIONS = {
    "total_duration": 5_000_000,
    "load_duration": 1_000_000,
    "prompt_eval_duration": 1_000_000,
    "eval_duration": 3_000_000,
}


def ollama_done_reason(answer: ScriptedAnswer) -> str:
    return (
        "length"
        if answer.stop_reason in ("max_tokens", "model_context_window_exceeded")
        else "stop"
    )


def _ollama_stats(answer: ScriptedAnswer) -> dict[str, Any]:
    return {
        **OLLAMA_DURATIONS,
        "prompt_eval_count": prompt_tokens(answer),
        "eval_count": int(answer.full_usage()["output_tokens"]),
    }


def _ollama_tool_calls(answer: ScriptedAnswer) -> list[dict[str, Any]]:
    return [
        {
            "id": block["id"],
            "function": {"index": index, "name": block["name"], "arguments": block["input"]},
        }
        for index, block in enumerate(answer_tool_uses(answer))
    ]


def ollama_chat_response(
    answer: ScriptedAnswer, *, model: str, created_at: str, think: bool
) -> dict[str, Any]:
    """The `/api/chat` object with `"stream": false`."""
    message: dict[str, Any] = {"role": "assistant", "content": answer_text(answer)}
    thinking = answer_thinking(answer)
    if think and thinking:
        message["thinking"] = thinking
    tool_calls = _ollama_tool_calls(answer)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "model": answer.model or model,
        "created_at": created_at,
        "message": message,
        "done": True,
        "done_reason": ollama_done_reason(answer),
        **_ollama_stats(answer),
    }


def ollama_chat_lines(
    answer: ScriptedAnswer, *, model: str, created_at: str, think: bool, text_deltas: int
) -> list[dict[str, Any]]:
    """The NDJSON objects of a streamed `/api/chat`: thinking and text pieces, every tool call
    whole in one line, then a final line (empty content) with `done_reason` and the counts."""
    model = answer.model or model

    def line(message: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": model,
            "created_at": created_at,
            "message": {"role": "assistant", "content": "", **message},
            "done": False,
        }

    lines: list[dict[str, Any]] = []
    thinking = answer_thinking(answer)
    if think and thinking:
        lines.extend(line({"thinking": piece}) for piece in split_text(thinking, text_deltas))
    text = answer_text(answer)
    if text:
        lines.extend(line({"content": piece}) for piece in split_text(text, text_deltas))
    tool_calls = _ollama_tool_calls(answer)
    if tool_calls:
        lines.append(line({"tool_calls": tool_calls}))
    final = line({})
    final.update(done=True, done_reason=ollama_done_reason(answer), **_ollama_stats(answer))
    lines.append(final)
    return lines


def ollama_generate_response(
    answer: ScriptedAnswer, *, model: str, created_at: str, think: bool
) -> dict[str, Any]:
    """The `/api/generate` object with `"stream": false`."""
    body: dict[str, Any] = {
        "model": answer.model or model,
        "created_at": created_at,
        "response": answer_text(answer),
    }
    thinking = answer_thinking(answer)
    if think and thinking:
        body["thinking"] = thinking
    body.update(done=True, done_reason=ollama_done_reason(answer), **_ollama_stats(answer))
    return body


def ollama_generate_lines(
    answer: ScriptedAnswer, *, model: str, created_at: str, think: bool, text_deltas: int
) -> list[dict[str, Any]]:
    """The NDJSON objects of a streamed `/api/generate`."""
    model = answer.model or model
    base = {"model": model, "created_at": created_at}
    lines: list[dict[str, Any]] = []
    thinking = answer_thinking(answer)
    if think and thinking:
        lines.extend(
            {**base, "response": "", "thinking": piece, "done": False}
            for piece in split_text(thinking, text_deltas)
        )
    text = answer_text(answer)
    if text:
        lines.extend(
            {**base, "response": piece, "done": False} for piece in split_text(text, text_deltas)
        )
    lines.append(
        {
            **base,
            "response": "",
            "done": True,
            "done_reason": ollama_done_reason(answer),
            **_ollama_stats(answer),
        }
    )
    return lines


def ollama_embed_response(inputs: Sequence[str], *, model: str, dimensions: int) -> dict[str, Any]:
    return {
        "model": model,
        "embeddings": [
            embedding_vector(item, model=model, dimensions=dimensions) for item in inputs
        ],
        "total_duration": OLLAMA_DURATIONS["total_duration"],
        "load_duration": OLLAMA_DURATIONS["load_duration"],
        "prompt_eval_count": sum(estimate_tokens(item) for item in inputs),
    }


def ollama_prompt_text(body: Any) -> str:
    """The last user message of an `/api/chat` body, or the prompt of `/api/generate`."""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("prompt"), str):
        return str(body["prompt"])
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    return ""
