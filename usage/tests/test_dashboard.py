"""The usage dashboard pages in Django Admin, their form errors, CSV exports, and the usage
admins (read-only events and aggregates, editable prices)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from accounts.models import AccessKey, User
from usage.models import Price, UsageAggregate, UsageEvent
from usage.tests.test_selectors import Event, aggregates_create

pytestmark = pytest.mark.django_db

WINDOW = {"range": "custom", "start": "2025-03-01T00:00", "end": "2025-03-02T00:00"}


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
    laptop = AccessKey.objects.create(
        user=alice, prefix="gw_laptop", key_hash="0" * 64, label="laptop"
    )
    ci = AccessKey.objects.create(user=alice, prefix="gw_ci", key_hash="1" * 64)
    bob_key = AccessKey.objects.create(user=bob, prefix="gw_bob", key_hash="2" * 64)
    aggregates_create(
        [
            Event(utc(2025, 3, 1, 9, 15), user_id=alice.id, access_key_id=laptop.id,
                  input_tokens=120_000, cost_usd=Decimal("3.25")),
            Event(utc(2025, 3, 1, 10, 5), user_id=alice.id, access_key_id=ci.id,
                  provider="bedrock", fallback=True, cost_usd=Decimal("0.50")),
            Event(utc(2025, 3, 1, 16, 45), user_id=bob.id, access_key_id=bob_key.id,
                  model="=HYPERLINK(\"http://evil\")", cost_usd=Decimal("1.00"), error=True),
        ]
    )  # fmt: skip
    return {"alice": alice, "bob": bob, "laptop": laptop, "ci": ci, "bob_key": bob_key}


def dashboard_url(**kwargs: int) -> str:
    if "user_id" in kwargs:
        return reverse("admin:usage_dashboard_user", args=[kwargs["user_id"]])
    if "access_key_id" in kwargs:
        return reverse("admin:usage_dashboard_key", args=[kwargs["access_key_id"]])
    return reverse("admin:usage_dashboard")


def read_csv(response: Any) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- Access -------------------------------------------------------------------------------------


def test_the_dashboard_lives_under_the_aggregate_admin() -> None:
    assert dashboard_url() == "/admin/usage/usageaggregate/dashboard/"
    assert dashboard_url(user_id=3) == "/admin/usage/usageaggregate/dashboard/users/3/"
    assert dashboard_url(access_key_id=4) == "/admin/usage/usageaggregate/dashboard/keys/4/"


def test_anonymous_and_non_staff_are_sent_to_the_login(client: Client) -> None:
    response = client.get(dashboard_url())
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    client.force_login(User.objects.create_user(email="user@example.com"))
    assert client.get(dashboard_url()).status_code == 302


def test_staff_without_the_view_permission_are_refused(client: Client) -> None:
    client.force_login(User.objects.create_user(email="helpdesk@example.com", is_staff=True))
    assert client.get(dashboard_url()).status_code == 403


def test_staff_with_the_view_permission_see_it(client: Client) -> None:
    user = User.objects.create_user(email="analyst@example.com", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_usageaggregate"))
    client.force_login(user)
    assert client.get(dashboard_url()).status_code == 200


def test_the_admin_index_and_aggregate_list_link_to_the_dashboard(staff_client: Client) -> None:
    index = staff_client.get(reverse("admin:index")).content.decode()
    assert f'href="{dashboard_url()}"' in index
    assert "Usage dashboard" in index
    changelist = staff_client.get(reverse("admin:usage_usageaggregate_changelist")).content.decode()
    assert f'href="{dashboard_url()}"' in changelist


def test_the_index_hides_the_link_from_staff_who_may_not_view_usage(client: Client) -> None:
    client.force_login(User.objects.create_user(email="helpdesk@example.com", is_staff=True))
    assert dashboard_url() not in client.get(reverse("admin:index")).content.decode()


# --- Pages --------------------------------------------------------------------------------------


def test_the_global_page_renders_totals_charts_and_rankings(
    staff_client: Client, traffic: dict[str, Any]
) -> None:
    response = staff_client.get(dashboard_url(), WINDOW)
    assert response.status_code == 200
    page = response.content.decode()
    # The admin's own frame: each_context() fills the header and the breadcrumbs.
    assert response.context["site_header"]
    assert response.context["has_permission"] is True
    assert '<div class="breadcrumbs">' in page
    # Totals.
    report = response.context["report"]
    assert report.totals.requests == 3
    assert report.totals.cost_usd == Decimal("4.75")
    cards = {card["label"]: card["value"] for card in response.context["cards"]}
    assert cards["Requests"] == "3"
    assert cards["Cost"] == "$4.75"
    assert cards["Fallback rate"] == "33.3%"
    shares = {share["provider"]: share for share in response.context["provider_shares"]}
    assert [share["provider"] for share in response.context["provider_shares"]] == [
        "anthropic",
        "bedrock",
    ]
    assert shares["anthropic"]["requests"] == "66.7%"
    assert shares["bedrock"]["requests"] == "33.3%"
    assert "Share by provider" in page
    assert "Anthropic / Bedrock" not in page
    # Charts: accessible inline SVG, one series per provider.
    for chart_id in ("chart-tokens", "chart-cost", "chart-fallback", "chart-share"):
        assert f'id="{chart_id}"' in page
        assert f'aria-labelledby="{chart_id}-title {chart_id}-desc"' in page
    assert page.count('data-series="anthropic"') >= 3
    assert 'data-series="bedrock"' in page
    # Rankings link to the drill-downs, keeping the filters.
    assert "alice@example.com" in page
    alice_url = dashboard_url(user_id=traffic["alice"].id)
    assert f'href="{alice_url}?range=custom&amp;start=2025-03-01T00%3A00' in page
    assert f'href="{dashboard_url(access_key_id=traffic["laptop"].id)}?' in page
    assert "gw_laptop (laptop)" in page
    assert "claude-sonnet-4-5" in page
    # 24 hourly buckets, each listed in the data table.
    assert len(response.context["point_rows"]) == 24


def test_top_users_follow_the_ranking(staff_client: Client, traffic: dict[str, Any]) -> None:
    by_cost = staff_client.get(dashboard_url(), WINDOW).context["top_users"]
    assert [row["usage"].email for row in by_cost] == ["alice@example.com", "bob@example.com"]
    by_tokens = staff_client.get(dashboard_url(), {**WINDOW, "rank": "tokens"})
    assert [row["usage"].email for row in by_tokens.context["top_users"]] == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert "Top users by tokens" in by_tokens.content.decode()


def test_the_user_page_lists_only_that_users_usage_and_keys(
    staff_client: Client, traffic: dict[str, Any]
) -> None:
    response = staff_client.get(dashboard_url(user_id=traffic["alice"].id), WINDOW)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Usage of alice@example.com" in page
    assert response.context["report"].totals.requests == 2
    assert [row["usage"].prefix for row in response.context["keys"]] == ["gw_laptop", "gw_ci"]
    assert "bob@example.com" not in page
    assert response.context["top_users"] == []


def test_the_key_page_shows_that_key_only(staff_client: Client, traffic: dict[str, Any]) -> None:
    response = staff_client.get(dashboard_url(access_key_id=traffic["ci"].id), WINDOW)
    assert response.status_code == 200
    assert "Usage of access key gw_ci (alice@example.com)" in response.content.decode()
    report = response.context["report"]
    assert report.totals.requests == 1
    assert report.providers == ["bedrock"]


def test_pages_of_deleted_users_and_keys_still_show_their_usage(staff_client: Client) -> None:
    aggregates_create([Event(utc(2025, 3, 1, 9), user_id=4242, access_key_id=4343)])
    user_page = staff_client.get(dashboard_url(user_id=4242), WINDOW)
    assert "user #4242 (deleted)" in user_page.content.decode()
    assert user_page.context["report"].totals.requests == 1
    key_page = staff_client.get(dashboard_url(access_key_id=4343), WINDOW)
    assert "access key #4343 (deleted)" in key_page.content.decode()


def test_usage_without_user_or_key_has_its_own_pages(staff_client: Client) -> None:
    aggregates_create([Event(utc(2025, 3, 1, 9), user_id=0, access_key_id=0)])
    user_page = staff_client.get(dashboard_url(user_id=0), WINDOW)
    assert "Usage without a user" in user_page.content.decode()
    assert user_page.context["report"].totals.requests == 1
    key_page = staff_client.get(dashboard_url(access_key_id=0), WINDOW)
    assert "Usage without an access key" in key_page.content.decode()
    assert key_page.context["report"].totals.requests == 1


def test_the_time_zone_moves_the_buckets(staff_client: Client, traffic: dict[str, Any]) -> None:
    params = {
        "range": "custom",
        "start": "2025-03-01T00:00",
        "end": "2025-03-03T00:00",
        "granularity": "day",
        "tz": "Asia/Seoul",
    }
    response = staff_client.get(dashboard_url(), params)
    assert response.status_code == 200
    rows = response.context["point_rows"]
    assert [row[0] for row in rows] == ["Sat 2025-03-01", "Sun 2025-03-02"]
    # 09:15 and 10:05 UTC are March 1st in Seoul; 16:45 UTC is already March 2nd.
    assert [row[1] for row in rows] == ["2", "1"]
    assert "Asia/Seoul" in response.context["range_label"]


def test_presets_pick_a_granularity(staff_client: Client) -> None:
    for preset, granularity, points in (
        ("hour", "minute", {60, 61}),
        ("day", "hour", {24, 25}),
        ("week", "hour", {168, 169}),
        ("month", "day", {30, 31}),
    ):
        response = staff_client.get(dashboard_url(), {"range": preset})
        assert response.status_code == 200
        query = response.context["report"].query
        assert query.granularity == granularity
        assert query.plan.point_count in points


def test_an_empty_range_renders_without_data(staff_client: Client) -> None:
    response = staff_client.get(dashboard_url(), WINDOW)
    assert response.status_code == 200
    page = response.content.decode()
    assert "No usage in this range." in page
    assert 'id="chart-tokens"' in page


# --- Form errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "tz", "unknown time zone"),
        ({"granularity": "fortnight"}, "granularity", "Select a valid choice"),
        ({"range": "custom", "start": "2025-03-01T00:00"}, "end", "needs a start and an end"),
        ({"range": "custom", "start": "2025-03-02", "end": "2025-03-01"}, "end", "must be after"),
        ({"range": "custom", "start": "yesterday", "end": "2025-03-01"}, "start", "ISO 8601"),
        (
            {
                "range": "custom",
                "start": "2024-01-01",
                "end": "2025-01-01",
                "granularity": "minute",
            },
            "granularity",
            "choose a coarser granularity",
        ),
        ({"range": "forever"}, "range", "Select a valid choice"),
        ({"rank": "mood"}, "rank", "Select a valid choice"),
    ],
)
def test_bad_input_shows_form_errors(
    staff_client: Client, params: dict[str, str], field: str, message: str
) -> None:
    response = staff_client.get(dashboard_url(), params)
    assert response.status_code == 200
    form = response.context["form"]
    assert field in form.errors
    assert message in " ".join(form.errors[field])
    page = response.content.decode()
    assert 'class="errorlist' in page
    assert "report" not in response.context or response.context.get("report") is None
    assert 'id="chart-tokens"' not in page


def test_a_custom_range_without_granularity_picks_one(staff_client: Client) -> None:
    response = staff_client.get(
        dashboard_url(), {"range": "custom", "start": "2024-01-01", "end": "2025-01-01"}
    )
    assert response.context["report"].query.granularity == "day"


# --- CSV export ---------------------------------------------------------------------------------


def test_series_export_matches_the_page(staff_client: Client, traffic: dict[str, Any]) -> None:
    response = staff_client.get(dashboard_url(), {**WINDOW, "export": "series"})
    assert response.status_code == 200
    assert (
        "usage-series-all-20250301T0000-20250302T0000-hour.csv" in response["Content-Disposition"]
    )
    rows = read_csv(response)
    header = rows[0]
    assert header[:3] == ["bucket_start", "bucket_end", "provider"]
    assert header[-1] == "cost_usd"
    # Per hour: all, anthropic, bedrock.
    assert len(rows) == 1 + 24 * 3
    by_key = {(row[0], row[2]): dict(zip(header, row, strict=True)) for row in rows[1:]}
    nine = by_key[("2025-03-01T09:00:00+00:00", "all")]
    assert nine["requests"] == "1"
    assert nine["input_tokens"] == "120000"
    assert Decimal(nine["cost_usd"]) == Decimal("3.25")
    ten = by_key[("2025-03-01T10:00:00+00:00", "bedrock")]
    assert ten["fallbacks"] == "1"
    assert by_key[("2025-03-01T10:00:00+00:00", "anthropic")]["requests"] == "0"
    total = sum(Decimal(row[-1]) for row in rows[1:] if row[2] == "all")
    assert total == Decimal("4.75")


def test_series_export_uses_the_chosen_time_zone(
    staff_client: Client, traffic: dict[str, Any]
) -> None:
    params = {**WINDOW, "tz": "Asia/Kolkata", "granularity": "day", "export": "series"}
    rows = read_csv(staff_client.get(dashboard_url(), params))
    assert rows[1][:3] == ["2025-03-01T00:00:00+05:30", "2025-03-02T00:00:00+05:30", "all"]
    assert rows[1][3] == "3"


def test_users_keys_and_models_exports(staff_client: Client, traffic: dict[str, Any]) -> None:
    users = read_csv(staff_client.get(dashboard_url(), {**WINDOW, "export": "users"}))
    assert [row[2] for row in users[1:]] == ["alice@example.com", "bob@example.com"]
    assert Decimal(users[1][-1]) == Decimal("3.75")
    keys = read_csv(
        staff_client.get(dashboard_url(user_id=traffic["alice"].id), {**WINDOW, "export": "keys"})
    )
    assert [(row[2], row[3]) for row in keys[1:]] == [("gw_laptop", "laptop"), ("gw_ci", "")]
    models = read_csv(staff_client.get(dashboard_url(), {**WINDOW, "export": "models"}))
    names = {row[1] for row in models[1:]}
    # A model name that a spreadsheet would run as a formula is defused.
    assert '\'=HYPERLINK("http://evil")' in names
    assert "claude-sonnet-4-5" in names


def test_unknown_export_is_a_400(staff_client: Client) -> None:
    response = staff_client.get(dashboard_url(), {"export": "everything"})
    assert response.status_code == 400
    assert b"export" in response.content


def test_export_of_invalid_filters_shows_the_form(staff_client: Client) -> None:
    response = staff_client.get(dashboard_url(), {"tz": "Nowhere/City", "export": "series"})
    assert response.status_code == 200
    assert "tz" in response.context["form"].errors


# --- Admins of the usage tables -----------------------------------------------------------------


def test_usage_events_are_listed_read_only(staff_client: Client, traffic: dict[str, Any]) -> None:
    event = UsageEvent.objects.create(
        user=traffic["alice"],
        access_key=traffic["laptop"],
        provider="bedrock",
        requested_model="claude-sonnet-4-5",
        status_code=200,
        fallback_reason="anthropic_429",
        request_id="req_123",
    )
    changelist = reverse("admin:usage_usageevent_changelist")
    response = staff_client.get(changelist)
    assert response.status_code == 200
    assert response.context["cl"].show_full_result_count is False
    assert "alice@example.com" in response.content.decode()
    for params in (
        {"provider": "bedrock"},
        {"status": "ok"},
        {"status": "4xx"},
        {"status": "5xx"},
        {"fallback": "yes"},
        {"fallback": "no"},
        {"q": "req_123"},
    ):
        filtered = staff_client.get(changelist, params)
        assert filtered.status_code == 200, params
    assert staff_client.get(changelist, {"fallback": "yes"}).context["cl"].result_count == 1
    assert staff_client.get(changelist, {"fallback": "no"}).context["cl"].result_count == 0
    assert staff_client.get(changelist, {"status": "5xx"}).context["cl"].result_count == 0
    assert staff_client.get(reverse("admin:usage_usageevent_add")).status_code == 403
    detail = staff_client.get(reverse("admin:usage_usageevent_change", args=[event.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    posted = staff_client.post(
        reverse("admin:usage_usageevent_change", args=[event.pk]), {"provider": "anthropic"}
    )
    assert posted.status_code == 403
    assert (
        staff_client.get(reverse("admin:usage_usageevent_delete", args=[event.pk])).status_code
        == 403
    )
    event.refresh_from_db()
    assert event.provider == "bedrock"


def test_usage_aggregates_are_listed_read_only(
    staff_client: Client, traffic: dict[str, Any]
) -> None:
    changelist = reverse("admin:usage_usageaggregate_changelist")
    response = staff_client.get(changelist, {"bucket": "day", "provider": "anthropic"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    # A search term that is not a number must not break the integer lookups.
    assert staff_client.get(changelist, {"q": "claude-sonnet-4-5"}).status_code == 200
    assert staff_client.get(changelist, {"q": str(traffic["alice"].id)}).status_code == 200
    aggregate = UsageAggregate.objects.first()
    assert aggregate is not None
    assert staff_client.get(reverse("admin:usage_usageaggregate_add")).status_code == 403
    assert (
        staff_client.post(
            reverse("admin:usage_usageaggregate_change", args=[aggregate.pk]), {"requests": 1}
        ).status_code
        == 403
    )


def test_prices_are_editable(staff_client: Client) -> None:
    response = staff_client.post(
        reverse("admin:usage_price_add"),
        {
            "provider": "bedrock",
            "model": "claude-test-9",
            "valid_from_0": "2025-03-01",
            "valid_from_1": "00:00:00",
            "input_per_mtok": "3",
            "output_per_mtok": "15",
            "cache_read_per_mtok": "0.3",
            "cache_write_per_mtok": "3.75",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    price = Price.objects.get(model="claude-test-9")
    assert price.output_per_mtok == Decimal("15")
    changelist = staff_client.get(reverse("admin:usage_price_changelist"), {"provider": "bedrock"})
    assert "claude-test-9" in changelist.content.decode()
