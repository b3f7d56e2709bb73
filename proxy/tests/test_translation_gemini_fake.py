"""The Gemini translators against the fake Gemini server (a real HTTP server on 127.0.0.1).

The fake validates every request as the Gemini API does and enforces the thought-signature round
trip (a function call of an earlier answer must come back with its signature), so these tests show
the translation holds over the wire, streamed (SSE) or not, and that losing the signature fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai.types import CreateEmbeddingResponse

from proxy.testing import fixtures
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_gemini import FakeGemini, resource_exhausted
from proxy.tests.test_translation_gemini import (
    WEATHER_TOOL,
    assistant,
    tool_result,
    user,
)
from proxy.tests.test_translation_gemini_response import to_hub
from proxy.tests.test_translation_hub_stream import checked
from proxy.translation.gemini import (
    GeminiStreamToAnthropic,
    anthropic_to_gemini,
    gemini_count_tokens_body,
    gemini_count_tokens_result,
    gemini_embeddings_to_openai,
    gemini_error_to_anthropic,
    gemini_models_to_ids,
    openai_embeddings_to_gemini,
)

# --- against the fake Gemini server (a real HTTP server on 127.0.0.1) --------------------------

_fixture_server = fixtures.fake_gemini_server
_fixture_fake = fixtures.fake_gemini

FAKE_KEY = "AIza-test-translation"
FAKE_MODEL = "gemini-2.5-flash"
FAKE_TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "unused"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 10, "output_tokens": 30, "cache_read_input_tokens": 4},
    reasoning_tokens=12,
)


@pytest.fixture
def gemini_http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"x-goog-api-key": FAKE_KEY}) as client:
        yield client


def fake_url(fake: FakeGemini, action: str) -> str:
    return f"{fake.base_url}/v1beta/models/{FAKE_MODEL}:{action}"


def thinking_turn(*messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [WEATHER_TOOL],
        "messages": list(messages),
    }


def stream_through(http: httpx.Client, fake: FakeGemini, body: dict[str, Any]) -> list[Any]:
    answer = http.post(fake_url(fake, "streamGenerateContent?alt=sse"), json=body)
    assert answer.status_code == 200, answer.text
    stream = GeminiStreamToAnthropic(model="claude-sonnet-4-5", message_id="msg_1")
    events = []
    for line in answer.text.splitlines():
        if line.startswith("data: "):
            events += stream.feed(json.loads(line[6:]))
    return events + stream.finish()


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_fake_gemini_accepts_the_signature_round_trip(
    gemini_http: httpx.Client, fake_gemini: FakeGemini, streamed: bool
) -> None:
    fake_gemini.queue_answers(FAKE_TOOL_ANSWER, ScriptedAnswer.text("Sunny."))
    question = user("Weather in Paris?")
    first = anthropic_to_gemini(thinking_turn(question), model=FAKE_MODEL)
    if streamed:
        message = checked(stream_through(gemini_http, fake_gemini, first)).model_dump(
            exclude_none=True
        )
    else:
        answer = gemini_http.post(fake_url(fake_gemini, "generateContent"), json=first)
        assert answer.status_code == 200, answer.text
        message = to_hub(answer.json())
    assert message["stop_reason"] == "tool_use"
    signed = [b for b in message["content"] if b["type"] == "thinking" and b["signature"]]
    assert signed and signed[0]["signature"].startswith("gemini:")
    tool_id = next(b["id"] for b in message["content"] if b["type"] == "tool_use")

    stored = json.loads(json.dumps(message["content"]))
    second = anthropic_to_gemini(
        thinking_turn(question, assistant(stored), user([tool_result(tool_id, "Sunny, 21C")])),
        model=FAKE_MODEL,
    )
    answer = gemini_http.post(fake_url(fake_gemini, "generateContent"), json=second)
    assert answer.status_code == 200, answer.text
    assert to_hub(answer.json())["content"] == [{"type": "text", "text": "Sunny."}]


@pytest.mark.parametrize("keep_ids", [True, False], ids=["id-kept", "id-rewritten"])
def test_fake_gemini_without_thinking_blocks_needs_the_tool_id(
    gemini_http: httpx.Client, fake_gemini: FakeGemini, keep_ids: bool
) -> None:
    fake_gemini.queue_answers(FAKE_TOOL_ANSWER, ScriptedAnswer.text("Sunny."))
    question = user("Weather in Paris?")
    first = gemini_http.post(
        fake_url(fake_gemini, "generateContent"),
        json=anthropic_to_gemini(thinking_turn(question), model=FAKE_MODEL),
    )
    message = to_hub(first.json())
    # A client that drops thinking blocks (as OpenAI-format clients drop reasoning) still sends
    # the tool id back, which carries the signature; one that also rewrites ids loses it, and
    # Gemini's 400 reaches the client in Anthropic's shape.
    unsigned = [b for b in message["content"] if b["type"] != "thinking"]
    if not keep_ids:
        unsigned = [{**b, "id": "toolu_plain"} if b["type"] == "tool_use" else b for b in unsigned]
    tool_id = unsigned[-1]["id"]
    second = anthropic_to_gemini(
        thinking_turn(question, assistant(unsigned), user([tool_result(tool_id)])), model=FAKE_MODEL
    )
    answer = gemini_http.post(fake_url(fake_gemini, "generateContent"), json=second)
    if keep_ids:
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 400
    status, body = gemini_error_to_anthropic(answer.status_code, answer.json())
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "thought_signature" in body["error"]["message"]


def test_fake_gemini_count_tokens_embeddings_models_and_quota(
    gemini_http: httpx.Client, fake_gemini: FakeGemini
) -> None:
    counted = gemini_http.post(
        fake_url(fake_gemini, "countTokens"),
        json=gemini_count_tokens_body(thinking_turn(user("Hello")), model=FAKE_MODEL),
    )
    assert counted.status_code == 200, counted.text
    assert gemini_count_tokens_result(counted.json()) > 0

    embedded = gemini_http.post(
        f"{fake_gemini.base_url}/v1beta/models/gemini-embedding-001:batchEmbedContents",
        json=openai_embeddings_to_gemini({"input": ["a", "b"]}, model="gemini-embedding-001"),
    )
    assert embedded.status_code == 200, embedded.text
    answer = gemini_embeddings_to_openai(embedded.json(), model="e", input_tokens=2)
    assert len(CreateEmbeddingResponse.model_validate(answer).data) == 2

    listed = gemini_http.get(f"{fake_gemini.base_url}/v1beta/models")
    assert FAKE_MODEL in gemini_models_to_ids(listed.json())

    fake_gemini.add_fault(resource_exhausted())
    limited = gemini_http.post(
        fake_url(fake_gemini, "generateContent"),
        json=anthropic_to_gemini(thinking_turn(user("Hi"))),
    )
    status, body = gemini_error_to_anthropic(limited.status_code, limited.json())
    assert (status, body["error"]["type"]) == (429, "rate_limit_error")
