"""Strict checks of what the OpenAI translators produce, against the SDKs' own types.

- ``typed_dict_errors``: a value checked recursively against a TypedDict of the openai or
  anthropic SDK (``CompletionCreateParams*``, ``MessageCreateParams*``): unknown keys,
  missing required keys, wrong scalar types and Literal values are errors. pydantic's
  ``TypeAdapter`` over these TypedDicts ignores unknown keys, so it cannot be the oracle here
  (PROTOCOLS.md §10).
- ``chat_request_errors`` adds what no type expresses: each ``tool`` message answers a call of
  the assistant message before it, ``tool_choice`` needs ``tools``, temperature and top_p
  ranges. ``anthropic_request_errors`` does the same for the hub side (alternating roles, no
  blank text, tool_result blocks first, thinking budget below max_tokens).
- ``assert_chat_completion`` / ``assert_chunk`` / ``assert_completion``: SDK models in strict
  mode, and no keys beyond the model's fields except the documented ``reasoning_content``.

The tests at the bottom feed known-bad values to prove each check can fail.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin

import pytest
from anthropic.types import Message
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import BaseModel
from typing_extensions import is_typeddict

# --- TypedDict checker ----------------------------------------------------------------------------

_LIST_ORIGINS = {
    list,
    collections.abc.Iterable,
    collections.abc.Sequence,
    typing.Iterable,
    typing.Sequence,
}
_DICT_ORIGINS = {dict, collections.abc.Mapping, typing.Mapping}


def _hints(typed_dict: Any) -> dict[str, Any]:
    return typing.get_type_hints(typed_dict, include_extras=True)


def _required_keys(typed_dict: Any, hints: dict[str, Any]) -> set[str]:
    # typing computes __required_keys__ from the class's totality, but misses Required[...] and
    # NotRequired[...] written as strings (the SDKs use ``from __future__ import annotations``).
    required = set(typed_dict.__required_keys__)
    for key, hint in hints.items():
        origin = get_origin(hint)
        while origin is typing.Annotated:
            hint = get_args(hint)[0]
            origin = get_origin(hint)
        if origin is Required:
            required.add(key)
        elif origin is NotRequired:
            required.discard(key)
    return required


def _flatten_union(args: tuple[Any, ...]) -> tuple[Any, ...]:
    flat: list[Any] = []
    for arg in args:
        while get_origin(arg) is typing.Annotated:
            arg = get_args(arg)[0]
        if get_origin(arg) is Union or get_origin(arg) is types.UnionType:
            flat += _flatten_union(get_args(arg))
        else:
            flat.append(arg)
    return tuple(flat)


def _discriminated(value: Any, variants: tuple[Any, ...]) -> tuple[Any, ...]:
    """The TypedDict variants whose ``type`` / ``role`` Literal matches the value's."""
    if not isinstance(value, dict):
        return ()
    for key in ("type", "role"):
        if not isinstance(value.get(key), str):
            continue
        matching = []
        for variant in variants:
            if not is_typeddict(variant):
                continue
            hint = _hints(variant).get(key)
            while get_origin(hint) in (typing.Annotated, Required, NotRequired):
                hint = get_args(hint)[0]
            if get_origin(hint) is Literal and value[key] in get_args(hint):
                matching.append(variant)
        if matching:
            return tuple(matching)
    return ()


def typed_dict_errors(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Every way ``value`` does not fit type ``tp`` (a TypedDict or any annotation inside one)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return []
    if origin is typing.Annotated or origin in (Required, NotRequired):
        return typed_dict_errors(value, args[0], path)
    if tp is type(None) or tp is None:
        return [] if value is None else [f"{path}: expected null, got {value!r:.60}"]
    if origin is Union or origin is types.UnionType:
        variants = _discriminated(value, _flatten_union(args)) or args
        attempts = [typed_dict_errors(value, arg, path) for arg in variants]
        if any(not errors for errors in attempts):
            return []
        # Report the variant that matched deepest (a wrong key inside the right kind of object
        # says more than "expected a string").
        return min(attempts, key=lambda errors: (errors[0].startswith(f"{path}:"), len(errors)))
    if origin is Literal:
        ok = any(value == a and type(value) is type(a) for a in args)
        return [] if ok else [f"{path}: {value!r:.60} is not one of {args}"]
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {tp.__name__}, got {type(value).__name__}"]
        hints = _hints(tp)
        errors = [
            f"{path}: unknown key {key!r} in {tp.__name__}" for key in value if key not in hints
        ]
        errors += [
            f"{path}: missing required key {key!r} of {tp.__name__}"
            for key in _required_keys(tp, hints)
            if key not in value
        ]
        for key, item in value.items():
            if key in hints:
                errors += typed_dict_errors(item, hints[key], f"{path}.{key}")
        return errors
    if origin in _LIST_ORIGINS or getattr(origin, "__name__", "") == "SequenceNotStr":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        errors = []
        for i, item in enumerate(value):
            errors += typed_dict_errors(item, args[0] if args else Any, f"{path}.{i}")
        return errors
    if origin in _DICT_ORIGINS or tp in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        errors = []
        for key, item in value.items():
            errors += typed_dict_errors(item, args[1] if args else Any, f"{path}.{key}")
        return errors
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r:.60}"]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a bool, got {value!r:.60}"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an int, got {value!r:.60}"]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r:.60}"]
    # IO[bytes], PathLike...: never produced by a JSON translator.
    return [f"{path}: {value!r:.40} cannot be checked against {tp!r}"]


