"""Every provider behind one gateway, end to end: the official openai and anthropic SDKs (strict
response validation) against the running gateway, and fake OpenAI, Gemini, Ollama and Anthropic
upstreams that validate every request they get."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_openai import insufficient_quota, rate_limited
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError, ProviderStreamError
from proxy.testing.fixtures import FakeProviders
from proxy.testing.provider_server import key_sha256
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_e2e_support import (
    ANTHROPIC_WEATHER_TOOL,
    OPENAI_KEY,
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

# --- OpenAI client, OpenAI upstream: passthrough ------------------------------------------------


@pytest.mark.parametrize("on_path", [False, True], ids=["bearer", "ak-path"])
def test_openai_passthrough_text(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
    on_path: bool,
) -> None:
    providers.openai.queue_answers(
        ScriptedAnswer.text("Hello there", usage={"input_tokens": 9, "output_tokens": 3})
    )
    answer = chat(
        openai_client(gateway_server, key_holder.plaintext, on_path=on_path), "gpt-4o", stream=False
    )
    assert answer["choices"][0]["message"]["content"] == "Hello there"
    request = providers.openai.last_request
    assert request.valid
    assert request.key_sha256 == key_sha256(OPENAI_KEY)
    (event,) = recorded_events(1)
    assert (event.provider, event.requested_model, event.input_tokens, event.output_tokens) == (
        "openai",
        "gpt-4o",
        9,
        3,
    )


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "include-usage"])
def test_openai_passthrough_stream_always_accounts_usage(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
    include_usage: bool,
) -> None:
    providers.openai.queue_answers(
        ScriptedAnswer.text("One two three", usage={"input_tokens": 5, "output_tokens": 4})
    )
    params: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    answer = chat(
        openai_client(gateway_server, key_holder.plaintext), "openai/gpt-4o", stream=True, **params
    )
    assert answer["text"] == "One two three"
    assert answer["finish_reason"] == "stop"
    # The client gets the usage chunk exactly when it asked for it.
    assert (answer["usage"] is not None) is include_usage
    sent = providers.openai.last_request.parsed
    assert sent["model"] == "gpt-4o"
    assert sent["stream_options"] == {"include_usage": True}
    (event,) = recorded_events(1)
    assert (event.provider, event.input_tokens, event.output_tokens, event.streamed) == (
        "openai",
        5,
        4,
        True,
    )


def test_openai_passthrough_tools_and_round_trip(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.openai.queue_answers(TOOL_ANSWER, ScriptedAnswer.text("Sunny in both."))
    client = openai_client(gateway_server, key_holder.plaintext)
    first = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    )
    calls = first.choices[0].message.tool_calls
    assert [json.loads(call.function.arguments) for call in calls] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    second = client.chat.completions.create(
        model="gpt-4o",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": first.choices[0].message.content,
                "tool_calls": [call.model_dump() for call in calls],
            },
            *({"role": "tool", "tool_call_id": call.id, "content": "sunny"} for call in calls),
        ],
    )
    assert second.choices[0].message.content == "Sunny in both."
    assert all(request.valid for request in providers.openai.requests)


def test_openai_upstream_429_keeps_status_and_retry_after(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.openai.add_fault(rate_limited(retry_after=7))
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client(gateway_server, key_holder.plaintext).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.code == "rate_limit_exceeded"


def test_openai_quota_error_reaches_an_anthropic_client_in_its_format(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.openai.add_fault(insufficient_quota())
    with pytest.raises(anthropic.RateLimitError) as raised:
        anthropic_client(gateway_server, key_holder.plaintext).messages.create(
            model="openai/gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert "quota" in raised.value.body["error"]["message"]


def test_openai_error_mid_stream_is_an_openai_stream_error(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.openai.add_fault(ProviderStreamError(after_events=2, status=500))
    with pytest.raises(openai.APIError):
        chat(openai_client(gateway_server, key_holder.plaintext), "gpt-4o", stream=True)


@pytest.mark.parametrize("model", ["text-embedding-3-small", "vllm/text-embedding-3-small"])
@pytest.mark.parametrize(
    "text_input", ["one text", ["one", "two", "three"]], ids=["string", "list"]
)
def test_embeddings_passthrough(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
    model: str,
    text_input: Any,
) -> None:
    result = openai_client(gateway_server, key_holder.plaintext).embeddings.create(
        model=model, input=text_input, encoding_format="float"
    )
    expected = 1 if isinstance(text_input, str) else 3
    assert len(result.data) == expected
    assert all(len(item.embedding) > 0 for item in result.data)
    (event,) = recorded_events(1)
    assert event.provider == model.split("/")[0] if "/" in model else "openai"
    assert event.input_tokens > 0 and event.output_tokens == 0


# --- OpenAI client, translated upstreams ---------------------------------------------------------


@each_call_style
@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("anthropic/claude-sonnet-4-5", "anthropic"),
        ("claude-sonnet-4-5", "anthropic"),
        ("gemini/gemini-2.5-flash", "gemini"),
        ("ollama/qwen3", "ollama"),
    ],
)
def test_openai_client_on_translated_providers_text(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    fake_upstream_settings: FakeUpstream,
    recorded_events: Any,
    model: str,
    provider: str,
    stream: bool,
) -> None:
    answer_text = "Bonjour from the upstream"
    scripted = ScriptedAnswer.text(answer_text, usage={"input_tokens": 11, "output_tokens": 6})
    upstream = {
        "anthropic": fake_upstream_settings,
        "gemini": providers.gemini,
        "ollama": providers.ollama,
    }[provider]
    upstream.queue_answers(scripted)
    params: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
    answer = chat(
        openai_client(gateway_server, key_holder.plaintext), model, stream=stream, **params
    )
    if stream:
        assert answer["text"] == answer_text
        assert answer["finish_reason"] == "stop"
        assert answer["usage"]["completion_tokens"] == 6
    else:
        assert answer["choices"][0]["message"]["content"] == answer_text
        assert answer["usage"]["completion_tokens"] == 6
        assert answer["model"] == model
    (event,) = recorded_events(1)
    assert (event.provider, event.output_tokens, event.status_code) == (provider, 6, 200)
    if provider != "anthropic":
        assert upstream.last_request.valid, upstream.last_request.validation_errors


@each_call_style
@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "ollama/qwen3", "claude-sonnet-4-5"])
def test_openai_client_tools_on_translated_providers(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    fake_upstream_settings: FakeUpstream,
    model: str,
    stream: bool,
) -> None:
    upstream = (
        fake_upstream_settings
        if model.startswith("claude")
        else getattr(providers, model.split("/")[0])
    )
    upstream.queue_answers(TOOL_ANSWER)
    answer = chat(
        openai_client(gateway_server, key_holder.plaintext),
        model,
        stream=stream,
        tools=[WEATHER_TOOL],
    )
    if stream:
        calls = [answer["tool_calls"][index] for index in sorted(answer["tool_calls"])]
        finish = answer["finish_reason"]
        arguments = [json.loads(call["arguments"]) for call in calls]
        names = [call["name"] for call in calls]
    else:
        message = answer["choices"][0]["message"]
        finish = answer["choices"][0]["finish_reason"]
        arguments = [json.loads(call["function"]["arguments"]) for call in message["tool_calls"]]
        names = [call["function"]["name"] for call in message["tool_calls"]]
    assert finish == "tool_calls"
    assert names == ["get_weather", "get_weather"]
    assert arguments == [{"city": "Paris"}, {"city": "Oslo"}]


@pytest.mark.parametrize("model", ["gemini/text-embedding-004", "ollama/nomic-embed-text"])
def test_embeddings_translated(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
    model: str,
) -> None:
    client = openai_client(gateway_server, key_holder.plaintext)
    result = client.embeddings.create(model=model, input=["alpha", "beta"], encoding_format="float")
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) > 0
    # The SDK's default asks for base64 and decodes it itself (its strict validation of the raw
    # answer expects floats, so this client validates loosely).
    loose = openai.OpenAI(base_url=f"{gateway_server.base_url}/v1", api_key=key_holder.plaintext)
    decoded = loose.embeddings.create(model=model, input="alpha")
    assert decoded.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-6)
    events = recorded_events(2)
    assert [event.provider for event in events] == [model.split("/")[0]] * 2
    assert all(event.input_tokens > 0 for event in events)


# --- Anthropic client on other providers ---------------------------------------------------------


@each_call_style
@pytest.mark.parametrize(
    "model", ["openai/gpt-4o", "gemini/gemini-2.5-flash", "ollama/qwen3", "vllm/qwen2.5"]
)
def test_anthropic_client_on_other_providers(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
    model: str,
    stream: bool,
) -> None:
    prefix = model.split("/")[0]
    upstream = providers.openai if prefix in ("openai", "vllm") else getattr(providers, prefix)
    upstream.queue_answers(TOOL_ANSWER)
    client = anthropic_client(gateway_server, key_holder.plaintext)
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": 200,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Weather in Paris and Oslo?"}],
        "tools": [ANTHROPIC_WEATHER_TOOL],
    }
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params)
    assert message.stop_reason == "tool_use"
    tool_uses = [block for block in message.content if block.type == "tool_use"]
    assert [block.input for block in tool_uses] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert not [block for block in message.content if block.type == "text" and not block.text]
    assert upstream.last_request.valid, upstream.last_request.validation_errors
    # The tool results go back in the upstream's format, and the fake checks them.
    upstream.queue_answers(ScriptedAnswer.text("Sunny."))
    follow_up = client.messages.create(
        **{**params, "messages": with_tool_results(params["messages"], message, lambda _: "sunny")}
    )
    assert follow_up.content[0].text == "Sunny."
    assert upstream.last_request.valid, upstream.last_request.validation_errors
    events = recorded_events(2)
    assert {event.provider for event in events} == {prefix}
    assert events[0].output_tokens == 12


def test_count_tokens_on_gemini_and_an_estimate_elsewhere(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
) -> None:
    body = {"messages": [{"role": "user", "content": "Count these words for me please"}]}
    with httpx.Client(base_url=gateway_server.key_url(key_holder.plaintext)) as client:
        gemini = client.post(
            "/v1/messages/count_tokens", json={"model": "gemini/gemini-2.5-flash", **body}
        )
        ollama = client.post("/v1/messages/count_tokens", json={"model": "ollama/qwen3", **body})
    assert gemini.status_code == 200 and gemini.json()["input_tokens"] > 0
    assert "x-gateway-token-count" not in gemini.headers
    assert ollama.status_code == 200 and ollama.json()["input_tokens"] > 0
    assert ollama.headers["x-gateway-token-count"] == "estimate"
    assert recorded_events() == []  # counting is not billed


# --- errors in the client's format ----------------------------------------------------------------


def test_unknown_provider_prefix_is_an_openai_400_listing_the_configured_ones(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(gateway_server, key_holder.plaintext).chat.completions.create(
            model="mistral/large", messages=[{"role": "user", "content": "hi"}]
        )
    error = raised.value.body
    assert error["param"] == "model"
    assert "'mistral'" in error["message"] and "vllm" in error["message"]


def test_unknown_provider_prefix_is_an_anthropic_400_on_messages(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        anthropic_client(gateway_server, key_holder.plaintext).messages.create(
            model="mistral/large", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert "'mistral'" in raised.value.body["error"]["message"]


def test_unparseable_tool_arguments_are_a_400_naming_the_field(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(gateway_server, key_holder.plaintext).chat.completions.create(
            model="gemini/gemini-2.5-flash",
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{not json"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "x"},
            ],
        )
    assert raised.value.body["param"] == "messages.1.tool_calls.0.function.arguments"
    assert providers.gemini.requests == []


def test_n_above_one_to_a_provider_without_it(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(gateway_server, key_holder.plaintext).chat.completions.create(
            model="ollama/qwen3", n=2, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body["param"] == "n"


def test_bad_access_key_on_the_openai_surface_is_openai_shaped(
    gateway_server: GatewayServer, providers: FakeProviders
) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client(gateway_server, "gw_nope_0000000000000000000000").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert set(raised.value.body) >= {"message", "type"}
    assert providers.openai.requests == []


def test_unknown_path_under_v1_is_an_openai_404(
    gateway_server: GatewayServer, transactional_db: None
) -> None:
    response = httpx.get(f"{gateway_server.base_url}/v1/files")
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("No route for GET /v1/files")


def test_models_list_every_provider_as_provider_model(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    ids = [model.id for model in openai_client(gateway_server, key_holder.plaintext).models.list()]
    assert "openai/gpt-4o" in ids
    assert "vllm/gpt-4o" in ids
    assert any(model.startswith("gemini/gemini-") for model in ids)
    assert any(model.startswith("anthropic/claude-") for model in ids)


def test_an_upstream_5xx_on_the_only_leg_is_rewritten_for_the_client(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.gemini.add_fault(HttpError(status=503))
    with pytest.raises(openai.InternalServerError) as raised:
        openai_client(gateway_server, key_holder.plaintext).chat.completions.create(
            model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 503
    assert raised.value.response.headers["x-gateway-provider"] == "gemini"


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-3.5-turbo-instruct", "openai"),
        ("claude-sonnet-4-5", "anthropic"),
        ("ollama/qwen3", "ollama"),
    ],
)
def test_legacy_completions_on_every_kind_of_provider(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    fake_upstream_settings: FakeUpstream,
    recorded_events: Any,
    model: str,
    provider: str,
) -> None:
    upstream = {
        "openai": providers.openai,
        "anthropic": fake_upstream_settings,
        "ollama": providers.ollama,
    }[provider]
    upstream.queue_answers(
        ScriptedAnswer.text("Once upon a time", usage={"input_tokens": 4, "output_tokens": 4}),
        ScriptedAnswer.text("Once upon a time", usage={"input_tokens": 4, "output_tokens": 4}),
    )
    client = openai_client(gateway_server, key_holder.plaintext)
    completion = client.completions.create(model=model, prompt="Tell a story", max_tokens=20)
    assert completion.choices[0].text == "Once upon a time"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    # Streamed chunks carry finish_reason null until the last, which the SDK's strict mode
    # refuses although the real API sends it: this client validates loosely.
    loose = openai.OpenAI(base_url=f"{gateway_server.base_url}/v1", api_key=key_holder.plaintext)
    text = "".join(
        chunk.choices[0].text
        for chunk in loose.completions.create(
            model=model, prompt="Tell a story", max_tokens=20, stream=True
        )
        if chunk.choices
    )
    assert text == "Once upon a time"
    events = recorded_events(2)
    assert [event.provider for event in events] == [provider, provider]


@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "ollama/qwen3", "claude-sonnet-4-5"])
def test_a_data_url_image_reaches_every_provider_in_its_form(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    fake_upstream_settings: FakeUpstream,
    model: str,
) -> None:
    # Claimed as jpeg, really a PNG: the upstream is told what the bytes are.
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG_1PX}"}},
    ]
    answer = chat(
        openai_client(gateway_server, key_holder.plaintext),
        model,
        stream=False,
        messages=[{"role": "user", "content": content}],
    )
    assert answer["choices"][0]["message"]["content"]
    if model.startswith("gemini/"):
        request = providers.gemini.last_request
        assert request.valid, request.validation_errors
        part = request.parsed["contents"][0]["parts"][1]["inlineData"]
        assert (part["mimeType"], part["data"]) == ("image/png", PNG_1PX)
    elif model.startswith("ollama/"):
        request = providers.ollama.last_request
        assert request.valid, request.validation_errors
        assert request.parsed["messages"][-1]["images"] == [PNG_1PX]
    else:
        sent = fake_upstream_settings.requests[-1].json()
        source = sent["messages"][0]["content"][1]["source"]
        assert source == {"type": "base64", "media_type": "image/png", "data": PNG_1PX}


def test_a_url_image_on_a_private_address_is_never_fetched(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    # The fake upstream itself is the bait: a fetch would show up in its records.
    url = f"{providers.openai.base_url}/v1/models"
    content = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(gateway_server, key_holder.plaintext).chat.completions.create(
            model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": content}]
        )
    assert raised.value.body["param"].startswith("messages.0.content.1")
    assert providers.openai.requests == []
    assert providers.gemini.requests == []


def test_a_url_image_passes_through_to_openai_unfetched(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    content = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "https://images.example/cat.png"}},
    ]
    openai_client(gateway_server, key_holder.plaintext).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": content}]
    )
    sent = providers.openai.last_request.parsed
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == "https://images.example/cat.png"


def test_a_translated_stream_error_reaches_each_client_in_its_format(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.gemini.add_fault(ProviderStreamError(after_events=1, status=500))
    with pytest.raises(openai.APIError):
        chat(
            openai_client(gateway_server, key_holder.plaintext),
            "gemini/gemini-2.5-flash",
            stream=True,
        )
    providers.gemini.add_fault(ProviderStreamError(after_events=1, status=500))
    events = []
    with httpx.stream(
        "POST",
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json={
            "model": "gemini/gemini-2.5-flash",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"anthropic-version": "2023-06-01"},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        events = [
            line.removeprefix("event: ")
            for line in response.iter_lines()
            if line.startswith("event: ")
        ]
    assert events[0] == "message_start"
    assert events[-1] == "error"


def test_a_translated_429_keeps_its_retry_hint(
    gateway_server: GatewayServer, key_holder: KeyHolder, providers: FakeProviders
) -> None:
    providers.gemini.add_fault(HttpError(status=429, headers={"retry-after": "11"}))
    with pytest.raises(anthropic.RateLimitError) as raised:
        anthropic_client(gateway_server, key_holder.plaintext).messages.create(
            model="gemini/gemini-2.5-flash",
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert raised.value.response.headers["retry-after"] == "11"
    assert raised.value.body["error"]["type"] == "rate_limit_error"


@each_call_style
@pytest.mark.parametrize("model", ["gpt-4o", "gemini/gemini-2.5-flash"])
def test_reasoning_tokens_are_recorded_where_reported(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    providers: FakeProviders,
    recorded_events: Any,
    model: str,
    stream: bool,
) -> None:
    upstream = providers.gemini if model.startswith("gemini/") else providers.openai
    upstream.queue_answers(
        ScriptedAnswer.text(
            "Thought about it.", usage={"input_tokens": 8, "output_tokens": 30}, reasoning_tokens=20
        )
    )
    params: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
    chat(openai_client(gateway_server, key_holder.plaintext), model, stream=stream, **params)
    (event,) = recorded_events(1)
    assert event.reasoning_tokens == 20
    assert event.output_tokens >= 20
