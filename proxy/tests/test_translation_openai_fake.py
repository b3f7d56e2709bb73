"""The OpenAI upstream translators against the fake OpenAI server (a real HTTP server on
127.0.0.1 that validates every request as OpenAI does).

A hub request goes out through ``anthropic_request_to_chat``; the answer, whole or streamed,
comes back through ``chat_completion_to_anthropic`` / ``ChatChunksToAnthropic`` and must be the
scripted answer again; upstream errors, before and inside a stream, come back as Anthropic errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from proxy.testing import fixtures
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_openai import FakeOpenAI, insufficient_quota, rate_limited
from proxy.testing.faults import ProviderStreamError
from proxy.tests.test_translation_openai_stream import assemble, assert_well_formed
from proxy.tests.test_translation_openai_validation import assert_message
from proxy.translation.hub import HubEvent
from proxy.translation.openai_chat import (
    anthropic_request_to_chat,
    chat_completion_to_anthropic,
    openai_error_to_anthropic,
)
from proxy.translation.openai_stream import ChatChunksToAnthropic

_fixture_server = fixtures.fake_openai_server
_fixture_fake = fixtures.fake_openai

KEY = "sk-test-translation"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 11, "output_tokens": 30, "cache_read_input_tokens": 100},
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {KEY}"}) as client:
        yield client


def hub_request(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                    {
                        "type": "tool_use",
                        "id": "toolu_0",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_0", "content": "18C"},
                    {"type": "text", "text": "And Oslo too?"},
                ],
            },
        ],
        **extra,
    }


def post(http: httpx.Client, fake: FakeOpenAI, hub: dict[str, Any]) -> httpx.Response:
    body = anthropic_request_to_chat(hub, model="gpt-4o")
    return http.post(f"{fake.base_url}/v1/chat/completions", json=body)


def stream_events(response: httpx.Response) -> tuple[list[HubEvent], ChatChunksToAnthropic]:
    translator = ChatChunksToAnthropic(model="claude-sonnet-4-5", message_id="msg_1")
    events: list[HubEvent] = []
    for line in response.text.split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            events += translator.feed(json.loads(line[len("data: ") :]))
    events += translator.finish()
    return events, translator


def test_whole_answer_round_trip(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.answer = TOOL_ANSWER
    response = post(
        http, fake_openai, hub_request(thinking={"type": "enabled", "budget_tokens": 2048})
    )
    assert response.status_code == 200, response.text
    sent = fake_openai.last_request.json()
    assert sent["reasoning_effort"] == "low"
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool", "user"]
    message = chat_completion_to_anthropic(
        response.json(), model="claude-sonnet-4-5", message_id="msg_1"
    )
    assert_message(message)
    assert message["content"] == TOOL_ANSWER.content
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 11,
        "output_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100,
    }


def test_streamed_answer_round_trip(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.answer = TOOL_ANSWER
    response = post(http, fake_openai, hub_request(stream=True))
    assert response.status_code == 200, response.text
    events, translator = stream_events(response)
    assert_well_formed(events)
    message = assemble(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me check."
    assert [getattr(b, "id", None) for b in message.content] == [None, "call_1", "call_2"]
    assert [getattr(b, "input", None) for b in message.content] == [
        None,
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    assert message.stop_reason == "tool_use"
    assert (translator.usage.input_tokens, translator.usage.cache_read_input_tokens) == (11, 100)
    assert translator.usage.output_tokens == 30


def test_reasoning_from_a_compatible_server_becomes_thinking(http: httpx.Client) -> None:
    answer = ScriptedAnswer(
        content=[
            {"type": "thinking", "thinking": "Think first.", "signature": "sig"},
            {"type": "text", "text": "Done."},
        ]
    )
    with FakeOpenAI(reasoning_field="reasoning_content") as fake:
        fake.answer = answer
        whole = post(http, fake, hub_request())
        message = chat_completion_to_anthropic(whole.json(), model="c", message_id="msg_1")
        assert [b["type"] for b in message["content"]] == ["thinking", "text"]
        events, _ = stream_events(post(http, fake, hub_request(stream=True)))
    assembled = assemble(events)
    assert assembled.content[0].thinking == "Think first."
    assert assembled.content[1].text == "Done."


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [(insufficient_quota(), 429, "rate_limit_error"), (rate_limited(), 429, "rate_limit_error")],
)
def test_upstream_errors_become_anthropic_errors(
    http: httpx.Client, fake_openai: FakeOpenAI, fault: Any, status: int, error_type: str
) -> None:
    fake_openai.add_fault(fault)
    response = post(http, fake_openai, hub_request())
    mapped_status, body = openai_error_to_anthropic(response.status_code, response.json())
    assert (mapped_status, body["error"]["type"]) == (status, error_type)
    assert body["error"]["message"] == response.json()["error"]["message"]


def test_an_error_inside_the_stream_becomes_an_error_event(
    http: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_fault(ProviderStreamError(after_events=2, status=503, message="Overloaded now"))
    response = post(http, fake_openai, hub_request(stream=True))
    events, _ = stream_events(response)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["message"] == "Overloaded now"
    assert [name for name, _ in events].count("message_stop") == 0