# --- rules beyond the types -----------------------------------------------------------------------


def chat_request_errors(request: dict[str, Any]) -> list[str]:
    """Errors of an OpenAI chat request: the SDK's types strictly, then the unwritten rules."""
    streaming = request.get("stream") is True
    params = CompletionCreateParamsStreaming if streaming else CompletionCreateParamsNonStreaming
    errors = typed_dict_errors(request, params)
    for key in ("model", "messages"):
        if key not in request:
            errors.append(f"$: missing {key}")
    pending: set[str] = set()
    for i, message in enumerate(request.get("messages") or []):
        role = message.get("role")
        if role == "assistant":
            pending = {call["id"] for call in message.get("tool_calls") or []}
            if message.get("content") is None and not message.get("tool_calls"):
                errors.append(f"messages.{i}: assistant message without content or tool_calls")
        elif role == "tool":
            if message.get("tool_call_id") not in pending:
                errors.append(f"messages.{i}: tool message answers no preceding tool call")
        else:
            pending = set()
    if "tool_choice" in request and not request.get("tools"):
        errors.append("tool_choice without tools")
    if "parallel_tool_calls" in request and not request.get("tools"):
        errors.append("parallel_tool_calls without tools")
    if not 0 <= request.get("temperature", 1) <= 2:
        errors.append("temperature out of 0..2")
    if not 0 <= request.get("top_p", 1) <= 1:
        errors.append("top_p out of 0..1")
    if "stream_options" in request and request.get("stream") is not True:
        errors.append("stream_options without stream")
    return errors


_SAMPLING_FIELDS = ("temperature", "top_p", "top_k")


def anthropic_request_errors(request: dict[str, Any]) -> list[str]:
    """Errors of a hub request: anthropic's ``MessageCreateParams`` strictly, then the rules."""
    streaming = request.get("stream") is True
    params = MessageCreateParamsStreaming if streaming else MessageCreateParamsNonStreaming
    # The installed anthropic SDK's types no longer list the sampling fields, which the Messages
    # API reference (PROTOCOLS.md §1) and every hub translator still use: checked here by hand.
    sampling = {key: request[key] for key in _SAMPLING_FIELDS if key in request}
    errors = typed_dict_errors({k: v for k, v in request.items() if k not in sampling}, params)
    for key, value in sampling.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(f"$.{key}: expected a number, got {value!r:.60}")
    messages = request.get("messages") or []
    if not messages:
        errors.append("messages: empty")
    for i, message in enumerate(messages):
        if i and messages[i - 1]["role"] == message["role"]:
            errors.append(f"messages.{i}: same role as the message before")
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not content:
            errors.append(f"messages.{i}: empty content")
        seen_other = False
        for j, block in enumerate(content):
            if block["type"] == "text" and not block["text"].strip():
                errors.append(f"messages.{i}.content.{j}: blank text")
            if block["type"] == "tool_result" and seen_other:
                errors.append(f"messages.{i}.content.{j}: tool_result after other content")
            seen_other = seen_other or block["type"] != "tool_result"
    if messages and messages[-1]["role"] == "assistant":
        last = messages[-1]["content"]
        final_text = isinstance(last, list) and last and last[-1]["type"] == "text"
        if final_text and last[-1]["text"] != last[-1]["text"].rstrip():
            errors.append("final assistant text ends with whitespace")
    thinking = request.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget, max_tokens = thinking.get("budget_tokens"), request.get("max_tokens")
        if not (isinstance(max_tokens, int) and isinstance(budget, int)):
            errors.append("thinking budget and max_tokens must be integers")
        elif not 1024 <= budget < max_tokens:
            errors.append("thinking budget must be ≥ 1024 and below max_tokens")
        if "temperature" in request:
            errors.append("temperature with thinking")
        if (request.get("tool_choice") or {}).get("type") in ("any", "tool"):
            errors.append("forced tool use with thinking")
    if not 0 <= request.get("temperature", 0) <= 1:
        errors.append("temperature out of 0..1")
    for stop in request.get("stop_sequences") or []:
        if not stop:
            errors.append("empty stop sequence")
    return errors


