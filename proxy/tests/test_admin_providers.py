"""Admin pieces of the providers: model aliases checked when saved, and the credential test
action that asks each provider for its model list."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from accounts.services import provider_credential_set
from proxy.models import ModelAlias
from proxy.testing.faults import HttpError

pytestmark = pytest.mark.django_db


def _target_errors(response: Any) -> list[str]:
    return list(response.context["adminform"].form.errors.get("target", []))


def _add_alias(client: Client, **fields: str) -> Any:
    return client.post(
        reverse("admin:proxy_modelalias_add"),
        {"alias": "", "target": "", "description": "", "enabled": "on", **fields},
    )


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("gpt-4.1", "Write provider/model"),
        ("openai/", "Write provider/model"),
        ("mistral/large", "Unknown provider 'mistral'"),
        ("fast", "Write provider/model"),
    ],
)
def test_an_alias_with_a_bad_target_is_a_form_error(
    admin_client: Client, target: str, error: str
) -> None:
    response = _add_alias(admin_client, alias="fast", target=target)
    assert response.status_code == 200
    assert error in " ".join(_target_errors(response))
    assert not ModelAlias.objects.exists()


def test_an_alias_to_a_generic_server_needs_its_credential(admin_client: Client) -> None:
    refused = _add_alias(admin_client, alias="local", target="vllm/qwen")
    assert "Unknown provider 'vllm'" in " ".join(_target_errors(refused))
    provider_credential_set(provider="generic", name="vllm", endpoint_url="http://vllm:8000")
    response = _add_alias(admin_client, alias="local", target="vllm/qwen")
    assert response.status_code == 302
    assert ModelAlias.objects.get().target == "vllm/qwen"


def _test_action(client: Client, *credentials: Any) -> list[str]:
    response = client.post(
        reverse("admin:accounts_providercredential_changelist"),
        {"action": "test_credentials", "_selected_action": [c.pk for c in credentials]},
    )
    assert response.status_code == 302
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_test_action_lists_models_or_says_what_failed(
    admin_client: Client,
    fake_providers_settings: Any,
) -> None:
    fakes = fake_providers_settings
    openai, _ = provider_credential_set(provider="openai", secret="sk-test-openai-000000")
    ollama, _ = provider_credential_set(provider="ollama")
    gemini, _ = provider_credential_set(provider="gemini", secret="gemini-key-000000")
    fakes.gemini.add_fault(HttpError(status=403))
    messages = _test_action(admin_client, openai, ollama, gemini)
    by_provider = {message.split(" ")[0]: message for message in messages}
    assert "5 models: " in by_provider["OpenAI"] and "gpt-4o" in by_provider["OpenAI"]
    assert "models" in by_provider["Ollama"]
    assert "answered 403" in by_provider["Google"]
    # The secret is never shown, whatever happened.
    assert not any("sk-test-openai" in message for message in messages)
