"""The admin usage API: authentication, filters, response shape and every kind of bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import AccessKey, User
from usage.api import TopUsersOut, UsageOut
from usage.tests.test_selectors import Event, aggregates_create

pytestmark = pytest.mark.django_db

USAGE_URL = "/api/admin/usage"
TOP_USERS_URL = "/api/admin/usage/top-users"
TOKEN = "admin-token-for-tests-0123456789"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def staff_client() -> Client:
    user = User.objects.create_user(email="admin@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def traffic() -> dict[str, Any]:
    alice = User.objects.create_user(email="alice@example.com")
    bob = User.objects.create_user(email="bob@example.com")
    alice_key = AccessKey.objects.create(user=alice, prefix="gw_alice", key_hash="0" * 64)
    bob_key = AccessKey.objects.create(user=bob, prefix="gw_bob", key_hash="1" * 64)
    aggregates_create(
        [
            Event(
                utc(2025, 3, 1, 14, 30),
                user_id=alice.id,
                access_key_id=alice_key.id,
                input_tokens=1000,
                cost_usd=Decimal("1.50"),
            ),
            Event(
                utc(2025, 3, 1, 15, 30),
                user_id=alice.id,
                access_key_id=alice_key.id,
                provider="bedrock",
                model="claude-haiku-4-5",
                fallback=True,
                cost_usd=Decimal("0.25"),
            ),
            Event(
                utc(2025, 3, 1, 16, 0),
                user_id=bob.id,
                access_key_id=bob_key.id,
                input_tokens=90000,
                cost_usd=Decimal("0.75"),
                error=True,
            ),
        ]
    )
    return {"alice": alice, "bob": bob, "alice_key": alice_key, "bob_key": bob_key}


def get(client: Client, url: str, **params: Any) -> Any:
    return client.get(url, params)


# --- Authentication -----------------------------------------------------------------------------


def test_anonymous_requests_get_401(client: Client) -> None:
    assert client.get(USAGE_URL).status_code == 401
    assert client.get(TOP_USERS_URL).status_code == 401


def test_logged_in_non_staff_get_403(client: Client) -> None:
    client.force_login(User.objects.create_user(email="user@example.com"))
    response = client.get(USAGE_URL)
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]


def test_staff_without_the_view_permission_get_403(client: Client) -> None:
    client.force_login(User.objects.create_user(email="helpdesk@example.com", is_staff=True))
    assert client.get(USAGE_URL).status_code == 403


def test_staff_with_the_view_permission_are_let_in(client: Client) -> None:
    user = User.objects.create_user(email="analyst@example.com", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_usageaggregate"))
    client.force_login(user)
    assert client.get(USAGE_URL).status_code == 200


def test_the_admin_token_is_accepted(client: Client, settings: Any) -> None:
    settings.GATEWAY_ADMIN_API_TOKEN = TOKEN
    response = client.get(USAGE_URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert (
        client.get(TOP_USERS_URL, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    )


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN])
def test_a_wrong_token_gets_401(client: Client, settings: Any, header: str) -> None:
    settings.GATEWAY_ADMIN_API_TOKEN = TOKEN
    assert client.get(USAGE_URL, headers={"Authorization": header}).status_code == 401


def test_token_access_is_off_without_the_setting(client: Client, settings: Any) -> None:
    settings.GATEWAY_ADMIN_API_TOKEN = ""
    assert client.get(USAGE_URL, headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get(USAGE_URL, headers={"Authorization": "Bearer x"}).status_code == 401


def test_docs_and_schema_are_for_staff_only(client: Client, staff_client: Client) -> None:
    for url in ("/api/docs", "/api/openapi.json"):
        anonymous = client.get(url)
        assert anonymous.status_code == 302
        assert "/admin/login/" in anonymous["Location"]
    client.force_login(User.objects.create_user(email="user@example.com"))
    assert client.get("/api/docs").status_code == 302
    assert staff_client.get("/api/docs").status_code == 200
    schema = staff_client.get("/api/openapi.json").json()
    assert {"/api/admin/usage", "/api/admin/usage/top-users"} <= set(schema["paths"])
    parameters = {
        param["name"] for param in schema["paths"]["/api/admin/usage"]["get"]["parameters"]
    }
    assert {
        "user",
        "access_key",
        "provider",
        "model",
        "from",
        "to",
        "granularity",
        "tz",
    } <= parameters


# --- Reports ------------------------------------------------------------------------------------


def test_usage_returns_global_totals_and_series(staff_client: Client, traffic: Any) -> None:
    response = get(
        staff_client, USAGE_URL, **{"from": "2025-03-01T14:00Z", "to": "2025-03-01T17:00Z"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    # The documented schema describes the response exactly.
    assert UsageOut.model_validate(body).model_dump(by_alias=True, mode="json") == body
    assert body["from"] == "2025-03-01T14:00:00Z"
    assert body["to"] == "2025-03-01T17:00:00Z"
    assert body["granularity"] == "hour"
    assert body["tz"] == "UTC"
    assert body["filters"] == {"user": None, "access_key": None, "provider": None, "model": None}
    totals = body["totals"]
    assert totals["requests"] == 3
    assert totals["errors"] == 1
    assert totals["fallbacks"] == 1
    assert totals["input_tokens"] == 1000 + 100 + 90000
    assert totals["total_tokens"] == 1000 + 100 + 90000 + 30
    assert Decimal(totals["cost_usd"]) == Decimal("2.5")
    assert totals["fallback_rate"] == pytest.approx(1 / 3)
    providers = {entry["provider"]: entry for entry in body["by_provider"]}
    assert [entry["provider"] for entry in body["by_provider"]] == ["anthropic", "bedrock"]
    assert providers["bedrock"]["share_requests"] == pytest.approx(1 / 3)
    assert providers["anthropic"]["share_cost"] == pytest.approx(0.9)
    assert [point["totals"]["requests"] for point in body["series"]] == [1, 1, 1]
    assert body["series"][1]["by_provider"]["bedrock"]["fallbacks"] == 1
    assert body["series"][0]["start"] == "2025-03-01T14:00:00Z"
    assert body["series"][0]["end"] == "2025-03-01T15:00:00Z"


def test_usage_in_seoul_moves_the_day_boundary(staff_client: Client, traffic: Any) -> None:
    response = get(
        staff_client,
        USAGE_URL,
        **{"from": "2025-03-01", "to": "2025-03-03", "granularity": "day", "tz": "Asia/Seoul"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["from"] == "2025-03-01T00:00:00+09:00"
    assert [point["start"] for point in body["series"]] == [
        "2025-03-01T00:00:00+09:00",
        "2025-03-02T00:00:00+09:00",
    ]
    # 14:30 UTC is 23:30 in Seoul; 15:30 and 16:00 UTC belong to March 2nd there.
    assert [point["totals"]["requests"] for point in body["series"]] == [1, 2]


def test_usage_filters(staff_client: Client, traffic: Any) -> None:
    window = {"from": "2025-03-01T00:00Z", "to": "2025-03-02T00:00Z"}

    def requests(**filters: Any) -> int:
        response = get(staff_client, USAGE_URL, **window, **filters)
        assert response.status_code == 200, response.content
        return response.json()["totals"]["requests"]

    assert requests() == 3
    assert requests(user=traffic["alice"].id) == 2
    assert requests(access_key=traffic["bob_key"].id) == 1
    assert requests(provider="bedrock") == 1
    assert requests(model="claude-haiku-4-5") == 1
    assert requests(user=traffic["alice"].id, provider="anthropic") == 1
    assert requests(user=0) == 0
    body = get(staff_client, USAGE_URL, **window, user=traffic["alice"].id).json()
    assert body["filters"]["user"] == traffic["alice"].id


def test_top_users_by_cost_and_tokens(staff_client: Client, traffic: Any) -> None:
    window = {"from": "2025-03-01", "to": "2025-03-02"}
    by_cost = get(staff_client, TOP_USERS_URL, **window).json()
    assert TopUsersOut.model_validate(by_cost).model_dump(by_alias=True, mode="json") == by_cost
    assert by_cost["order_by"] == "cost"
    assert [(user["email"], Decimal(user["cost_usd"])) for user in by_cost["users"]] == [
        ("alice@example.com", Decimal("1.75")),
        ("bob@example.com", Decimal("0.75")),
    ]
    by_tokens = get(staff_client, TOP_USERS_URL, **window, order_by="tokens", limit=1).json()
    assert [user["email"] for user in by_tokens["users"]] == ["bob@example.com"]
    bedrock = get(staff_client, TOP_USERS_URL, **window, provider="bedrock").json()
    assert [user["user_id"] for user in bedrock["users"]] == [traffic["alice"].id]


# --- Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "to"),
        ({"granularity": "fortnight"}, "granularity"),
        ({"from": "2020-01-01", "to": "2025-01-01", "granularity": "minute"}, "granularity"),
        ({"from": "next tuesday"}, "from"),
        ({"to": "2025-02-30"}, "to"),
        ({"to": "99999-01-01"}, "to"),
        ({"from": "0001-01-01T00:00+14:00"}, "from"),
        ({"provider": "Acme Corp"}, "provider"),
        ({"provider": "generic"}, "provider"),
        ({"provider": "x" * 17}, "provider"),
        ({"user": "alice"}, "user"),
        ({"access_key": "1.5"}, "access_key"),
        ({"user": "-3"}, "user"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    staff_client: Client, params: dict[str, str], param: str
) -> None:
    for url in (USAGE_URL, TOP_USERS_URL):
        response = staff_client.get(url, params)
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["param"] == param
        assert param in body["detail"]


@pytest.mark.parametrize(
    ("params", "param"),
    [({"order_by": "mood"}, "order_by"), ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit")],
)
def test_bad_top_users_options_are_400(
    staff_client: Client, params: dict[str, str], param: str
) -> None:
    response = staff_client.get(TOP_USERS_URL, params)
    assert response.status_code == 400
    assert response.json()["param"] == param
