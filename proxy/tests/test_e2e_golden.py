"""Golden cases per pair of formats, end to end: the official openai and anthropic SDKs (strict
response validation) against the running gateway, on translated upstreams (fake Anthropic,
OpenAI, Gemini, Ollama and a generic OpenAI-compatible server, each validating what it gets).

Each test is a table over (upstream, case) for one client format and checks both ends: what the
upstream received, in its own format, and what the client got (text, reasoning, tool call ids and
arguments, stop reasons, usage), with the one usage event the request left. The cases
``test_e2e_providers.py`` already covers (text, tools on the first turn, data URL images from an
OpenAI client, embeddings, passthrough) are not repeated here.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest

from proxy import media_fetch
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.base import FakeServer
from proxy.testing.fake_gemini import google_error
from proxy.testing.fake_openai import rate_limited
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import AnthropicStreamError, HttpError, ProviderStreamError
from proxy.testing.fixtures import FakeProviders
from proxy.testing.provider_server import ProviderRequest
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_e2e_support import (
    ANTHROPIC_WEATHER_TOOL,
    PNG_1PX,
    TOOL_ANSWER,
    WEATHER_TOOL,
    anthropic_client,
    chat,
    each_call_style,
    openai_client,
    providers_fixture,  # noqa: F401 (the providers fixture)
    with_tool_results,
)

# The upstreams behind each client format, and the model that reaches each.
OPENAI_CLIENT_MODELS = {
    "anthropic": "anthropic/claude-sonnet-4-5",
    "gemini": "gemini/gemini-2.5-flash",
    "ollama": "ollama/qwen3",
}
ANTHROPIC_CLIENT_MODELS = {
    "openai": "openai/gpt-4o",
    "gemini": "gemini/gemini-2.5-flash",
    "ollama": "ollama/qwen3",
    "vllm": "vllm/qwen2.5",
}

REASONING = "Both cities need a lookup."
# reasoning_effort "low" and an Anthropic budget of 2048 are the same request (openai_common).
THINKING_BUDGET = 2048
# How each upstream is asked to think for either. Ollama takes no budget, and a model's
# capabilities are not known: qwen3 thinks unless told not to, so nothing is sent.
THINKING_ASKED = {
    "anthropic": {"type": "enabled", "budget_tokens": THINKING_BUDGET},
    "gemini": {"thinkingBudget": THINKING_BUDGET, "includeThoughts": True},
    "ollama": None,
    "openai": "low",
    "vllm": "low",
}
THINKING_TOOL_ANSWER = ScriptedAnswer(
    content=[
        {"type": "thinking", "thinking": REASONING, "signature": "sig-claude-1"},
        *TOOL_ANSWER.content,
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 30, "output_tokens": 40},
    reasoning_tokens=25,
)
FOLLOW_UP = ScriptedAnswer.text(
    "Sunny in Paris, snow in Oslo.", usage={"input_tokens": 50, "output_tokens": 9}
)
RESULTS = {"Paris": "sunny", "Oslo": "snow"}
QUESTION = "Weather in Paris and Oslo?"


@dataclass
class Gateway:
    """The running gateway, the test user's key, and the fake upstreams behind it."""

    server: GatewayServer
    key: str
    providers: FakeProviders
    anthropic_fake: FakeUpstream

    def fake(self, provider: str) -> Any:
        """The fake server a provider's requests reach (the generic ``vllm`` is the OpenAI
        fake)."""
        if provider == "anthropic":
            return self.anthropic_fake
        if provider == "vllm":
            return self.providers.openai
        return getattr(self.providers, provider)

    def add_fault(self, provider: str, fault: Any) -> None:
        """The next request to ``provider`` fails with ``fault``."""
        fake = self.fake(provider)
        if isinstance(fake, FakeUpstream):
            fake.add_fault(provider, fault)
        else:
            fake.add_fault(fault)

    def openai(self) -> openai.OpenAI:
        return openai_client(self.server, self.key)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic_client(self.server, self.key)


@pytest.fixture
def gateway(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    fake_upstream_settings: FakeUpstream,
) -> Gateway:
    return Gateway(gateway_server, key_holder.plaintext, providers, fake_upstream_settings)


