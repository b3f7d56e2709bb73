"""What OpenAI's API rejects with a 400, for the fake OpenAI upstream.

Structure comes from openai-python's own request TypedDicts made strict (`typed_dicts.py`); the
rules below are the ones no type expresses, each worded like the real API's message where it has a
well-known one. Every function takes the parsed JSON body and returns the problems found, `[]` for a
request the real API would accept. Pure functions: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from openai.types import completion_create_params as text_completion_params
from openai.types import embedding_create_params
from openai.types.chat import completion_create_params as chat_params

from proxy.testing.validation.typed_dicts import validate_against

# Models whose output size can be chosen (`dimensions`); the others answer 400 when it is given.
MODELS_WITH_DIMENSIONS = ("text-embedding-3",)
MAX_EMBEDDING_INPUTS = 2048
MAX_CHOICES = 128

Rule = Callable[[dict[str, Any]], list[str]]


def _streaming(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


def _range(body: dict[str, Any], key: str, low: float, high: float) -> list[str]:
    value = body.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
        return [f"{key}: {value} is out of range, expected a number from {low} to {high}"]
    return []


def _common_sampling_rules(body: dict[str, Any]) -> list[str]:
    problems = _range(body, "temperature", 0, 2)
    problems += _range(body, "top_p", 0, 1)
    problems += _range(body, "presence_penalty", -2, 2)
    problems += _range(body, "frequency_penalty", -2, 2)
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and not 1 <= n <= MAX_CHOICES:
        problems.append(f"n: {n} is out of range, expected 1 to {MAX_CHOICES}")
    if body.get("stream_options") is not None and not _streaming(body):
        problems.append(
            "stream_options: The 'stream_options' parameter is only allowed when 'stream' is "
            "enabled."
        )
    return problems


def _message_rules(messages: list[Any]) -> list[str]:
    """Conversation rules: assistant turns say something, tool results answer open calls."""
    problems: list[str] = []
    if not messages:
        return ["messages: [] is too short - 'messages' must contain at least one message"]
    open_calls: list[str] = []  # ids of the last assistant tool calls still without a result
    for position, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                problems.append(
                    f"messages.[{position}].role: messages with role 'tool' must be a response "
                    f"to a preceeding message with 'tool_calls' (no open call {call_id!r})"
                )
            else:
                open_calls.remove(call_id)
            continue
        if open_calls:
            problems.append(
                f"messages.[{position}]: An assistant message with 'tool_calls' must be followed "
                "by tool messages responding to each 'tool_call_id'. The following tool_call_ids "
                f"did not have response messages: {', '.join(open_calls)}"
            )
            open_calls = []
        if role != "assistant":
            continue
        tool_calls = message.get("tool_calls") or []
        content = message.get("content")
        if content is None and not tool_calls and message.get("function_call") is None:
            problems.append(
                f"messages.[{position}].content: an assistant message must have 'content' or "
                "'tool_calls'"
            )
        for call_position, call in enumerate(tool_calls):
            function = call.get("function")
            if not isinstance(function, dict):
                continue  # a custom tool call: free-form input
            try:
                json.loads(function.get("arguments", ""))
            except ValueError:
                problems.append(
                    f"messages.[{position}].tool_calls.[{call_position}].function.arguments: "
                    "not a JSON string"
                )
            open_calls.append(call.get("id"))
    if open_calls:
        problems.append(
            "messages: An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have response "
            f"messages: {', '.join(open_calls)}"
        )
    return problems


def _tool_rules(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    problems: list[str] = []
    if not tools:
        if "tool_choice" in body:
            problems.append(
                "tool_choice: 'tool_choice' is only allowed when 'tools' are specified."
            )
        if "parallel_tool_calls" in body:
            problems.append(
                "parallel_tool_calls: 'parallel_tool_calls' is only allowed when 'tools' are "
                "specified."
            )
        return problems
    names = [tool.get("function", {}).get("name") for tool in tools]
    if len(set(names)) != len(names):
        problems.append("tools: tool names must be unique")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        wanted = choice.get("function", {}).get("name")
        if wanted not in names:
            problems.append(f"tool_choice: the tool {wanted!r} is not among 'tools'")
    return problems


def validate_chat_completion(body: Any) -> list[str]:
    """Problems with a `POST /v1/chat/completions` body."""
    streaming = isinstance(body, dict) and _streaming(body)
    params = (
        chat_params.CompletionCreateParamsStreaming
        if streaming
        else chat_params.CompletionCreateParamsNonStreaming
    )
    problems = validate_against(params, body)
    if problems:
        return problems  # the rules below assume the structure is right
    problems += _common_sampling_rules(body)
    problems += _message_rules(list(body["messages"]))
    problems += _tool_rules(body)
    return problems


def validate_text_completion(body: Any) -> list[str]:
    """Problems with a legacy `POST /v1/completions` body."""
    streaming = isinstance(body, dict) and _streaming(body)
    params = (
        text_completion_params.CompletionCreateParamsStreaming
        if streaming
        else text_completion_params.CompletionCreateParamsNonStreaming
    )
    problems = validate_against(params, body)
    if problems:
        return problems
    problems += _common_sampling_rules(body)
    best_of, n = body.get("best_of"), body.get("n") or 1
    if isinstance(best_of, int) and best_of < n:
        problems.append("best_of: must be greater than or equal to n")
    if streaming and best_of not in (None, 1):
        problems.append("best_of: cannot be used with stream")
    if body["prompt"] in ("", []):
        problems.append("prompt: must not be empty")
    return problems


def embedding_inputs(value: Any) -> list[Any]:
    """The inputs of an embeddings request, one per vector: a string or a token list."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(item, int) for item in value):
        return [value]
    return list(value)


def validate_embeddings(body: Any) -> list[str]:
    """Problems with a `POST /v1/embeddings` body."""
    problems = validate_against(embedding_create_params.EmbeddingCreateParams, body)
    if problems:
        return problems
    inputs = embedding_inputs(body["input"])
    if not inputs or any(item in ("", []) for item in inputs):
        problems.append("input: '$.input' is invalid: inputs must be non-empty")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        problems.append(f"input: at most {MAX_EMBEDDING_INPUTS} inputs per request")
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if dimensions < 1:
            problems.append("dimensions: must be at least 1")
        if not str(body["model"]).startswith(MODELS_WITH_DIMENSIONS):
            problems.append("dimensions: This model does not support specifying dimensions.")
    return problems
