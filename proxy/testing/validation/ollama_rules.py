"""What the fake Ollama upstream accepts: Ollama's documented native API, strictly.

The real server decodes bodies into Go structs and silently drops every field it does not know, so
a translator bug (`max_tokens` at the top level instead of `options.num_predict`, `tool_calls`
arguments as a JSON string) would pass unnoticed against it. These models follow the documented
API (docs/api.md: `/api/chat`, `/api/generate`, `/api/embed`) with unknown fields forbidden at
every depth and strict types: images are base64 strings, tool-call arguments are objects, roles are
system/user/assistant/tool, and `options` holds only the documented option names.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from proxy.testing.validation.typed_dicts import validation_messages


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _base64_image(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("an image must be base64 (no data: URL, no raw bytes)") from None
    if not value:
        raise ValueError("an image must not be empty")
    return value


Base64Image = Annotated[str, pydantic.AfterValidator(_base64_image)]
# "5m", "1h30m" or seconds; a negative number keeps the model loaded.
KeepAlive = str | int | float


class Options(_Strict):
    """The documented `options` (Modelfile parameters and runner settings)."""

    num_keep: int | None = None
    seed: int | None = None
    num_predict: int | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_last_n: int | None = None
    temperature: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    penalize_newline: bool | None = None
    stop: list[str] | None = None
    numa: bool | None = None
    num_ctx: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_thread: int | None = None


class ToolCallFunction(_Strict):
    name: str
    arguments: dict[str, Any]
    index: int | None = None


class ToolCall(_Strict):
    id: str | None = None
    function: ToolCallFunction


class Message(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None
    images: list[Base64Image] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ToolFunction(_Strict):
    name: str
    description: str | None = None
    # A JSON schema object: its inside is the model's business, not the API's.
    parameters: dict[str, Any] | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: ToolFunction


Think = bool | Literal["high", "medium", "low"]
Format = Literal["json"] | dict[str, Any]


class ChatRequest(_Strict):
    model: str = Field(min_length=1)
    messages: list[Message] | None = None
    tools: list[Tool] | None = None
    format: Format | None = None
    options: Options | None = None
    stream: bool | None = None
    keep_alive: KeepAlive | None = None
    think: Think | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class GenerateRequest(_Strict):
    model: str = Field(min_length=1)
    prompt: str | None = None
    suffix: str | None = None
    images: list[Base64Image] | None = None
    format: Format | None = None
    options: Options | None = None
    system: str | None = None
    template: str | None = None
    stream: bool | None = None
    raw: bool | None = None
    keep_alive: KeepAlive | None = None
    context: list[int] | None = None
    think: Think | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class EmbedRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool | None = None
    options: Options | None = None
    keep_alive: KeepAlive | None = None
    dimensions: int | None = Field(default=None, ge=1)


def _structure(model: type[BaseModel], body: Any) -> list[str]:
    try:
        model.model_validate(body)
    except pydantic.ValidationError as error:
        return validation_messages(error)
    return []


def validate_chat(body: Any) -> list[str]:
    """Problems with a `POST /api/chat` body."""
    problems = _structure(ChatRequest, body)
    if problems:
        return problems
    options = body.get("options") or {}
    temperature = options.get("temperature")
    if temperature is not None and temperature < 0:
        problems.append("options.temperature: must not be negative")
    for position, message in enumerate(body.get("messages") or []):
        if message["role"] != "assistant" and message.get("tool_calls"):
            problems.append(f"messages.{position}.tool_calls: only assistant messages call tools")
        if message["role"] != "tool" and message.get("tool_name"):
            problems.append(f"messages.{position}.tool_name: only tool messages name a tool")
    return problems


def validate_generate(body: Any) -> list[str]:
    """Problems with a `POST /api/generate` body."""
    return _structure(GenerateRequest, body)


def validate_embed(body: Any) -> list[str]:
    """Problems with a `POST /api/embed` body."""
    problems = _structure(EmbedRequest, body)
    if not problems and body["input"] in ("", []):
        problems.append("input: must not be empty")
    return problems
