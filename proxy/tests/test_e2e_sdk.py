"""End to end: the official anthropic SDK → the gateway under uvicorn → the fake upstreams.

Each scenario runs on the direct path and on every fallback path (InvokeModel and Converse,
streamed and not), and the SDK's results must be identical apart from the message id.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from accounts.models import ProviderCredential
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import Delay, DropConnection, HttpError
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_e2e_support import PNG_1PX, each_call_style

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BEDROCK_MODEL = "global.anthropic.claude-sonnet-4-6"
SIGNATURE = "EqQBCkgIARABGAIiQL2" + "x" * 40

TEXT = ScriptedAnswer.text(
    "Paris is the capital of France.",
    usage={"input_tokens": 21, "output_tokens": 9},
)
TOOL_USE = ScriptedAnswer(
    content=[
        {"type": "text", "text": "Let me check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"city": "Paris", "unit": "celsius"},
        },
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 40, "output_tokens": 31},
)
THINKING = ScriptedAnswer(
    content=[
        {
            "type": "thinking",
            "thinking": "The user wants a sum. 2 + 2 = 4.",
            "signature": SIGNATURE,
        },
        {"type": "text", "text": "4"},
    ],
    usage={"input_tokens": 15, "output_tokens": 50},
)
CACHED = ScriptedAnswer.text(
    "Cached answer.",
    usage={
        "input_tokens": 12,
        "output_tokens": 4,
        "cache_read_input_tokens": 1800,
        "cache_creation_input_tokens": 200,
    },
)

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    }
]

SCENARIOS: dict[str, tuple[ScriptedAnswer, dict[str, Any]]] = {
    "text": (TEXT, {"messages": [{"role": "user", "content": "Capital of France?"}]}),
    "tool_use": (
        TOOL_USE,
        {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": TOOLS},
    ),
    "tool_result_round_trip": (
        TEXT,
        {
            "tools": TOOLS,
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": TOOL_USE.content},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                            "content": "18°C and sunny",
                        }
                    ],
                },
            ],
        },
    ),
    "thinking": (
        THINKING,
        {
            "messages": [{"role": "user", "content": "2+2?"}],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        },
    ),
    "cached_system": (
        CACHED,
        {
            "system": [
                {
                    "type": "text",
                    "text": "You are terse. " * 50,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "messages": [{"role": "user", "content": "Hi"}],
        },
    ),
    "image": (
        TEXT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": PNG_1PX,
                            },
                        },
                        {"type": "text", "text": "What is in this image?"},
                    ],
                }
            ]
        },
    ),
}


def _sdk(gateway: GatewayServer, key: str, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.key_url(key), api_key="sk-ant-client-key", max_retries=0, **kwargs
    )


def _call(client: anthropic.Anthropic, stream: bool, params: dict[str, Any]) -> Any:
    params = {"model": MODEL, "max_tokens": 2048, **params}
    if stream:
        with client.messages.stream(**params) as events:
            return events.get_final_message()
    return client.messages.create(**params)


def _comparable(message: Any) -> dict[str, Any]:
    data = message.model_dump()
    data.pop("id")
    return data


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream, settings: Any) -> FakeUpstream:
    settings.GATEWAY_ANTHROPIC_FIRST_BYTE_TIMEOUT = 1.0
    return fake_upstream_settings


def _set_mode(mode: str) -> None:
    from accounts.keycache import invalidate_key_metadata

    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
    invalidate_key_metadata()


FALLBACKS = [
    pytest.param("invoke", HttpError(status=529), "anthropic_529", id="invoke-529"),
    pytest.param("converse", HttpError(status=529), "anthropic_529", id="converse-529"),
    pytest.param("invoke", HttpError(status=500), "anthropic_500", id="invoke-500"),
    pytest.param("converse", HttpError(status=503), "anthropic_503", id="converse-503"),
]


@each_call_style
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_direct_and_fallback_answers_are_identical(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    recorded_events: Any,
    scenario: str,
    stream: bool,
) -> None:
    answer, params = SCENARIOS[scenario]
    fake.answer = answer
    client = _sdk(gateway_server, key_holder.plaintext)

    direct = _call(client, stream, params)
    assert direct.content  # the scripted answer came through
    results = {"direct": _comparable(direct)}
    for mode in ("invoke", "converse"):
        _set_mode(mode)
        fake.add_fault("anthropic", HttpError(status=529))
        raw = (
            client.messages.with_raw_response.create(
                **{"model": MODEL, "max_tokens": 2048, **params}
            )
            if not stream
            else None
        )
        if raw is not None:
            assert raw.headers["x-gateway-provider"] == "bedrock"
            assert raw.headers["x-gateway-fallback-reason"] == "anthropic_529"
            results[mode] = _comparable(raw.parse())
        else:
            results[mode] = _comparable(_call(client, stream, params))
    assert results["invoke"] == results["direct"]
    assert results["converse"] == results["direct"]

    bedrock_calls = fake.requests_to("bedrock")
    assert {request.model_id for request in bedrock_calls} == {BEDROCK_MODEL}
    assert all(
        request.header("authorization") == "Bearer bedrock-api-key-0123456789"
        for request in bedrock_calls
    )

    events = recorded_events()
    assert [event.provider for event in events] == ["anthropic", "bedrock", "bedrock"]
    expected = answer.full_usage()
    for event in events:
        assert event.input_tokens == expected["input_tokens"]
        assert event.output_tokens == expected["output_tokens"]
        assert event.cache_read_tokens == expected["cache_read_input_tokens"]
        assert event.cache_write_tokens == expected["cache_creation_input_tokens"]
        assert event.requested_model == MODEL
        assert event.streamed is stream
        assert event.user_id == key_holder.user.id and event.access_key_id == key_holder.key_id
    assert [event.fallback_reason for event in events] == ["", "anthropic_529", "anthropic_529"]
    assert events[1].upstream_model == BEDROCK_MODEL


@pytest.mark.parametrize(("mode", "fault", "reason"), FALLBACKS)
@each_call_style
def test_each_retryable_status_falls_back(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    mode: str,
    fault: HttpError,
    reason: str,
    stream: bool,
) -> None:
    _set_mode(mode)
    fake.answer = TEXT
    fake.add_fault("anthropic", fault)
    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages?beta=true",
        json={
            "model": MODEL,
            "max_tokens": 100,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["x-gateway-provider"] == "bedrock"
    assert response.headers["x-gateway-fallback-reason"] == reason
    if stream:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "event: message_stop" in response.text
    else:
        assert response.json()["content"][0]["text"] == TEXT.content[0]["text"]
        assert response.json()["model"] == MODEL


def test_connect_error_falls_back(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
) -> None:
    settings.GATEWAY_ANTHROPIC_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    fake.answer = TEXT
    raw = _sdk(gateway_server, key_holder.plaintext).messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-gateway-fallback-reason"] == "connect_error"
    assert raw.parse().content[0].text == TEXT.content[0]["text"]


def test_dropped_connection_falls_back(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.answer = TEXT
    fake.add_fault("anthropic", DropConnection())
    raw = _sdk(gateway_server, key_holder.plaintext).messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-gateway-provider"] == "bedrock"
    assert raw.headers["x-gateway-fallback-reason"] == "upstream_error"


def test_first_byte_timeout_falls_back_for_streams(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.answer = TEXT
    fake.add_fault("anthropic", Delay(delay=3.0))
    client = _sdk(gateway_server, key_holder.plaintext)
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}]
    ) as response:
        assert response.headers["x-gateway-fallback-reason"] == "first_byte_timeout"
        body = response.read().decode()
    assert "Paris is the capital" in body.replace('"', "").replace("\\", "") or "Paris" in body


def test_a_429_with_retry_after_opens_the_circuit(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.answer = TEXT
    fake.add_fault("anthropic", HttpError(status=429, headers={"retry-after": "120"}))
    client = _sdk(gateway_server, key_holder.plaintext)
    first = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert first.headers["x-gateway-fallback-reason"] == "anthropic_429"
    second = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "again"}]
    )
    assert second.headers["x-gateway-fallback-reason"] == "circuit_open"
    # No wasted round trip: Anthropic saw only the first request.
    assert len(fake.requests_to("anthropic")) == 1

    other_client = anthropic.Anthropic(
        base_url=gateway_server.key_url(key_holder.plaintext),
        api_key="another-credential",
        max_retries=0,
    )
    third = other_client.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert third.headers["x-gateway-provider"] == "anthropic"  # circuits are per credential


def test_no_mapping_returns_the_original_error_and_says_why(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.add_fault(
        "anthropic",
        HttpError(status=529, message="Overloaded right now", headers={"request-id": "req_abc"}),
    )
    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json={
            "model": "claude-unknown-9",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": "sk-ant-client-key"},
    )
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    assert response.json()["error"]["message"] == "Overloaded right now"
    assert response.headers["request-id"] == "req_abc"
    assert response.headers["x-gateway-no-fallback-reason"] == "no_model_mapping"
    assert not fake.requests_to("bedrock")


def test_fallback_model_of_the_credential_serves_unmapped_names(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    ProviderCredential.objects.filter(provider="bedrock").update(
        fallback_model="us.anthropic.claude-x"
    )
    from accounts.keycache import invalidate_key_metadata

    invalidate_key_metadata()
    fake.answer = TEXT
    fake.add_fault("anthropic", HttpError(status=503))
    raw = _sdk(gateway_server, key_holder.plaintext).messages.with_raw_response.create(
        model="claude-unknown-9", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().model == "claude-unknown-9"
    assert fake.requests_to("bedrock")[0].model_id == "us.anthropic.claude-x"


def test_without_bedrock_credential_the_anthropic_error_goes_back(
    gateway_server: GatewayServer, key_holder: KeyHolder, fake: FakeUpstream
) -> None:
    fake.add_fault("anthropic", HttpError(status=429, headers={"retry-after": "7"}))
    with pytest.raises(anthropic.RateLimitError) as raised:
        _sdk(gateway_server, key_holder.plaintext).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.response.headers["x-gateway-no-fallback-reason"] == "no_bedrock_credential"


def test_both_upstreams_failing_gives_one_anthropic_error(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.add_fault("anthropic", HttpError(status=529))
    fake.add_fault("bedrock", HttpError(status=503, error_type="ServiceUnavailableException"))
    with pytest.raises(anthropic.APIStatusError) as raised:
        _sdk(gateway_server, key_holder.plaintext).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 529
    assert raised.value.body["error"]["type"] == "overloaded_error"
    assert raised.value.response.headers["x-gateway-fallback-error"] == "529 overloaded_error"


def test_bedrock_error_used_when_anthropic_never_answered(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    settings: Any,
) -> None:
    settings.GATEWAY_ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
    fake.add_fault("bedrock", HttpError(status=429, error_type="ThrottlingException"))
    with pytest.raises(anthropic.RateLimitError) as raised:
        _sdk(gateway_server, key_holder.plaintext).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.response.headers["retry-after"]
    assert raised.value.response.headers["x-gateway-provider"] == "bedrock"


def test_count_tokens_direct_and_fallback(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    fake.count_tokens_result = 321
    client = _sdk(gateway_server, key_holder.plaintext)
    params = {"model": MODEL, "messages": [{"role": "user", "content": "count me"}]}
    direct = client.messages.with_raw_response.count_tokens(**params)
    assert direct.parse().input_tokens == 321
    assert direct.headers["x-gateway-provider"] == "anthropic"

    fake.add_fault("anthropic", HttpError(status=529))
    fallback = client.messages.with_raw_response.count_tokens(**params)
    assert fallback.parse().input_tokens == 321
    assert fallback.headers["x-gateway-provider"] == "bedrock"
    # Bedrock CountTokens takes the base model id, without the inference-profile prefix.
    assert fake.requests_to("bedrock")[0].model_id == "anthropic.claude-sonnet-4-6"


def test_models_direct_and_fallback(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
) -> None:
    client = _sdk(gateway_server, key_holder.plaintext)
    direct = [model.id for model in client.models.list()]
    assert "claude-sonnet-4-5-20250929" in direct
    fake.set_default_fault("anthropic", HttpError(status=503))
    fallback = [model.id for model in client.models.list()]
    assert MODEL in fallback and "claude-haiku-4-5" in fallback
