"""Admin pages of the proxy: the model map and the circuit breakers."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from accounts.models import User
from proxy.circuit import circuits
from proxy.models import ModelMapping
from proxy.routing import model_map

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in() -> Client:
    admin = User.objects.create_superuser(email="root@example.com", password="pw-123456789")
    client = Client()
    client.force_login(admin)
    return client


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
    rows = dict(re.findall(r"<tr><td>(anthropic:\w+)</td><td>\w+</td><td>([^<]*)</td>", body))
    assert 110 <= float(rows["anthropic:abcdef"]) <= 120
    assert rows["anthropic:probing"] == "–"


def test_circuit_rows_rename_the_remaining_time() -> None:
    from proxy.admin import circuit_rows

    rows = circuit_rows(
        [
            {"name": "a", "state": "open", "open_for_seconds": 12.5, "reason": "x"},
            {"name": "b", "state": "half_open", "open_for_seconds": 0.0, "reason": "y"},
        ]
    )
    assert rows == [
        {"name": "a", "state": "open", "seconds_left": 12.5, "reason": "x"},
        {"name": "b", "state": "half_open", "seconds_left": None, "reason": "y"},
    ]


def test_circuit_page_needs_staff(client: Any) -> None:
    response = client.get(reverse("admin:proxy_circuits"))
    assert response.status_code == 302 and "/login/" in response["location"]
