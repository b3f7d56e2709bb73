"""``GET /v1/models`` lists exactly what the key can use, on both surfaces: planning decides which
providers and Claude models are reachable (Ollama needs no credential; Claude needs an Anthropic
credential or a Bedrock fallback), against fake upstreams that are real local servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from accounts.keycache import invalidate_key_metadata
from accounts.services import provider_credential_set
from proxy.catalog import forget_model_lists
from proxy.models import ModelAlias, ModelMapping
from proxy.routing import model_aliases
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.fixtures import FakeProviders
from proxy.tests.conftest import GatewayServer, KeyHolder

OPENAI_KEY = "sk-openai-upstream-0123456789"
ANTHROPIC_KEY = "sk-ant-stored-0123456789"
CLIENT_KEY = "sk-ant-client-credential"
OLLAMA_MODEL = "ollama/llama3.1:latest"


@pytest.fixture(autouse=True)
def _fresh_lists() -> Iterator[None]:
    # The fakes' ports differ from one test session to the next; the lists are cached a while.
    forget_model_lists()
    model_aliases.invalidate()
    yield
    forget_model_lists()
    model_aliases.invalidate()


@pytest.fixture
def upstreams(
    fake_providers_settings: FakeProviders,
    fake_upstream_settings: FakeUpstream,
    key_holder: KeyHolder,
) -> FakeProviders:
    return fake_providers_settings


def _openai_ids(gateway: GatewayServer, key: str) -> list[str]:
    response = httpx.get(
        f"{gateway.base_url}/v1/models", headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return [model["id"] for model in response.json()["data"]]


def _anthropic_list(
    gateway: GatewayServer, key: str, *, client_credential: str = ""
) -> httpx.Response:
    headers = {"anthropic-version": "2023-06-01"}
    if client_credential:
        headers["x-api-key"] = client_credential
    response = httpx.get(f"{gateway.key_url(key)}/v1/models", headers=headers)
    assert response.status_code == 200, response.text
    return response


def _ids(response: httpx.Response) -> list[str]:
    return [model["id"] for model in response.json()["data"]]


def _claude(ids: list[str]) -> list[str]:
    return [model for model in ids if model.removeprefix("anthropic/").startswith("claude")]


def test_ollama_is_listed_without_a_stored_credential(
    gateway_server: GatewayServer, key_holder: KeyHolder, upstreams: FakeProviders
) -> None:
    # Planning sends ollama/<model> to GATEWAY_OLLAMA_BASE_URL with no credential at all.
    assert OLLAMA_MODEL in _openai_ids(gateway_server, key_holder.plaintext)
    anthropic_ids = _ids(_anthropic_list(gateway_server, key_holder.plaintext))
    assert OLLAMA_MODEL in anthropic_ids
    # One listing, cached: the second surface did not ask again.
    assert [request.path for request in upstreams.ollama.requests] == ["/api/tags"]


def test_claude_models_are_not_listed_when_nothing_reaches_them(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    upstreams: FakeProviders,
    fake_upstream_settings: FakeUpstream,
) -> None:
    """No Anthropic credential (client's or stored) and no Bedrock credential: a request for a
    Claude model could only be refused, so none is listed; the other providers still are."""
    provider_credential_set(provider="openai", secret=OPENAI_KEY)
    invalidate_key_metadata()
    assert ModelMapping.objects.exists()  # the map alone reaches nothing
    openai_ids = _openai_ids(gateway_server, key_holder.plaintext)
    assert _claude(openai_ids) == []
    assert "openai/gpt-4o" in openai_ids
    anthropic_ids = _ids(_anthropic_list(gateway_server, key_holder.plaintext))
    assert _claude(anthropic_ids) == []
    assert "openai/gpt-4o" in anthropic_ids
    assert fake_upstream_settings.requests == []


def test_a_bedrock_fallback_lists_the_mapped_claude_models(
    gateway_server: GatewayServer, key_holder: KeyHolder, upstreams: FakeProviders
) -> None:
    provider_credential_set(provider="bedrock", secret="bedrock-api-key-0123456789")
    invalidate_key_metadata()
    mapped = sorted(ModelMapping.objects.values_list("anthropic_model", flat=True))
    openai_ids = _openai_ids(gateway_server, key_holder.plaintext)
    assert _claude(openai_ids) == [f"anthropic/{name}" for name in mapped]
    response = _anthropic_list(gateway_server, key_holder.plaintext)
    assert _claude(_ids(response)) == mapped
    assert response.headers["x-gateway-provider"] == "bedrock"


def test_a_stored_anthropic_key_lists_anthropics_models_on_the_openai_surface(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    upstreams: FakeProviders,
    fake_upstream_settings: FakeUpstream,
) -> None:
    provider_credential_set(provider="anthropic", secret=ANTHROPIC_KEY)
    invalidate_key_metadata()
    openai_ids = _openai_ids(gateway_server, key_holder.plaintext)
    assert "anthropic/claude-sonnet-4-5-20250929" in openai_ids
    listed = [
        (request.path, request.header("x-api-key")) for request in fake_upstream_settings.requests
    ]
    assert listed == [("/v1/models", ANTHROPIC_KEY)]


def test_the_clients_own_credential_gets_anthropics_list_plus_the_other_providers(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    upstreams: FakeProviders,
    fake_upstream_settings: FakeUpstream,
) -> None:
    ids = _ids(_anthropic_list(gateway_server, key_holder.plaintext, client_credential=CLIENT_KEY))
    assert "claude-sonnet-4-5-20250929" in ids
    assert OLLAMA_MODEL in ids
    # The same key on the OpenAI surface brings no Anthropic credential.
    assert _claude(_openai_ids(gateway_server, key_holder.plaintext)) == []


def test_an_alias_is_listed_only_when_its_target_is_reachable(
    gateway_server: GatewayServer, key_holder: KeyHolder, upstreams: FakeProviders
) -> None:
    ModelAlias.objects.create(alias="local", target="ollama/llama3.1:latest")
    ModelAlias.objects.create(alias="cloud", target="openai/gpt-4o")
    ModelAlias.objects.create(alias="smart", target="anthropic/claude-sonnet-4-5")
    ids = _openai_ids(gateway_server, key_holder.plaintext)
    assert "local" in ids
    assert "cloud" not in ids and "smart" not in ids
    provider_credential_set(provider="openai", secret=OPENAI_KEY)
    invalidate_key_metadata()
    assert {"local", "cloud"} <= set(_openai_ids(gateway_server, key_holder.plaintext))
    anthropic_ids = _ids(
        _anthropic_list(gateway_server, key_holder.plaintext, client_credential=CLIENT_KEY)
    )
    assert {"local", "cloud", "smart"} <= set(anthropic_ids)
