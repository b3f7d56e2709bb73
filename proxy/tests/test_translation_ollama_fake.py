"""The Ollama translators against the fake Ollama server (a real HTTP server on 127.0.0.1).

The fake validates every body against Ollama's documented API (where the real server would
silently ignore a misplaced field), so these tests show the translation holds over the wire:
a tool conversation answered as one JSON object or as NDJSON lines, an error line inside a stream,
embeddings and the model list.
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
from proxy.testing.fake_ollama import FakeOllama
from proxy.testing.faults import ProviderStreamError
from proxy.tests.test_translation_hub_stream import assert_well_formed, checked
from proxy.tests.test_translation_ollama import (
    WEATHER_TOOL,
    assistant,
    ids,
    to_hub,
    tool_result,
    user,
)
from proxy.translation.ollama import (
    OllamaStreamToAnthropic,
    anthropic_to_ollama,
    ollama_embeddings_to_openai,
    ollama_error_to_anthropic,
    ollama_tags_to_ids,
    openai_embeddings_to_ollama,
)

# --- against the fake Ollama server (a real HTTP server on 127.0.0.1) --------------------------

_fixture_server = fixtures.fake_ollama_server
_fixture_fake = fixtures.fake_ollama

FAKE_MODEL = "llama3.1:latest"
FAKE_TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "unused"},
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 10, "output_tokens": 30},
)


@pytest.fixture
def ollama_http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def tool_turn(*messages: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": stream,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [WEATHER_TOOL],
        "messages": list(messages),
    }


def ndjson_events(answer: httpx.Response) -> list[Any]:
    stream = OllamaStreamToAnthropic(model="claude", message_id="msg_1", new_tool_id=ids())
    events = []
    for text in answer.text.splitlines():
        if text.strip():
            events += stream.feed(json.loads(text))
    return events + stream.finish()


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "ndjson"])
def test_fake_ollama_tool_conversation(
    ollama_http: httpx.Client, fake_ollama: FakeOllama, streamed: bool
) -> None:
    fake_ollama.queue_answers(FAKE_TOOL_ANSWER, ScriptedAnswer.text("Sunny."))
    url = fake_ollama.base_url + "/api/chat"
    question = user("Weather in Paris?")
    first = anthropic_to_ollama(
        tool_turn(question, stream=streamed), model=FAKE_MODEL, supports_thinking=True
    )
    answer = ollama_http.post(url, json=first)
    assert answer.status_code == 200, answer.text
    if streamed:
        message = checked(ndjson_events(answer)).model_dump(exclude_none=True)
    else:
        message = to_hub(answer.json())
    assert message["stop_reason"] == "tool_use"
    assert [b["type"] for b in message["content"]] == ["thinking", "tool_use"]
    assert message["usage"]["input_tokens"] > 0

    stored = json.loads(json.dumps(message["content"]))
    second = anthropic_to_ollama(
        tool_turn(question, assistant(stored), user([tool_result("toolu_01", "Sunny, 21C")])),
        model=FAKE_MODEL,
    )
    answer = ollama_http.post(url, json=second)
    assert answer.status_code == 200, answer.text
    assert to_hub(answer.json())["content"] == [{"type": "text", "text": "Sunny."}]
    sent = fake_ollama.last_request.json()
    assert sent["messages"][-1] == {
        "role": "tool",
        "content": "Sunny, 21C",
        "tool_name": "get_weather",
        "tool_call_id": "toolu_01",
    }


def test_fake_ollama_stream_error_embeddings_and_tags(
    ollama_http: httpx.Client, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_fault(ProviderStreamError(after_events=2, message="model runner crashed"))
    answer = ollama_http.post(
        fake_ollama.base_url + "/api/chat",
        json=anthropic_to_ollama(tool_turn(user("Hi"), stream=True), model=FAKE_MODEL),
    )
    events = ndjson_events(answer)
    assert_well_formed(events)
    assert events[-1][1]["error"] == {"type": "api_error", "message": "model runner crashed"}

    embedded = ollama_http.post(
        fake_ollama.base_url + "/api/embed",
        json=openai_embeddings_to_ollama(
            {"input": ["a", "b"], "dimensions": 8}, model="nomic-embed-text"
        ),
    )
    assert embedded.status_code == 200, embedded.text
    parsed = CreateEmbeddingResponse.model_validate(
        ollama_embeddings_to_openai(embedded.json(), model="text-embedding-3-small")
    )
    assert [len(item.embedding) for item in parsed.data] == [8, 8]

    tags = ollama_http.get(fake_ollama.base_url + "/api/tags").json()
    assert ollama_tags_to_ids(tags) == ["llama3.1:latest", "nomic-embed-text:latest"]

    refused = ollama_http.post(
        fake_ollama.base_url + "/api/chat", json={"model": "m", "max_tokens": 5}
    )
    status, body = ollama_error_to_anthropic(refused.status_code, refused.json())
    assert (status, body["error"]["type"]) == (400, "invalid_request_error")
