"""The management API's routing rules: create, list in match order, replace, delete; the checks
the admin runs, as 400s naming the field; 404s; the read-only token cannot write."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group

from accounts.models import User
from accounts.services import access_key_create, provider_credential_set
from governance.tests.test_api import READONLY, Api, tokens  # noqa: F401 (fixture)
from proxy.models import RoutingRule

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Api:
    provider_credential_set(provider="openai", secret="sk-openai-0123456789")
    return Api()


def _rule(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "cheap",
        "model_pattern": "cheap-*",
        "targets": [
            {"provider": "ollama", "model": "qwen3", "tier": 1},
            {"provider": "openai", "model": "gpt-4.1-mini", "tier": 2},
        ],
    }
    body.update(overrides)
    return body


def _bad(response: Any, param: str, words: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["param"] == param, body
    assert words in body["detail"], body


def test_create_read_list_replace_delete(api: Api) -> None:
    created = api.call("post", "routes", _rule())
    assert created.status_code == 201, created.content
    rule = created.json()
    assert rule["model_pattern"] == "cheap-*"
    assert [(t["provider"], t["tier"]) for t in rule["targets"]] == [("ollama", 1), ("openai", 2)]
    second = api.call("post", "routes", _rule(name="all", model_pattern="", position=500))
    assert second.status_code == 201
    listed = api.call("get", "routes").json()
    assert [item["name"] for item in listed] == ["cheap", "all"]  # the order rules are matched
    assert api.call("get", f"routes/{rule['id']}").json()["name"] == "cheap"

    replaced = api.call(
        "put",
        f"routes/{rule['id']}",
        _rule(strategy="weighted", targets=[{"provider": "openai", "weight": 3}]),
    )
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["strategy"] == "weighted"
    assert [t["provider"] for t in replaced.json()["targets"]] == ["openai"]
    assert RoutingRule.objects.get(pk=rule["id"]).targets.count() == 1

    assert api.call("delete", f"routes/{rule['id']}").status_code == 204
    assert api.call("get", f"routes/{rule['id']}").status_code == 404
    assert RoutingRule.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "param", "words"),
    [
        ({"model_pattern": "claude-[os"}, "model_pattern", "is not closed"),
        ({"header_name": "bad header"}, "header_name", "Not a header name"),
        ({"header_value": "fast"}, "header_value", "needs a header name"),
        ({"min_input_tokens": 10, "max_input_tokens": 5}, "max_input_tokens", "below"),
        ({"targets": [{"provider": "nowhere"}]}, "targets", "Unknown provider 'nowhere'"),
        ({"targets": [{"provider": "gemini"}]}, "targets", "No enabled gemini credential"),
        ({"targets": [{"provider": "openai", "weight": 0}]}, "targets", "weight 0"),
        (
            {
                "strategy": "weighted",
                "targets": [
                    {"provider": "openai", "weight": 0},
                    {"provider": "ollama", "weight": 0},
                ],
            },
            "targets",
            "weight above 0",
        ),
        ({"targets": []}, "targets", "at least 1"),
        ({"strategy": "fastest"}, "strategy", "ordered, weighted or round_robin"),
        ({"stream": "sometimes"}, "stream", "any, stream or no_stream"),
        ({"user_id": 999_999}, "user_id", "No user 999999"),
        ({"group_id": 999_999}, "group_id", "No group 999999"),
        ({"access_key_id": 999_999}, "access_key_id", "No access key 999999"),
        ({"name": ""}, "name", "at least 1"),
        ({"max_attempts": 0}, "max_attempts", "greater than or equal to 1"),
    ],
)
def test_a_rule_that_cannot_work_is_refused_naming_the_field(
    api: Api, overrides: dict[str, Any], param: str, words: str
) -> None:
    _bad(api.call("post", "routes", _rule(**overrides)), param, words)
    assert not RoutingRule.objects.exists()


def test_names_are_unique(api: Api) -> None:
    assert api.call("post", "routes", _rule()).status_code == 201
    _bad(api.call("post", "routes", _rule()), "name", "exists already")


def test_a_key_of_another_user_cannot_be_combined_with_a_user(api: Api) -> None:
    owner = User.objects.create_user(email="owner@example.com")
    other = User.objects.create_user(email="other@example.com")
    key, _ = access_key_create(user=owner, label="k")
    _bad(
        api.call("post", "routes", _rule(access_key_id=key.pk, user_id=other.pk)),
        "access_key_id",
        "belongs to another user",
    )
    created = api.call("post", "routes", _rule(access_key_id=key.pk, user_id=owner.pk))
    assert created.status_code == 201


def test_a_group_rule(api: Api) -> None:
    group = Group.objects.create(name="research")
    created = api.call("post", "routes", _rule(group_id=group.pk))
    assert created.status_code == 201
    assert created.json()["group_id"] == group.pk


def test_unknown_ids_are_404(api: Api) -> None:
    assert api.call("get", "routes/424242").status_code == 404
    assert api.call("put", "routes/424242", _rule()).status_code == 404
    assert api.call("delete", "routes/424242").status_code == 404


def test_the_read_only_token_reads_but_cannot_write(api: Api) -> None:
    rule = api.call("post", "routes", _rule()).json()
    readonly = Api(token=READONLY)
    assert readonly.call("get", "routes").status_code == 200
    assert readonly.call("post", "routes", _rule(name="x")).status_code == 403
    assert readonly.call("put", f"routes/{rule['id']}", _rule()).status_code == 403
    assert readonly.call("delete", f"routes/{rule['id']}").status_code == 403
    assert RoutingRule.objects.count() == 1
