"""What the end-to-end tests through the running gateway (``test_e2e_*.py``,
``test_claude_code.py``) share: the stored upstream keys and the ``providers`` fixture that
stores them (import ``providers_fixture``, which registers under that name), the official SDK
clients pointed at the gateway, a chat helper that reads a stream the way clients do, the
scripted answers and tools they ask for, the ``create``/``stream`` parametrisation, and the
Anthropic conversation that sends tool results back.

No tests live here; the modules that use these import them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from accounts.keycache import invalidate_key_metadata
from accounts.services import provider_credential_set
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.fixtures import FakeProviders
from proxy.tests.conftest import GatewayServer, KeyHolder

OPENAI_KEY = "sk-openai-upstream-0123456789"
GEMINI_KEY = "gemini-upstream-key-0123456789"
ANTHROPIC_KEY = "sk-ant-stored-0123456789"
VLLM_KEY = "vllm-key-0123456789"

TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 30, "output_tokens": 12},
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}
# Every SDK call both ways: ``messages.create`` / ``chat.completions.create``, then streamed.
each_call_style = pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])

PNG_1PX = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)


@pytest.fixture(name="providers")
def providers_fixture(
    fake_providers_settings: FakeProviders,
    fake_upstream_settings: FakeUpstream,
    key_holder: KeyHolder,
) -> FakeProviders:
    provider_credential_set(provider="openai", secret=OPENAI_KEY)
    provider_credential_set(provider="gemini", secret=GEMINI_KEY)
    provider_credential_set(provider="anthropic", secret=ANTHROPIC_KEY)
    provider_credential_set(
        provider="generic",
        name="vllm",
        secret=VLLM_KEY,
        endpoint_url=fake_providers_settings.openai.base_url + "/v1",
    )
    invalidate_key_metadata()
    return fake_providers_settings


def openai_client(gateway: GatewayServer, key: str, *, on_path: bool = False) -> openai.OpenAI:
    if on_path:
        return openai.OpenAI(
            base_url=f"{gateway.key_url(key)}/v1",
            api_key="unused",
            max_retries=0,
            _strict_response_validation=True,
        )
    return openai.OpenAI(
        base_url=f"{gateway.base_url}/v1",
        api_key=key,
        max_retries=0,
        _strict_response_validation=True,
    )


def anthropic_client(gateway: GatewayServer, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.key_url(key),
        api_key="sk-ant-client-credential",
        max_retries=0,
        _strict_response_validation=True,
    )


def chat(client: openai.OpenAI, model: str, *, stream: bool, **params: Any) -> dict[str, Any]:
    """The answer as one dict (a stream is accumulated the way clients do)."""
    messages = params.pop("messages", [{"role": "user", "content": "Say hello"}])
    if not stream:
        completion = client.chat.completions.create(model=model, messages=messages, **params)
        return completion.model_dump()
    text, calls, finish, usage, chunks = "", {}, None, None, 0
    for chunk in client.chat.completions.create(
        model=model, messages=messages, stream=True, **params
    ):
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = entry["id"] or call.id
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    return {
        "text": text,
        "tool_calls": calls,
        "finish_reason": finish,
        "usage": usage,
        "chunks": chunks,
    }


def with_tool_results(
    messages: list[Any], answer: anthropic.types.Message, result: Callable[[Any], str]
) -> list[Any]:
    """``messages`` followed by ``answer`` sent back whole, as Claude Code sends it (thinking
    blocks included), and a user turn with ``result(tool input)`` for each of its tool uses."""
    return [
        *messages,
        {
            "role": "assistant",
            "content": [block.model_dump(exclude_none=True) for block in answer.content],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": block.id, "content": result(block.input)}
                for block in answer.content
                if block.type == "tool_use"
            ],
        },
    ]