# Each test runs once per upstream behind its client's format.
on_openai_client_upstreams = pytest.mark.parametrize("provider", list(OPENAI_CLIENT_MODELS))
on_anthropic_client_upstreams = pytest.mark.parametrize("provider", list(ANTHROPIC_CLIENT_MODELS))


def sent(fake: FakeServer[Any]) -> dict[str, Any]:
    """The body of the last request a fake upstream got, checked as its real API checks it."""
    request = fake.last_request
    if isinstance(request, ProviderRequest):
        assert request.valid, request.validation_errors
        return dict(request.parsed)
    body: dict[str, Any] = request.json()
    return body


def sent_tool_exchange(provider: str, body: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The last tool calls and their results as the upstream received them: ``(key, arguments)``
    and ``(key, text)`` pairs, the key being the call id (Gemini has none: the function name)."""
    if provider == "anthropic":
        *_, assistant, results = body["messages"]
        calls = [(b["id"], b["input"]) for b in assistant["content"] if b["type"] == "tool_use"]
        answers = [(b["tool_use_id"], b["content"]) for b in results["content"]]
        return calls, answers
    if provider == "gemini":
        *_, model_turn, results = body["contents"]
        calls = [
            (part["functionCall"]["name"], part["functionCall"]["args"])
            for part in model_turn["parts"]
            if "functionCall" in part
        ]
        answers = [
            (part["functionResponse"]["name"], part["functionResponse"]["response"]["result"])
            for part in results["parts"]
        ]
        return calls, answers
    assistant = next(m for m in reversed(body["messages"]) if m["role"] == "assistant")
    calls = [
        (call["id"], _arguments(call["function"]["arguments"])) for call in assistant["tool_calls"]
    ]
    answers = [
        (message["tool_call_id"], message["content"])
        for message in body["messages"]
        if message["role"] == "tool"
    ]
    if provider == "ollama":
        assert {m["tool_name"] for m in body["messages"] if m["role"] == "tool"} == {"get_weather"}
    return calls, answers


def _arguments(arguments: Any) -> Any:
    # A JSON string for OpenAI-compatible servers, the object itself for Ollama.
    return json.loads(arguments) if isinstance(arguments, str) else arguments


def sent_thinking(provider: str, body: dict[str, Any]) -> Any:
    """How the upstream was asked to think (None: not asked)."""
    if provider == "anthropic":
        return body.get("thinking")
    if provider == "gemini":
        return body.get("generationConfig", {}).get("thinkingConfig")
    if provider == "ollama":
        return body.get("think")
    return body.get("reasoning_effort")


def sent_image(provider: str, body: dict[str, Any]) -> Any:
    """The image of the last user turn as the upstream received it."""
    if provider == "gemini":
        (part,) = [p for p in body["contents"][-1]["parts"] if "text" not in p]
        return part
    if provider == "ollama":
        return body["messages"][-1]["images"]
    if provider == "anthropic":
        (block,) = [b for b in body["messages"][-1]["content"] if b["type"] == "image"]
        return block["source"]
    (part,) = [p for p in body["messages"][-1]["content"] if p["type"] == "image_url"]
    return part["image_url"]["url"]


def usage_of(events: list[Any]) -> list[tuple[str, int, int, int]]:
    return [
        (event.provider, event.status_code, event.input_tokens, event.output_tokens)
        for event in events
    ]


# --- an OpenAI client's turn, stream or not, read the way clients read it -------------------------


@dataclass
class ChatTurn:
    text: str = ""
    reasoning: str = ""
    # As a client sends them back: {"id", "type", "function": {"name", "arguments"}}.
    calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    @property
    def arguments(self) -> list[Any]:
        return [json.loads(call["function"]["arguments"]) for call in self.calls]


def chat_turn(client: openai.OpenAI, model: str, *, stream: bool, **params: Any) -> ChatTurn:
    if not stream:
        completion = client.chat.completions.create(model=model, **params)
        choice = completion.choices[0]
        message = choice.message
        return ChatTurn(
            text=message.content or "",
            reasoning=(message.model_extra or {}).get("reasoning_content") or "",
            calls=[call.model_dump(exclude_none=True) for call in message.tool_calls or []],
            finish_reason=choice.finish_reason,
            usage=completion.usage.model_dump() if completion.usage else None,
        )
    turn = ChatTurn()
    calls: dict[int, dict[str, Any]] = {}
    for chunk in client.chat.completions.create(model=model, stream=True, **params):
        if chunk.usage is not None:
            turn.usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            delta = choice.delta
            turn.text += delta.content or ""
            turn.reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for fragment in delta.tool_calls or []:
                call = calls.setdefault(
                    fragment.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = call["id"] or fragment.id or ""
                if fragment.function is not None:
                    call["function"]["name"] += fragment.function.name or ""
                    call["function"]["arguments"] += fragment.function.arguments or ""
            turn.finish_reason = choice.finish_reason or turn.finish_reason
    turn.calls = [calls[index] for index in sorted(calls)]
    return turn


def tool_results_turn(first: ChatTurn) -> list[dict[str, Any]]:
    """The conversation after ``first`` called the weather tool twice, with the results."""
    return [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first.text or None, "tool_calls": first.calls},
        *(
            {"role": "tool", "tool_call_id": call["id"], "content": RESULTS[arguments["city"]]}
            for call, arguments in zip(first.calls, first.arguments, strict=True)
        ),
    ]


def assert_weather_calls(turn: ChatTurn) -> None:
    assert turn.finish_reason == "tool_calls"
    assert [call["function"]["name"] for call in turn.calls] == ["get_weather", "get_weather"]
    assert turn.arguments == [{"city": "Paris"}, {"city": "Oslo"}]
    assert len({call["id"] for call in turn.calls}) == 2


def assert_results_reached(provider: str, body: dict[str, Any], first: ChatTurn) -> None:
    calls, results = sent_tool_exchange(provider, body)
    keys = (
        ["get_weather", "get_weather"]
        if provider == "gemini"
        else [call["id"] for call in first.calls]
    )
    assert calls == list(zip(keys, [{"city": "Paris"}, {"city": "Oslo"}], strict=True))
    assert results == list(zip(keys, ["sunny", "snow"], strict=True))


# --- an image server the gateway may fetch from --------------------------------------------------


class ImageServer:
    """A local HTTP server that answers a PNG at ``/cat.png`` and records the paths asked for."""

    def __init__(self) -> None:
        paths: list[str] = []
        self.paths = paths
        png = base64.b64decode(PNG_1PX)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
                paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cat.png"

    def __enter__(self) -> ImageServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageServer]:
    """An image on 127.0.0.1, which the gateway's address check lets through for this test only
    (it refuses loopback addresses otherwise; ``test_media_fetch`` tests that)."""
    refused = media_fetch.blocked_address_reason
    monkeypatch.setattr(
        media_fetch,
        "blocked_address_reason",
        lambda address: None if address == "127.0.0.1" else refused(address),
    )
    with ImageServer() as server:
        yield server


# --- OpenAI client on Anthropic, Gemini and Ollama -----------------------------------------------


@each_call_style
@on_openai_client_upstreams
def test_openai_client_sends_tool_results_back(
    gateway: Gateway, recorded_events: Any, provider: str, stream: bool
) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(TOOL_ANSWER, FOLLOW_UP)
    client = gateway.openai()
    model = OPENAI_CLIENT_MODELS[provider]

    first = chat_turn(
        client,
        model,
        stream=stream,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert first.text == "Checking both."
    assert_weather_calls(first)
    if provider == "anthropic":  # the only upstream with ids of its own
        assert [call["id"] for call in first.calls] == ["toolu_1", "toolu_2"]

    second = chat_turn(
        client, model, stream=stream, tools=[WEATHER_TOOL], messages=tool_results_turn(first)
    )
    assert (second.text, second.finish_reason) == ("Sunny in Paris, snow in Oslo.", "stop")
    assert_results_reached(provider, sent(fake), first)
    assert usage_of(recorded_events(2)) == [(provider, 200, 30, 12), (provider, 200, 50, 9)]


@on_openai_client_upstreams
def test_openai_client_system_and_developer_messages(gateway: Gateway, provider: str) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(ScriptedAnswer.text("Hallo."))
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour."},
        {"role": "developer", "content": [{"type": "text", "text": "Now answer in German."}]},
        {"role": "user", "content": "Again"},
    ]
    turn = chat_turn(
        gateway.openai(),
        OPENAI_CLIENT_MODELS[provider],
        stream=False,
        messages=messages,
    )
    assert turn.text == "Hallo."
    body = sent(fake)
    # Wherever they stood, system and developer texts become the system prompt, in order.
    if provider == "anthropic":
        system = [block["text"] for block in body["system"]]
        turns = [(m["role"], m["content"][0]["text"]) for m in body["messages"]]
    elif provider == "gemini":
        system = [part["text"] for part in body["systemInstruction"]["parts"]]
        turns = [(c["role"], c["parts"][0]["text"]) for c in body["contents"]]
    else:
        system = [m["content"] for m in body["messages"] if m["role"] == "system"]
        turns = [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]
    assert "\n\n".join(system) == "You are terse.\n\nNow answer in German."
    assistant = "model" if provider == "gemini" else "assistant"
    assert turns == [("user", "Hello"), (assistant, "Bonjour."), ("user", "Again")]


@each_call_style
@on_openai_client_upstreams
def test_openai_client_reasoning_with_tools(
    gateway: Gateway, recorded_events: Any, provider: str, stream: bool
) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(THINKING_TOOL_ANSWER, FOLLOW_UP)
    client = gateway.openai()
    model = OPENAI_CLIENT_MODELS[provider]
    params: dict[str, Any] = {"reasoning_effort": "low", "tools": [WEATHER_TOOL]}

    first = chat_turn(
        client, model, stream=stream, messages=[{"role": "user", "content": QUESTION}], **params
    )
    assert sent_thinking(provider, sent(fake)) == THINKING_ASKED[provider]
    assert first.reasoning == REASONING
    assert first.text == "Checking both."
    assert_weather_calls(first)

    # The client sends the calls back without the reasoning (OpenAI's format has no place for
    # it). Gemini's thought signatures ride in the call ids, and its fake refuses a call without.
    second = chat_turn(client, model, stream=stream, messages=tool_results_turn(first), **params)
    assert second.text == "Sunny in Paris, snow in Oslo."
    body = sent(fake)
    assert_results_reached(provider, body, first)
    # Anthropic refuses thinking when the tool turn being answered does not open with its signed
    # thinking block, which an OpenAI client cannot send back: that one request goes without.
    expected = None if provider == "anthropic" else THINKING_ASKED[provider]
    assert sent_thinking(provider, body) == expected
    events = recorded_events(2)
    assert usage_of(events) == [(provider, 200, 30, 40), (provider, 200, 50, 9)]


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "include-usage"])
@on_openai_client_upstreams
def test_openai_client_stream_usage_chunk_only_when_asked(
    gateway: Gateway, recorded_events: Any, provider: str, include_usage: bool
) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(
        ScriptedAnswer.text("One two three", usage={"input_tokens": 13, "output_tokens": 7})
    )
    params: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    answer = chat(
        gateway.openai(),
        OPENAI_CLIENT_MODELS[provider],
        stream=True,
        **params,
    )
    assert (answer["text"], answer["finish_reason"]) == ("One two three", "stop")
    if include_usage:
        usage = answer["usage"]
        assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
            13,
            7,
            20,
        )
    else:
        assert answer["usage"] is None
    # Accounted either way.
    (event,) = recorded_events(1)
    assert usage_of([event]) == [(provider, 200, 13, 7)]
    assert event.streamed


def _rate_limit(provider: str) -> HttpError:
    """The upstream's own 429, asking to retry in 7 seconds."""
    if provider == "gemini":
        # Gemini says when in a RetryInfo detail, not in a header.
        body = google_error(429, "Resource has been exhausted (e.g. check quota).")
        body["error"]["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
        ]
        return HttpError(status=429, body=json.dumps(body).encode())
    if provider in ("openai", "vllm"):
        return rate_limited(retry_after=7)
    return HttpError(status=429, message="Too many requests.", headers={"retry-after": "7"})


STREAM_FAILURE = "The model crashed mid-answer."
LONG_ANSWER = "A long answer that never ends"


def _stream_failure(provider: str) -> Any:
    """The upstream's own error inside a stream, after part of the text was sent (text comes in
    four pieces)."""
    if provider == "anthropic":
        # message_start, content_block_start, ping, then one text delta.
        return AnthropicStreamError(after_events=4, error_type="api_error", message=STREAM_FAILURE)
    return ProviderStreamError(after_events=3, status=500, message=STREAM_FAILURE)


@on_openai_client_upstreams
def test_openai_client_upstream_429_keeps_status_and_retry_after(
    gateway: Gateway, recorded_events: Any, provider: str
) -> None:
    gateway.add_fault(provider, _rate_limit(provider))
    with pytest.raises(openai.RateLimitError) as raised:
        gateway.openai().chat.completions.create(
            model=OPENAI_CLIENT_MODELS[provider], messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "7"
    error = raised.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert error["message"]
    assert [(e.provider, e.status_code) for e in recorded_events(1)] == [(provider, 429)]


@on_openai_client_upstreams
def test_openai_client_upstream_error_mid_stream(
    gateway: Gateway, recorded_events: Any, provider: str
) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(ScriptedAnswer.text(LONG_ANSWER))
    gateway.add_fault(provider, _stream_failure(provider))
    text = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in gateway.openai().chat.completions.create(
            model=OPENAI_CLIENT_MODELS[provider],
            stream=True,
            messages=[{"role": "user", "content": "Tell me everything"}],
        ):
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
    # What came before the failure reached the client, then OpenAI's in-stream error.
    assert text and LONG_ANSWER.startswith(text) and text != LONG_ANSWER
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["type"] == "server_error"
    assert STREAM_FAILURE in error["message"]
    (event,) = recorded_events(1)
    assert (event.provider, event.status_code, event.streamed) == (provider, 500, True)


@on_openai_client_upstreams
def test_openai_client_url_image(
    gateway: Gateway, image_server: ImageServer, recorded_events: Any, provider: str
) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(
        ScriptedAnswer.text("One pixel.", usage={"input_tokens": 90, "output_tokens": 3})
    )
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": image_server.url, "detail": "low"}},
    ]
    turn = chat_turn(
        gateway.openai(),
        OPENAI_CLIENT_MODELS[provider],
        stream=False,
        messages=[{"role": "user", "content": content}],
    )
    assert turn.text == "One pixel."
    image = sent_image(provider, sent(fake))
    if provider == "anthropic":  # Anthropic fetches URLs itself
        assert image == {"type": "url", "url": image_server.url}
        assert image_server.paths == []
    else:  # Gemini and Ollama take bytes only: the gateway fetched the image
        inline = {"inlineData": {"mimeType": "image/png", "data": PNG_1PX}}
        assert image == (inline if provider == "gemini" else [PNG_1PX])
        assert image_server.paths == ["/cat.png"]
    assert usage_of(recorded_events(1)) == [(provider, 200, 90, 3)]


# --- Anthropic client on OpenAI, Gemini, Ollama and a generic server ------------------------------


@pytest.mark.parametrize("source", ["base64", "url"])
@on_anthropic_client_upstreams
def test_anthropic_client_images(
    gateway: Gateway, image_server: ImageServer, recorded_events: Any, provider: str, source: str
) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(
        ScriptedAnswer.text("One pixel.", usage={"input_tokens": 90, "output_tokens": 3})
    )
    image_source = (
        {"type": "base64", "media_type": "image/png", "data": PNG_1PX}
        if source == "base64"
        else {"type": "url", "url": image_server.url}
    )
    message = gateway.anthropic().messages.create(
        model=ANTHROPIC_CLIENT_MODELS[provider],
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": image_source},
                    {"type": "text", "text": "What is in this image?"},
                ],
            }
        ],
    )
    assert [(block.type, getattr(block, "text", None)) for block in message.content] == [
        ("text", "One pixel.")
    ]
    image = sent_image(provider, sent(fake))
    if provider == "gemini":
        assert image == {"inlineData": {"mimeType": "image/png", "data": PNG_1PX}}
    elif provider == "ollama":
        assert image == [PNG_1PX]
    elif source == "url":  # an OpenAI-compatible server fetches URLs itself
        assert image == image_server.url
    else:
        assert image == f"data:image/png;base64,{PNG_1PX}"
    # Gemini and Ollama take bytes only: the gateway fetched the image, once.
    fetched = source == "url" and provider in ("gemini", "ollama")
    assert image_server.paths == (["/cat.png"] if fetched else [])
    assert usage_of(recorded_events(1)) == [(provider, 200, 90, 3)]


