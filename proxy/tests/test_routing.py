"""Choosing the Bedrock model: the map, the credential's fallback, the family, output limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from proxy.routing import MappedModel, model_family, newest_in_family
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.translation.limits import clamp_output_tokens


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("claude-opus-5-5", "opus"),
        ("claude-opus-4-1-20250805", "opus"),
        ("claude-sonnet-4-6[1m]", "sonnet"),
        ("claude-3-7-sonnet-latest", "sonnet"),
        ("claude-3-5-haiku-20241022", "haiku"),
        ("Claude-Haiku-4-5", "haiku"),
        ("gpt-4o", None),
        ("claude-instant-1", None),
        ("my-opus-model", None),
    ],
)
def test_model_family(name: str, family: str | None) -> None:
    assert model_family(name) == family


def test_newest_in_family_picks_the_highest_version() -> None:
    mapping = {
        "claude-opus-4-1": MappedModel("us.opus-4-1"),
        "claude-opus-4-6": MappedModel("global.opus-4-6", 128000),
        "claude-opus-4-5-20251101": MappedModel("global.opus-4-5"),
        "claude-sonnet-4-6": MappedModel("global.sonnet-4-6"),
        "claude-3-5-haiku-latest": MappedModel("us.haiku-3-5"),
    }
    assert newest_in_family(mapping, "claude-opus-5-5") == MappedModel("global.opus-4-6", 128000)
    assert newest_in_family(mapping, "claude-haiku-9") == MappedModel("us.haiku-3-5")
    assert newest_in_family(mapping, "gpt-5") is None
    assert newest_in_family({}, "claude-opus-5-5") is None


@pytest.mark.parametrize(
    ("body", "limit", "expected"),
    [
        ({"max_tokens": 128000}, 64000, {"max_tokens": 64000}),
        ({"max_tokens": 1000}, 64000, {"max_tokens": 1000}),
        ({"max_tokens": 128000}, None, {"max_tokens": 128000}),
        (
            {"max_tokens": 128000, "thinking": {"type": "enabled", "budget_tokens": 100000}},
            64000,
            {"max_tokens": 64000, "thinking": {"type": "enabled", "budget_tokens": 63999}},
        ),
        (
            {"max_tokens": 128000, "thinking": {"type": "enabled", "budget_tokens": 2048}},
            64000,
            {"max_tokens": 64000, "thinking": {"type": "enabled", "budget_tokens": 2048}},
        ),
        (
            {"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": 16000}},
            1000,
            {"max_tokens": 1000},
        ),
        (
            {"max_tokens": 128000, "thinking": {"type": "adaptive"}},
            32000,
            {"max_tokens": 32000, "thinking": {"type": "adaptive"}},
        ),
        ({"max_tokens": "lots"}, 10, {"max_tokens": "lots"}),
    ],
)
def test_clamp_output_tokens(
    body: dict[str, Any], limit: int | None, expected: dict[str, Any]
) -> None:
    original = dict(body)
    assert clamp_output_tokens(body, limit) == expected
    assert body == original  # the client's body is never modified


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["invoke", "converse"])
def test_unmapped_new_model_falls_back_to_newest_of_its_family_within_limits(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake_upstream_settings: FakeUpstream,
    mode: str,
) -> None:
    from accounts.keycache import invalidate_key_metadata
    from accounts.models import ProviderCredential
    from proxy.models import ModelMapping

    ProviderCredential.objects.filter(provider="bedrock").update(api_mode=mode)
    ModelMapping.objects.filter(anthropic_model="claude-opus-4-6").update(max_output_tokens=32000)
    invalidate_key_metadata()
    fake = fake_upstream_settings
    fake.answer = ScriptedAnswer.text("from the newest opus", usage={"input_tokens": 3})
    fake.add_fault("anthropic", HttpError(status=529))
    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json={
            "model": "claude-opus-5-5",
            "max_tokens": 128000,
            "thinking": {"type": "adaptive"},
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": "sk-ant-client"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "claude-opus-5-5"
    (bedrock_request,) = fake.requests_to("bedrock")
    assert bedrock_request.model_id == "global.anthropic.claude-opus-4-6-v1"
    sent = bedrock_request.json()
    max_tokens = sent["max_tokens"] if mode == "invoke" else sent["inferenceConfig"]["maxTokens"]
    assert max_tokens == 32000


@pytest.mark.django_db(transaction=True)
def test_family_fallback_can_be_turned_off(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake_upstream_settings: FakeUpstream,
    settings: Any,
) -> None:
    settings.GATEWAY_FALLBACK_SAME_FAMILY = False
    fake_upstream_settings.add_fault("anthropic", HttpError(status=529))
    response = httpx.post(
        gateway_server.key_url(key_holder.plaintext) + "/v1/messages",
        json={
            "model": "claude-opus-5-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": "sk-ant-client"},
    )
    assert response.status_code == 529
    assert response.headers["x-gateway-no-fallback-reason"] == "no_model_mapping"
