"""Budgets and limits in Django Admin: saved through the services (the policy cache follows),
and refused with form errors when they make no sense."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import access_key_create
from governance.models import Budget, RateLimit

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(email="root@example.com"))
    return client


@pytest.fixture
def user() -> User:
    return User.objects.create_user(email="dev@example.com")


def _budget_form(**values: Any) -> dict[str, Any]:
    form = {
        "name": "",
        "scope": "global",
        "user": "",
        "access_key": "",
        "provider": "",
        "period": "day",
        "limit_usd": "",
        "limit_tokens": "",
        "enabled": "on",
    }
    form.update(values)
    return form


def _limit_form(**values: Any) -> dict[str, Any]:
    form = {
        "scope": "user",
        "user": "",
        "access_key": "",
        "requests_per_minute": "",
        "tokens_per_minute": "",
        "concurrent_requests": "",
        "allowed_models": "",
        "enabled": "on",
    }
    form.update(values)
    return form


def _errors(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, "the form was accepted"
    return dict(response.context["adminform"].form.errors)


def test_a_budget_is_saved_and_invalidates_the_key_cache(
    admin_client_: Client,
    user: User,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client_.post(
            "/admin/governance/budget/add/",
            _budget_form(scope="user", user=str(user.pk), limit_usd="10.00", name="Dev"),
        )
    assert response.status_code == 302, response.content
    budget = Budget.objects.get()
    assert budget.user == user
    assert budget.limit_usd == 10
    assert any("invalidate_key_metadata" in getattr(c, "__name__", "") for c in callbacks)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"period": "", "limit_tokens": "5"}, "period"),
        ({"limit_usd": "", "limit_tokens": ""}, "limit_usd"),
        ({"limit_tokens": "0"}, "limit_tokens"),
        ({"limit_usd": "-1"}, "limit_usd"),
        ({"scope": "user", "limit_tokens": "5"}, "user"),
        ({"scope": "", "limit_tokens": "5"}, "scope"),
    ],
)
def test_budget_forms_refuse_what_makes_no_sense(
    admin_client_: Client, values: dict[str, str], field: str
) -> None:
    response = admin_client_.post("/admin/governance/budget/add/", _budget_form(**values))
    assert field in _errors(response)
    assert not Budget.objects.exists()


def test_limits_are_saved_with_their_model_list_and_refuse_zero(
    admin_client_: Client, user: User
) -> None:
    response = admin_client_.post(
        "/admin/governance/ratelimit/add/",
        _limit_form(user=str(user.pk), requests_per_minute="0"),
    )
    assert "requests_per_minute" in _errors(response)
    key, _ = access_key_create(user=user)
    response = admin_client_.post(
        "/admin/governance/ratelimit/add/",
        _limit_form(scope="user", access_key=str(key.pk), concurrent_requests="2"),
    )
    errors = _errors(response)
    assert "user" in errors or "access_key" in errors
    response = admin_client_.post(
        "/admin/governance/ratelimit/add/",
        _limit_form(
            user=str(user.pk), concurrent_requests="2", allowed_models="claude-*\n\n openai/*\n"
        ),
    )
    assert response.status_code == 302, response.content
    limit = RateLimit.objects.get()
    assert limit.allowed_models == ["claude-*", "openai/*"]
    page = admin_client_.get(f"/admin/governance/ratelimit/{limit.pk}/change/")
    assert b"claude-*\nopenai/*" in page.content
    deleted = admin_client_.post(f"/admin/governance/ratelimit/{limit.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not RateLimit.objects.exists()
    assert admin_client_.get("/admin/governance/budget/").status_code == 200