@each_call_style
@on_anthropic_client_upstreams
def test_anthropic_client_thinking_with_tools(
    gateway: Gateway,
    recorded_events: Any,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    stream: bool,
) -> None:
    fake = gateway.fake(provider)
    if provider == "vllm":
        # vLLM (with a reasoning parser) streams reasoning in its own field; OpenAI sends none.
        monkeypatch.setattr(fake, "reasoning_field", "reasoning_content")
    fake.queue_answers(THINKING_TOOL_ANSWER, FOLLOW_UP)
    client = gateway.anthropic()
    params: dict[str, Any] = {
        "model": ANTHROPIC_CLIENT_MODELS[provider],
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": THINKING_BUDGET},
        "tools": [ANTHROPIC_WEATHER_TOOL],
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params)

    assert sent_thinking(provider, sent(fake)) == THINKING_ASKED[provider]
    assert message.stop_reason == "tool_use"
    thinking = "".join(block.thinking for block in message.content if block.type == "thinking")
    assert thinking == ("" if provider == "openai" else REASONING)
    assert [block.text for block in message.content if block.type == "text"] == ["Checking both."]
    tool_uses = [block for block in message.content if block.type == "tool_use"]
    assert [(block.name, block.input) for block in tool_uses] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert len({block.id for block in tool_uses}) == 2

    # The whole assistant turn goes back as Claude Code sends it, thinking blocks included; the
    # fakes refuse what their real API would (Gemini: every call's thought signature).
    messages = with_tool_results(
        params["messages"], message, lambda arguments: RESULTS[arguments["city"]]
    )
    follow_up = client.messages.create(**{**params, "messages": messages})
    assert [block.type for block in follow_up.content] == ["text"]
    body = sent(fake)
    calls, results = sent_tool_exchange(provider, body)
    keys = ["get_weather"] * 2 if provider == "gemini" else [block.id for block in tool_uses]
    assert calls == list(zip(keys, [{"city": "Paris"}, {"city": "Oslo"}], strict=True))
    assert results == list(zip(keys, ["sunny", "snow"], strict=True))
    if provider == "ollama":  # thinking models read their reasoning back from the history
        assistant = next(m for m in body["messages"] if m["role"] == "assistant")
        assert assistant["thinking"] == REASONING
    events = recorded_events(2)
    assert usage_of(events) == [(provider, 200, 30, 40), (provider, 200, 50, 9)]
    # The reasoning part of the output, wherever the upstream reports it (Ollama does not).
    assert events[0].reasoning_tokens == (0 if provider == "ollama" else 25)


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_anthropic_client_upstream_error_mid_stream(
    gateway: Gateway, recorded_events: Any, provider: str
) -> None:
    fake = gateway.fake(provider)
    fake.queue_answers(ScriptedAnswer.text(LONG_ANSWER))
    fake.add_fault(_stream_failure(provider))
    client = gateway.anthropic()
    seen: list[str] = []
    text = ""
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        client.messages.stream(
            model=ANTHROPIC_CLIENT_MODELS[provider],
            max_tokens=100,
            messages=[{"role": "user", "content": "Tell me everything"}],
        ) as stream,
    ):
        for event in stream:
            seen.append(event.type)
            if event.type == "text":
                text += event.text
    assert seen[0] == "message_start"
    assert text and LONG_ANSWER.startswith(text) and text != LONG_ANSWER
    assert "message_stop" not in seen
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert STREAM_FAILURE in body["error"]["message"]
    (event,) = recorded_events(1)
    assert (event.provider, event.status_code, event.streamed) == (provider, 500, True)


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_anthropic_client_upstream_429_keeps_retry_after(
    gateway: Gateway, recorded_events: Any, provider: str
) -> None:
    fake = gateway.fake(provider)
    fake.add_fault(_rate_limit(provider))
    with pytest.raises(anthropic.RateLimitError) as raised:
        gateway.anthropic().messages.create(
            model=ANTHROPIC_CLIENT_MODELS[provider],
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert raised.value.response.headers["retry-after"] == "7"
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["message"]
    assert [(e.provider, e.status_code) for e in recorded_events(1)] == [(provider, 429)]
