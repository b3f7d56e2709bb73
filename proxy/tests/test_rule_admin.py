"""Routing rules in Django Admin: saved with their targets through the real add form, refused
with the field named when they could not work, and planning follows what was saved."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.services import provider_credential_set
from proxy.models import RoutingRule
from proxy.planning import make_plan
from proxy.rules import RouteRequest
from proxy.testing.metadata import key_metadata, resolved_credential

pytestmark = pytest.mark.django_db(transaction=True)

ADD_URL = "/admin/proxy/routingrule/add/"


def _form(targets: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "cheap",
        "position": "10",
        "enabled": "on",
        "model_pattern": "cheap-*",
        "stream": "any",
        "strategy": "ordered",
        "targets-TOTAL_FORMS": str(len(targets)),
        "targets-INITIAL_FORMS": "0",
        "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "1000",
    }
    data.update(fields)
    for index, target in enumerate(targets):
        values = {"tier": "1", "position": "0", "model": "", "weight": "1", **target}
        for name, value in values.items():
            data[f"targets-{index}-{name}"] = str(value)
    return data


def test_a_rule_saved_in_the_admin_routes_the_next_plan(admin_client: Client) -> None:
    provider_credential_set(provider="openai", secret="sk-openai-0123456789")
    response = admin_client.post(
        ADD_URL,
        _form(
            [
                {"provider": "ollama", "model": "qwen3", "tier": "1"},
                {"provider": "openai", "model": "gpt-4.1-mini", "tier": "2"},
            ]
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = RoutingRule.objects.get(name="cheap")
    assert [(t.provider, t.model, t.tier) for t in rule.targets.all()] == [
        ("ollama", "qwen3", 1),
        ("openai", "gpt-4.1-mini", 2),
    ]

    async def plan_for(model: str) -> list[tuple[str, str]]:
        plan = await make_plan(
            requested_model=model,
            metadata=key_metadata(
                resolved_credential(
                    "openai", id=5, region="", api_mode="", secret="sk-openai-0123456789"
                )
            ),
            surface_wire="openai",
            route=RouteRequest(model=model, headers={}, access_key_id=1, user_id=1, stream=False),
        )
        return [(leg.provider, leg.model) for leg in plan.legs]

    from asgiref.sync import async_to_sync

    assert async_to_sync(plan_for)("cheap-chat") == [
        ("ollama", "qwen3"),
        ("openai", "gpt-4.1-mini"),
    ]
    assert async_to_sync(plan_for)("gpt-4.1") == [("openai", "gpt-4.1")]

    # Deleted in the admin: the default route again, at once.
    deleted = admin_client.post(f"/admin/proxy/routingrule/{rule.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert async_to_sync(plan_for)("cheap-chat") == [("openai", "cheap-chat")]


def _errors(response: Any) -> str:
    assert response.status_code == 200  # the form again, with its errors
    return response.content.decode()


def test_a_bad_glob_is_a_form_error_on_its_field(admin_client: Client) -> None:
    page = _errors(
        admin_client.post(ADD_URL, _form([{"provider": "ollama"}], model_pattern="claude-[os"))
    )
    assert "A [ is not closed" in page
    assert not RoutingRule.objects.exists()


def test_a_provider_without_credential_is_a_form_error(admin_client: Client) -> None:
    page = _errors(admin_client.post(ADD_URL, _form([{"provider": "gemini"}])))
    assert "No enabled gemini credential exists" in page
    page = _errors(admin_client.post(ADD_URL, _form([{"provider": "vllm"}])))
    assert "Unknown provider" in page
    assert not RoutingRule.objects.exists()


def test_a_lone_target_of_weight_zero_is_a_form_error(admin_client: Client) -> None:
    page = _errors(
        admin_client.post(
            ADD_URL,
            _form(
                [
                    {"provider": "ollama", "weight": "0", "tier": "1"},
                    {"provider": "ollama", "model": "x", "weight": "1", "tier": "2"},
                ]
            ),
        )
    )
    assert "cannot have weight 0" in page
    assert not RoutingRule.objects.exists()


def test_a_rule_without_targets_is_refused(admin_client: Client) -> None:
    page = _errors(admin_client.post(ADD_URL, _form([])))
    assert "A rule needs at least one target." in page
    assert not RoutingRule.objects.exists()


def test_the_list_page_summarises_conditions_and_targets(admin_client: Client) -> None:
    assert (
        admin_client.post(ADD_URL, _form([{"provider": "ollama", "model": "qwen3"}])).status_code
        == 302
    )
    page = admin_client.get("/admin/proxy/routingrule/").content.decode()
    assert "model cheap-*" in page
    assert "ollama/qwen3" in page
