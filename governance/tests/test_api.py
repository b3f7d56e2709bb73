"""The management API: who may read and write, each resource's operations through the services,
400s naming the parameter, 404s for unknown ids, write-only secrets, and the live state."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from accounts.models import AccessKey, ProviderCredential, User
from accounts.services import access_key_create
from governance import services
from governance.models import Budget, RateLimit

pytestmark = pytest.mark.django_db

ADMIN = "admin-token-for-the-management-api"
READONLY = "readonly-token-for-the-management-api"


@pytest.fixture(autouse=True)
def tokens(settings: Any) -> None:
    settings.GATEWAY_ADMIN_API_TOKEN = ADMIN
    settings.GATEWAY_ADMIN_API_READONLY_TOKEN = READONLY


class Api:
    def __init__(self, token: str | None = ADMIN) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        kwargs: dict[str, Any] = dict(self.headers)
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method)(f"/api/admin/{path}", **kwargs)


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def user() -> User:
    return User.objects.create_user(email="dev@example.com")


def _bad(response: Any, param: str) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["param"] == param, body
    assert body["detail"]
    return body


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["users", "access-keys", "credentials", "budgets", "limits", "state"]
)
def test_every_resource_needs_a_token_or_a_staff_session(path: str) -> None:
    assert Api(token=None).call("get", path).status_code == 401
    assert Api(token="wrong").call("get", path).status_code == 401
    assert Api().call("get", path).status_code == 200
    assert Api(token=READONLY).call("get", path).status_code == 200


def test_the_read_only_token_reads_but_cannot_write(user: User) -> None:
    readonly = Api(token=READONLY)
    for method, path, body in [
        ("post", "users", {"email": "new@example.com"}),
        ("post", f"users/{user.pk}/deactivate", None),
        ("post", "access-keys", {"user_id": user.pk}),
        ("post", "budgets", {"scope": "global", "period": "day", "limit_tokens": 5}),
        ("post", "limits", {"scope": "user", "user_id": user.pk, "requests_per_minute": 5}),
        ("post", "credentials", {"provider": "openai", "secret": "sk-0123456789"}),
    ]:
        response = readonly.call(method, path, body)
        assert response.status_code == 403, (path, response.content)
    assert User.objects.count() == 1
    assert User.objects.get().is_active
    assert not Budget.objects.exists()
    assert not ProviderCredential.objects.exists()


def test_staff_sessions_read_and_write_with_the_model_permission(user: User) -> None:
    staff = User.objects.create_user(email="staff@example.com", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/api/admin/budgets").status_code == 200
    body = json.dumps({"scope": "global", "period": "day", "limit_tokens": 5})
    refused = client.post("/api/admin/budgets", data=body, content_type="application/json")
    assert refused.status_code == 403
    admin = User.objects.create_superuser(email="root@example.com")
    client.force_login(admin)
    created = client.post("/api/admin/budgets", data=body, content_type="application/json")
    assert created.status_code == 201
    client.force_login(user)  # not staff
    assert client.get("/api/admin/budgets").status_code == 403


# --- users and keys -----------------------------------------------------------------------------


def test_users_are_listed_created_and_deactivated(api: Api, user: User) -> None:
    created = api.call("post", "users", {"email": "new@example.com", "full_name": "New"})
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert created.json()["full_name"] == "New"
    _bad(api.call("post", "users", {"email": "new@example.com"}), "email")
    _bad(api.call("post", "users", {"email": "not an email"}), "email")
    _bad(api.call("post", "users", {"email": "a\x00@example.com"}), "email")
    assert [u["email"] for u in api.call("get", "users").json()] == [
        "dev@example.com",
        "new@example.com",
    ]
    off = api.call("post", f"users/{new_id}/deactivate")
    assert off.status_code == 200
    assert off.json()["is_active"] is False
    assert not User.objects.get(pk=new_id).is_active
    assert [u["id"] for u in api.call("get", "users?active=false").json()] == [new_id]
    assert api.call("post", "users/999999/deactivate").status_code == 404
    assert api.call("get", f"users/{2**70}").status_code == 404


def test_keys_show_their_plaintext_once_and_rotate_and_revoke(api: Api, user: User) -> None:
    created = api.call("post", "access-keys", {"user_id": user.pk, "label": "laptop"})
    assert created.status_code == 201
    plaintext = created.json()["plaintext"]
    key_id = created.json()["key"]["id"]
    assert plaintext.startswith(created.json()["key"]["prefix"])
    listed = api.call("get", f"access-keys?user_id={user.pk}").json()
    assert [k["id"] for k in listed] == [key_id]
    assert plaintext not in json.dumps(listed)
    assert plaintext not in api.call("get", f"access-keys/{key_id}").content.decode()
    rotated = api.call("post", f"access-keys/{key_id}/rotate")
    assert rotated.status_code == 201
    assert rotated.json()["plaintext"] != plaintext
    assert AccessKey.objects.get(pk=key_id).status == "rotated"
    _bad(api.call("post", f"access-keys/{key_id}/rotate"), "id")
    revoked = api.call("post", f"access-keys/{rotated.json()['key']['id']}/revoke")
    assert revoked.json()["status"] == "revoked"
    _bad(api.call("post", "access-keys", {"user_id": 999999}), "user_id")
    _bad(
        api.call("post", "access-keys", {"user_id": user.pk, "expires_at": "2001-01-01T00:00:00Z"}),
        "expires_at",
    )
    _bad(api.call("get", "access-keys?status=lost"), "status")
    assert api.call("post", "access-keys/424242/revoke").status_code == 404


# --- credentials --------------------------------------------------------------------------------


def test_credentials_show_fingerprints_and_take_secrets_write_only(api: Api, user: User) -> None:
    secret = "sk-proj-secret-value-0123456789abcd"
    created = api.call(
        "post", "credentials", {"provider": "openai", "secret": secret, "user_id": user.pk}
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["scope"] == "user"
    assert body["has_secret"] is True
    assert body["fingerprint"].endswith(secret[-4:])
    assert secret not in created.content.decode()
    assert secret not in api.call("get", "credentials").content.decode()
    credential_id = body["id"]
    replaced = api.call(
        "put", f"credentials/{credential_id}/secret", {"secret": "sk-new-secret-9876543210zz"}
    )
    assert replaced.status_code == 200
    assert replaced.json()["fingerprint"] != body["fingerprint"]
    _bad(api.call("put", f"credentials/{credential_id}/secret", {"secret": "  "}), "secret")
    _bad(api.call("post", "credentials", {"provider": "openai"}), "secret")
    _bad(api.call("post", "credentials", {"provider": "nope", "secret": "x" * 20}), "provider")
    _bad(
        api.call(
            "post",
            "credentials",
            {"provider": "openai", "secret": "sk-abcdefghijk", "region": "us-east-1"},
        ),
        "region",
    )
    assert api.call("delete", f"credentials/{credential_id}").status_code == 204
    assert not ProviderCredential.objects.exists()
    assert api.call("delete", f"credentials/{credential_id}").status_code == 404


# --- budgets and limits -------------------------------------------------------------------------


def test_budgets_are_created_changed_and_deleted_with_validation(api: Api, user: User) -> None:
    key, _ = access_key_create(user=user)
    created = api.call(
        "post",
        "budgets",
        {"scope": "access_key", "access_key_id": key.pk, "period": "month", "limit_usd": "25.50"},
    )
    assert created.status_code == 201, created.content
    budget_id = created.json()["id"]
    assert Decimal(created.json()["limit_usd"]) == Decimal("25.50")
    changed = api.call("patch", f"budgets/{budget_id}", {"limit_tokens": 1000, "limit_usd": None})
    assert changed.status_code == 200
    assert changed.json()["limit_usd"] is None
    assert changed.json()["limit_tokens"] == 1000
    _bad(api.call("patch", f"budgets/{budget_id}", {"limit_tokens": None}), "limit_usd")
    _bad(api.call("patch", f"budgets/{budget_id}", {"period": "year"}), "period")
    _bad(
        api.call("post", "budgets", {"scope": "user", "period": "day", "limit_tokens": 5}),
        "user_id",
    )
    _bad(api.call("post", "budgets", {"scope": "global", "period": "day"}), "limit_usd")
    _bad(
        api.call("post", "budgets", {"scope": "global", "period": "day", "limit_usd": "0"}),
        "limit_usd",
    )
    _bad(
        api.call("post", "budgets", {"scope": "planet", "period": "day", "limit_tokens": 1}),
        "scope",
    )
    _bad(api.call("post", "budgets", {"scope": "global", "limit_tokens": 1}), "period")
    assert api.call("get", "budgets/77777").status_code == 404
    assert api.call("delete", f"budgets/{budget_id}").status_code == 204
    assert not Budget.objects.exists()


def test_limits_are_one_per_target_and_refuse_zero(api: Api, user: User) -> None:
    body = {
        "scope": "user",
        "user_id": user.pk,
        "requests_per_minute": 10,
        "allowed_models": ["claude-*"],
    }
    created = api.call("post", "limits", body)
    assert created.status_code == 201, created.content
    _bad(api.call("post", "limits", body), "user_id")
    _bad(api.call("post", "limits", {**body, "requests_per_minute": 0}), "requests_per_minute")
    _bad(api.call("post", "limits", {"scope": "global", "requests_per_minute": 1}), "scope")
    _bad(api.call("post", "limits", {**body, "allowed_models": [""]}), "allowed_models")
    limit_id = created.json()["id"]
    changed = api.call(
        "patch", f"limits/{limit_id}", {"concurrent_requests": 2, "allowed_models": None}
    )
    assert changed.json()["concurrent_requests"] == 2
    assert changed.json()["allowed_models"] == []
    assert changed.json()["requests_per_minute"] == 10
    assert api.call("delete", f"limits/{limit_id}").status_code == 204
    assert not RateLimit.objects.exists()
    assert api.call("patch", f"limits/{limit_id}", {"enabled": False}).status_code == 404


def test_state_reports_budgets_from_the_usage_tables_before_any_request(
    api: Api, user: User
) -> None:
    services.budget_create(scope="global", period="day", limit_tokens=1000, name="All")
    services.rate_limit_create(scope="user", user_id=user.pk, concurrent_requests=3)
    state = api.call("get", "state").json()
    budget = state["budgets"][0]
    assert budget["label"] == "All"
    assert budget["source"] == "usage"
    assert budget["tokens"] == {"limit": "1000", "spent": "0", "reserved": "0", "remaining": "1000"}
    assert state["in_flight"] == [
        {"scope": "user", "target_id": user.pk, "limit": 3, "in_flight": 0}
    ]
    assert isinstance(state["circuits"], list)


def test_credentials_are_enabled_and_disabled(api: Api, user: User) -> None:
    created = api.call("post", "credentials", {"provider": "openai", "secret": "sk-abc-000000000"})
    credential_id = created.json()["id"]
    assert created.json()["enabled"] is True
    disabled = api.call("post", f"credentials/{credential_id}/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    enabled = api.call("post", f"credentials/{credential_id}/enable")
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert api.call("post", "credentials/999999/disable").status_code == 404
    assert Api(READONLY).call("post", f"credentials/{credential_id}/disable").status_code == 403