# --- answers --------------------------------------------------------------------------------------


def _extra_keys(model: BaseModel, path: str = "$") -> list[str]:
    extras = [f"{path}.{key}" for key in model.model_extra or {}]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, BaseModel):
                sub = f"{path}.{name}" + (f".{i}" if isinstance(value, list) else "")
                extras += _extra_keys(item, sub)
    return extras


def _strict(model_type: type[BaseModel], data: dict[str, Any], allowed_extra: set[str]) -> Any:
    model = model_type.model_validate(data, strict=True)
    extras = set(_extra_keys(model)) - allowed_extra
    assert not extras, f"keys the SDK type does not define: {sorted(extras)}"
    return model


def assert_chat_completion(data: dict[str, Any]) -> ChatCompletion:
    return _strict(ChatCompletion, data, {"$.choices.0.message.reasoning_content"})


def assert_chunk(data: dict[str, Any]) -> ChatCompletionChunk:
    return _strict(ChatCompletionChunk, data, {"$.choices.0.delta.reasoning_content"})


def assert_completion(data: dict[str, Any]) -> Completion:
    return _strict(Completion, data, set())


def assert_message(data: dict[str, Any]) -> Message:
    return Message.model_validate(data, strict=True)


# --- the checks fail on bad input -----------------------------------------------------------------

GOOD_CHAT = {
    "model": "gpt-x",
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "max_tokens": 10,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_a_valid_chat_request_passes() -> None:
    assert chat_request_errors(GOOD_CHAT) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_completion": 3}, "unknown key 'max_completion'"),
        ({"max_tokens": "10"}, "expected an int"),
        ({"max_tokens": True}, "expected an int"),
        ({"tool_choice": "sometimes"}, "is not one of"),
        ({"stop": [1]}, "expected a string"),
        ({"messages": [{"role": "user"}]}, "missing required key 'content'"),
        ({"messages": [{"role": "user", "content": "x", "extra": 1}]}, "unknown key 'extra'"),
        ({"messages": [{"role": "tool", "tool_call_id": "zz", "content": "x"}]}, "answers no"),
        ({"tools": [], "tool_choice": "auto"}, "tool_choice without tools"),
        ({"temperature": 2.5}, "temperature out of"),
        ({"stream": False}, "stream_options without stream"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "missing required key 'url'",
        ),
    ],
)
def test_chat_request_checks_fail_on_bad_requests(change: dict[str, Any], expected: str) -> None:
    errors = chat_request_errors({**GOOD_CHAT, **change})
    assert any(expected in error for error in errors), errors


GOOD_HUB = {
    "model": "claude",
    "max_tokens": 2000,
    "system": [{"type": "text", "text": "Be terse."}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
}


def test_a_valid_hub_request_passes() -> None:
    assert anthropic_request_errors(GOOD_HUB) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_tokens": None}, "expected an int"),
        ({"stop": ["x"]}, "unknown key 'stop'"),
        ({"tool_choice": {"type": "required"}}, "is not one of"),
        ({"tool_choice": {"type": "any"}}, "forced tool use"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "thinking budget"),
        ({"temperature": 0.5}, "temperature with thinking"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "same role",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]}, "blank"),
        ({"messages": [{"role": "user", "content": []}]}, "empty content"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x"},
                            {"type": "tool_result", "tool_use_id": "t"},
                        ],
                    }
                ]
            },
            "tool_result after",
        ),
        ({"stop_sequences": [""]}, "empty stop"),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "text", "text": "x "}]}]},
            "final",
        ),
    ],
)
def test_hub_request_checks_fail_on_bad_requests(change: dict[str, Any], expected: str) -> None:
    errors = anthropic_request_errors({**GOOD_HUB, **change})
    assert any(expected in error for error in errors), errors


def test_answer_checks_fail_on_wrong_shapes() -> None:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}],
    }
    assert_chunk(chunk)
    assert_chunk(
        {**chunk, "choices": [{**chunk["choices"][0], "delta": {"reasoning_content": "r"}}]}
    )
    with pytest.raises(AssertionError, match="does not define"):
        assert_chunk({**chunk, "surprise": 1})
    with pytest.raises(ValueError):
        assert_chunk({**chunk, "created": "1"})  # strict: no coercion
    with pytest.raises(ValueError):
        assert_chunk({**chunk, "choices": [{**chunk["choices"][0], "finish_reason": "done"}]})
    with pytest.raises(ValueError):
        assert_completion({"id": "c", "object": "text_completion", "created": 1, "model": "m"})
