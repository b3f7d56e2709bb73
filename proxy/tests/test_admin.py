"""Admin pages of the proxy: the model map and the circuit breakers (named by credential)."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from accounts.models import ProviderCredential, User
from accounts.services import provider_credential_set
from proxy.admin import CircuitOwner, circuit_rows
from proxy.circuit import circuit_name, circuits
from proxy.models import ModelMapping
from proxy.routing import model_map

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in() -> Client:
    admin = User.objects.create_superuser(email="root@example.com", password="pw-123456789")
    client = Client()
    client.force_login(admin)
    return client


def _table_rows(body: str, heading: str) -> list[list[str]]:
    """The cells (tags stripped) of each body row of the table after ``heading``."""
    table = body.split(f"<h2>{heading}", 1)[1].split("</table>", 1)[0]
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td>(.*?)</td>", row)
        ]
        for row in re.findall(r"<tr><td>.*?</tr>", table)
    ]


def test_model_map_is_seeded_and_listed(admin_client_logged_in: Client) -> None:
    assert ModelMapping.objects.filter(anthropic_model="claude-sonnet-4-5").exists()
    page = admin_client_logged_in.get(reverse("admin:proxy_modelmapping_changelist"))
    assert page.status_code == 200
    assert b"global.anthropic.claude-sonnet-4-5-20250929-v1:0" in page.content
    assert reverse("admin:proxy_circuits").encode() in page.content


def test_editing_the_map_takes_effect_in_this_process(admin_client_logged_in: Client) -> None:
    mapping = ModelMapping.objects.get(anthropic_model="claude-haiku-4-5")
    # A map this process loaded a moment ago (fresh for another 30 s).
    model_map._map = {"claude-haiku-4-5": mapping.bedrock_model_id}
    model_map._loaded_at = time.monotonic()
    url = reverse("admin:proxy_modelmapping_change", args=[mapping.pk])
    response = admin_client_logged_in.post(
        url,
        {
            "anthropic_model": "claude-haiku-4-5",
            "bedrock_model_id": "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    assert model_map._loaded_at < 0  # the next lookup reloads the map
    assert ModelMapping.objects.get(pk=mapping.pk).bedrock_model_id.startswith("eu.")


def test_circuit_page_shows_open_circuits(admin_client_logged_in: Client) -> None:
    async_to_sync(circuits.record_failure)("anthropic:abcdef", reason="anthropic_429", retry_at=4e9)
    try:
        page = admin_client_logged_in.get(reverse("admin:proxy_circuits"))
    finally:
        circuits.reset()
    assert page.status_code == 200
    body = page.content.decode()
    assert "anthropic:abcdef" in body and "anthropic_429" in body and "open" in body


def test_circuit_page_shows_the_time_left_not_time_open(
    admin_client_logged_in: Client, settings: Any
) -> None:
    settings.GATEWAY_CIRCUIT_MAX_OPEN_SECONDS = 3600
    # Opened a moment ago, until a 429's reset two minutes from now.
    async_to_sync(circuits.record_failure)(
        "anthropic:abcdef", reason="anthropic_429", retry_at=time.time() + 120
    )
    async_to_sync(circuits.record_failure)("anthropic:probing", reason="anthropic_529", retry_at=1)
    try:
        page = admin_client_logged_in.get(reverse("admin:proxy_circuits"))
    finally:
        circuits.reset()
    body = page.content.decode()
    assert "Open for" not in body
    assert "Seconds until probe" in body
    rows = {row[-1]: row for row in _table_rows(body, "This worker")}
    assert 110 <= float(rows["anthropic:abcdef"][3]) <= 120
    assert rows["anthropic:probing"][3] == "–"


def test_circuit_rows_rename_the_remaining_time() -> None:
    owner = CircuitOwner("OpenAI", "team (global)", credential_id=1)
    rows = circuit_rows(
        [
            {"name": "openai:a", "state": "open", "open_for_seconds": 12.5, "reason": "x"},
            {"name": "openai:b", "state": "half_open", "open_for_seconds": 0.0, "reason": "y"},
        ],
        {"openai:a": [owner]},
    )
    assert rows == [
        {
            "name": "openai:a",
            "state": "open",
            "seconds_left": 12.5,
            "reason": "x",
            "owners": [owner],
        },
        {
            "name": "openai:b",
            "state": "half_open",
            "seconds_left": None,
            "reason": "y",
            "owners": [CircuitOwner("OpenAI", "no stored credential (deleted or changed since)")],
        },
    ]


def test_circuit_page_needs_staff(client: Any) -> None:
    response = client.get(reverse("admin:proxy_circuits"))
    assert response.status_code == 302 and "/login/" in response["location"]


OPENAI_SECRET = "sk-openai-circuit-0123456789"
GEMINI_SECRET = "gemini-circuit-0123456789"
VLLM_SECRET = "vllm-circuit-0123456789"
BEDROCK_SECRET = "bedrock-circuit-0123456789"
ANTHROPIC_SECRET = "sk-ant-stored-circuit-0123456789"
OLLAMA_URL = "http://gpu-box.internal:11434"


def test_circuit_page_names_every_credential_and_its_state(
    admin_client_logged_in: Client, settings: Any
) -> None:
    """Circuits of several providers, each named by the stored credential whose secret (or, for
    a keyless Ollama, endpoint) it hashes; a credential whose circuit never saw a failure is
    listed closed; circuits of the client's own key or of no credential say so."""
    settings.GATEWAY_OLLAMA_BASE_URL = "http://127.0.0.1:11434"
    user = User.objects.create_user(email="dev@example.com")
    provider_credential_set(provider="openai", secret=OPENAI_SECRET, label="team openai")
    provider_credential_set(provider="gemini", secret=GEMINI_SECRET, user=user)
    provider_credential_set(provider="ollama", endpoint_url=OLLAMA_URL, label="gpu box")
    provider_credential_set(
        provider="generic",
        name="vllm",
        secret=VLLM_SECRET,
        endpoint_url="http://vllm.internal:8000/v1",
        label="vllm cluster",
    )
    provider_credential_set(
        provider="bedrock", secret=BEDROCK_SECRET, region="us-east-1", label="aws prod"
    )
    provider_credential_set(provider="anthropic", secret=ANTHROPIC_SECRET, label="fallback key")
    gemini_id = ProviderCredential.objects.get(provider="gemini").id
    # The names the request flow gives these circuits (proxy.planning.Leg.circuit_credential).
    opened = {
        circuit_name("openai", OPENAI_SECRET): "openai_429",
        circuit_name("gemini", GEMINI_SECRET): "gemini_503",
        circuit_name("ollama", OLLAMA_URL): "ollama_connect",
        circuit_name("vllm", VLLM_SECRET): "vllm_500",
        circuit_name("bedrock", BEDROCK_SECRET): "bedrock_throttled",
        circuit_name("anthropic", "sk-ant-a-clients-own-key"): "anthropic_529",
        circuit_name("ollama", "ollama"): "ollama_connect",
    }
    for name, reason in opened.items():
        async_to_sync(circuits.record_failure)(name, reason=reason, retry_at=time.time() + 600)
    try:
        page = admin_client_logged_in.get(reverse("admin:proxy_circuits"))
    finally:
        circuits.reset()
    assert page.status_code == 200
    body = page.content.decode()
    stored = [row[:3] for row in _table_rows(body, "Stored credentials")]
    assert stored == [
        ["Anthropic", "fallback key (global)", "closed"],
        ["AWS Bedrock", "aws prod (global)", "open"],
        ["Generic OpenAI-compatible server vllm", "vllm cluster (global)", "open"],
        ["Google Gemini", f"#{gemini_id} (user dev@example.com)", "open"],
        ["Ollama", "gpu box (global)", "open"],
        ["OpenAI", "team openai (global)", "open"],
    ]
    worker = {row[-1]: (row[0], row[1], row[2], row[4]) for row in _table_rows(body, "This worker")}
    assert worker == {
        circuit_name("openai", OPENAI_SECRET): (
            "OpenAI",
            "team openai (global)",
            "open",
            "openai_429",
        ),
        circuit_name("gemini", GEMINI_SECRET): (
            "Google Gemini",
            f"#{gemini_id} (user dev@example.com)",
            "open",
            "gemini_503",
        ),
        circuit_name("ollama", OLLAMA_URL): (
            "Ollama",
            "gpu box (global)",
            "open",
            "ollama_connect",
        ),
        circuit_name("vllm", VLLM_SECRET): (
            "Generic OpenAI-compatible server vllm",
            "vllm cluster (global)",
            "open",
            "vllm_500",
        ),
        circuit_name("bedrock", BEDROCK_SECRET): (
            "AWS Bedrock",
            "aws prod (global)",
            "open",
            "bedrock_throttled",
        ),
        circuit_name("anthropic", "sk-ant-a-clients-own-key"): (
            "Anthropic",
            "a client's own credential",
            "open",
            "anthropic_529",
        ),
        circuit_name("ollama", "ollama"): (
            "Ollama",
            "none: GATEWAY_OLLAMA_BASE_URL (http://127.0.0.1:11434)",
            "open",
            "ollama_connect",
        ),
    }
    for secret in (OPENAI_SECRET, GEMINI_SECRET, VLLM_SECRET, BEDROCK_SECRET, ANTHROPIC_SECRET):
        assert secret not in body
