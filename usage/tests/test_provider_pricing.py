"""Prices for every provider: the OpenAI and Gemini seed, the lookup order (upstream model, then
the requested one), Ollama and generic servers free by default, usage without a price reported
(rollup, selector, API, admin, dashboard), and the dashboard split by any number of providers."""

from __future__ import annotations

import importlib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from usage.api import UnpricedListOut
from usage.dashboard import charts
from usage.models import Bucket, Price, UsageAggregate, UsageEvent
from usage.pricing import event_cost, price_at, price_names
from usage.rollup import usage_rollup
from usage.selectors import usage_query_build, usage_unpriced
from usage.tests.factories import expected_aggregates, make_event, make_price
from usage.tests.factories import make_events as create_events
from usage.tests.factories import stored_aggregates as stored

pytestmark = pytest.mark.django_db

SEED = importlib.import_module("usage.migrations.0006_seed_provider_prices")
BACKDATE = importlib.import_module("usage.migrations.0008_backdate_provider_prices")
T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
WINDOW = {"range": "custom", "start": "2025-03-01T00:00", "end": "2025-03-02T00:00"}
UNPRICED_URL = "/api/admin/usage/unpriced"
TOKEN = "admin-token-for-tests-0123456789"


def tokens(input_: int = 0, output: int = 0, cache_read: int = 0, cache_write: int = 0) -> dict:
    return {
        "input_tokens": input_,
        "output_tokens": output,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
    }


def cost(provider: str, requested: str, upstream: str, at: datetime = T0, **counts: int) -> Any:
    return event_cost(
        provider=provider,
        model=requested,
        upstream_model=upstream,
        occurred_at=at,
        **tokens(**counts),
    )


def make_events(rows: Any) -> None:
    """Events at T0 unless they say otherwise."""
    create_events([{"occurred_at": T0, **row} for row in rows])


def _all_events() -> Any:
    return UsageEvent.objects.all()


def day_cost(provider: str, model: str) -> Decimal:
    row = UsageAggregate.objects.get(
        bucket=Bucket.DAY, bucket_start=datetime(2025, 3, 1, tzinfo=UTC), provider=provider,
        model=model,
    )  # fmt: skip
    return row.cost_usd


def whole_day():  # type: ignore[no-untyped-def]
    return usage_query_build(start="2025-03-01", end="2025-03-02", granularity="day")


@pytest.fixture
def staff_client() -> Client:
    user = User.objects.create_user(email="admin@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


# --- The seed -----------------------------------------------------------------------------------

SEEDED = {
    "openai": [
        "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "o3", "o3-mini",
        "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "text-embedding-3-small",
        "text-embedding-3-large",
    ],
    "gemini": [
        "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash",
        "gemini-embedding-001",
    ],
}  # fmt: skip


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_current_models_are_seeded_at_list_prices(provider: str) -> None:
    later = SEED.VALID_FROM + timedelta(days=1)
    for model in SEEDED[provider]:
        price = price_at(provider=provider, model=model, at=later)
        assert price is not None, model
        assert price.input_per_mtok > 0, model
        # Priced from when that list price took effect (0008), not before.
        took_effect = BACKDATE.TOOK_EFFECT[provider][model]
        assert price_at(provider=provider, model=model, at=took_effect - timedelta(1)) is None


def test_seeded_figures() -> None:
    later = SEED.VALID_FROM + timedelta(days=1)

    def figures(provider: str, model: str) -> tuple[Decimal, ...]:
        price = price_at(provider=provider, model=model, at=later)
        assert price is not None
        return (
            price.input_per_mtok,
            price.output_per_mtok,
            price.cache_read_per_mtok,
            price.cache_write_per_mtok,
        )

    assert figures("openai", "gpt-4.1") == (2, 8, Decimal("0.5"), 2)
    assert figures("openai", "gpt-5-nano") == (Decimal("0.05"), Decimal("0.4"), Decimal("0.005"),
                                               Decimal("0.05"))  # fmt: skip
    assert figures("gemini", "gemini-2.5-pro") == (Decimal("1.25"), 10, Decimal("0.125"),
                                                   Decimal("1.25"))  # fmt: skip
    # A dated snapshot, as OpenAI names the model that answered, is priced like its alias.
    assert figures("openai", "gpt-4.1-2025-04-14") == figures("openai", "gpt-4.1")
    assert figures("gemini", "gemini-2.0-flash-001") == figures("gemini", "gemini-2.0-flash")


def test_the_seed_only_adds_rows_and_keeps_admin_edits() -> None:
    count = Price.objects.count()
    SEED.seed(django_apps, None)
    assert Price.objects.count() == count  # nothing twice

    edited = Price.objects.get(provider="openai", model="gpt-4.1")
    edited.input_per_mtok = Decimal("9")
    edited.save(update_fields=["input_per_mtok"])
    own = Price.objects.get(provider="gemini", model="gemini-2.5-flash")
    own.valid_from = datetime(2025, 1, 1, tzinfo=UTC)
    own.save(update_fields=["valid_from"])
    Price.objects.filter(provider="openai", model="o3").delete()

    SEED.seed(django_apps, None)

    assert Price.objects.get(provider="openai", model="gpt-4.1").input_per_mtok == 9
    # A model the admin priced (whatever the date) gets no seeded row next to theirs.
    assert list(
        Price.objects.filter(provider="gemini", model="gemini-2.5-flash").values_list(
            "valid_from", flat=True
        )
    ) == [datetime(2025, 1, 1, tzinfo=UTC)]
    assert Price.objects.filter(provider="openai", model="o3").count() == 1
    assert Price.objects.count() == count

    # Reversing (0008, then 0006) removes only the rows exactly as seeded.
    BACKDATE.restore(django_apps, None)
    SEED.unseed(django_apps, None)
    assert set(Price.objects.filter(provider__in=SEEDED).values_list("model", flat=True)) == {
        "gpt-4.1",
        "gemini-2.5-flash",
    }
    assert Price.objects.filter(provider="anthropic").exists()


# --- Lookup order -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "requested", "names"),
    [
        ("gpt-4.1", "openai/gpt-4.1", ["gpt-4.1"]),
        ("gpt-4.1-2025-04-14", "fast", ["gpt-4.1-2025-04-14", "gpt-4.1", "fast"]),
        ("", "openai/gpt-4o", ["gpt-4o"]),
        ("qwen2.5:72b", "vllm/qwen2.5:72b", ["qwen2.5:72b"]),
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-7",
            [
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5",
                "claude-sonnet-4-7",
            ],
        ),
    ],
)
def test_price_names_try_the_upstream_model_then_the_requested_one(
    upstream: str, requested: str, names: list[str]
) -> None:
    assert price_names(upstream_model=upstream, requested_model=requested) == names


def test_an_alias_or_a_prefixed_request_is_priced_by_its_upstream_model() -> None:
    Price.objects.all().delete()
    make_price(provider="openai", model="gpt-4.1", input_per_mtok="2", output_per_mtok="8")
    make_price(provider="openai", model="fast", input_per_mtok="100", output_per_mtok="100")
    one_million = {"input_": 1_000_000}
    assert cost("openai", "openai/gpt-4.1", "gpt-4.1", **one_million) == 2
    # The alias has a (wrong) row of its own: the model that answered wins.
    assert cost("openai", "fast", "gpt-4.1-2025-04-14", **one_million) == 2
    # Nothing recorded upstream: the requested name, without its prefix.
    assert cost("openai", "openai/gpt-4.1", "", **one_million) == 2

    make_events(
        [
            {
                "provider": "openai",
                "requested_model": "openai/gpt-4.1",
                "upstream_model": "gpt-4.1",
            },
            {"provider": "openai", "requested_model": "fast", "upstream_model": "gpt-4.1"},
        ]
    )
    report = usage_rollup()
    assert report.unpriced == {}
    assert day_cost("openai", "openai/gpt-4.1") == Decimal("0.0036")  # 1000 in, 200 out
    assert day_cost("openai", "fast") == Decimal("0.0036")
    assert stored() == expected_aggregates(_all_events())


def test_an_unmapped_bedrock_fallback_is_priced_by_the_requested_name() -> None:
    Price.objects.all().delete()
    make_price(provider="bedrock", model="claude-sonnet-4-7", input_per_mtok="4")
    make_price(provider="bedrock", model="claude-sonnet-4-5", input_per_mtok="3")
    profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/k3x9q"
    # An opaque profile id has no row: the name the client asked for prices it.
    assert cost("bedrock", "claude-sonnet-4-7", profile, input_=1_000_000) == 4
    # A Bedrock model id is priced as the Claude model it names, before the requested one.
    mapped = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert cost("bedrock", "claude-sonnet-4-7", mapped, input_=1_000_000) == 3

    make_events(
        [
            {"provider": "bedrock", "requested_model": "claude-sonnet-4-7",
             "upstream_model": profile, "input_tokens": 1_000_000, "output_tokens": 0},
            {"provider": "bedrock", "requested_model": "claude-sonnet-4-7",
             "upstream_model": mapped, "input_tokens": 1_000_000, "output_tokens": 0},
        ]
    )  # fmt: skip
    report = usage_rollup()
    assert report.unpriced == {}
    assert day_cost("bedrock", "claude-sonnet-4-7") == 7
    assert stored() == expected_aggregates(_all_events())


def test_a_price_found_late_in_a_batch_prices_the_whole_batch() -> None:
    """Keys priced through another name are found after the first pass and remembered."""
    Price.objects.all().delete()
    make_price(provider="openai", model="gpt-4.1", input_per_mtok="2", output_per_mtok="0")
    rows = [
        {"provider": "openai", "requested_model": f"alias-{n}", "upstream_model": "gpt-4.1",
         "input_tokens": 1_000_000, "output_tokens": 0}
        for n in range(3)
    ]  # fmt: skip
    make_events(rows)
    assert usage_rollup(batch_size=1).unpriced == {}
    assert sum(
        UsageAggregate.objects.filter(bucket=Bucket.MONTH).values_list("cost_usd", flat=True)
    ) == Decimal(6)


# --- Free by default ----------------------------------------------------------------------------


def test_ollama_and_generic_servers_cost_nothing_and_are_not_unpriced() -> None:
    make_events(
        [
            {"provider": "ollama", "requested_model": "fast", "upstream_model": "qwen3:8b"},
            {"provider": "vllm", "requested_model": "vllm/llama-3-70b",
             "upstream_model": "llama-3-70b"},
        ]
    )  # fmt: skip
    assert cost("ollama", "fast", "qwen3:8b", input_=10**6) == 0
    assert cost("vllm", "vllm/llama-3-70b", "llama-3-70b", input_=10**6) == 0
    report = usage_rollup()
    assert report.unpriced == {}
    assert day_cost("ollama", "fast") == 0
    assert usage_unpriced(whole_day()) == []


def test_a_generic_server_with_a_price_reports_its_other_models() -> None:
    make_price(provider="vllm", model="llama-3-70b", input_per_mtok="0.5", output_per_mtok="0")
    make_events(
        [
            {"provider": "vllm", "requested_model": "vllm/llama-3-70b",
             "upstream_model": "llama-3-70b", "input_tokens": 2_000_000},
            {"provider": "vllm", "requested_model": "vllm/mixtral",
             "upstream_model": "mixtral", "input_tokens": 5, "output_tokens": 7},
            {"provider": "ollama", "requested_model": "qwen3", "upstream_model": "qwen3"},
        ]
    )  # fmt: skip
    assert cost("vllm", "vllm/mixtral", "mixtral", input_=1) is None
    report = usage_rollup()
    assert report.unpriced == {("vllm", "vllm/mixtral"): 1}
    assert day_cost("vllm", "vllm/llama-3-70b") == 1
    [usage] = usage_unpriced(whole_day())
    assert (usage.provider, usage.upstream_model, usage.events, usage.total_tokens) == (
        "vllm",
        "mixtral",
        1,
        12,
    )


# --- Usage without a price ----------------------------------------------------------------------


def test_openai_and_gemini_usage_without_a_price_is_reported() -> None:
    make_events(
        [
            {"provider": "openai", "requested_model": "fast", "upstream_model": "gpt-9",
             "input_tokens": 100, "output_tokens": 10, "cache_read_tokens": 1},
            {"provider": "openai", "requested_model": "fast", "upstream_model": "gpt-9",
             "input_tokens": 200, "output_tokens": 20, "occurred_at": T0 + timedelta(hours=2)},
            {"provider": "gemini", "requested_model": "gemini-9-pro",
             "upstream_model": "gemini-9-pro", "input_tokens": 5000},
            # A recorded cost needs no price.
            {"provider": "openai", "requested_model": "gpt-10", "upstream_model": "gpt-10",
             "cost_usd": Decimal("0.5")},
        ]
    )  # fmt: skip
    report = usage_rollup()
    assert report.unpriced == {("openai", "fast"): 2, ("gemini", "gemini-9-pro"): 1}
    unpriced = usage_unpriced(whole_day())
    assert [(u.provider, u.upstream_model, u.requested_model) for u in unpriced] == [
        ("gemini", "gemini-9-pro", "gemini-9-pro"),
        ("openai", "gpt-9", "fast"),
    ]
    openai = unpriced[1]
    assert (openai.events, openai.input_tokens, openai.output_tokens, openai.total_tokens) == (
        2,
        300,
        30,
        331,
    )
    assert (openai.first_at, openai.last_at) == (T0, T0 + timedelta(hours=2))
    assert (openai.price_model, openai.requested_price_model) == ("gpt-9", "fast")
    # Filters apply, and another range sees nothing.
    provider_only = usage_query_build(
        start="2025-03-01", end="2025-03-02", granularity="day", provider="gemini"
    )
    assert [u.provider for u in usage_unpriced(provider_only)] == ["gemini"]
    assert usage_unpriced(usage_query_build(start="2025-03-02", end="2025-03-03")) == []
    # Once priced (from before the first event) it is no longer listed.
    make_price(provider="openai", model="gpt-9", valid_from=T0 - timedelta(days=1))
    assert [u.provider for u in usage_unpriced(whole_day())] == ["gemini"]


def test_events_before_the_first_price_are_the_unpriced_ones(
    django_assert_max_num_queries: Any,
) -> None:
    Price.objects.filter(provider="openai", model="gpt-4.1").delete()
    make_price(provider="openai", model="gpt-4.1", valid_from=T0 + timedelta(hours=1))
    make_events(
        [
            {"provider": "openai", "requested_model": "gpt-4.1", "upstream_model": "gpt-4.1",
             "occurred_at": T0 + timedelta(minutes=minute)}
            for minute in (0, 30, 90, 120)
        ]
    )  # fmt: skip
    assert usage_rollup().unpriced == {("openai", "gpt-4.1"): 2}
    with django_assert_max_num_queries(4):
        [usage] = usage_unpriced(whole_day())
    assert (usage.events, usage.first_at, usage.last_at) == (
        2,
        T0,
        T0 + timedelta(minutes=30),
    )


# --- API ----------------------------------------------------------------------------------------


def test_the_api_lists_usage_without_a_price(staff_client: Client) -> None:
    make_event(provider="openai", requested_model="openai/gpt-9", upstream_model="gpt-9",
               occurred_at=T0)  # fmt: skip
    make_event(provider="ollama", requested_model="qwen3", upstream_model="qwen3", occurred_at=T0)
    response = staff_client.get(UNPRICED_URL, {"from": "2025-03-01", "to": "2025-03-02"})
    assert response.status_code == 200, response.content
    body = response.json()
    UnpricedListOut.model_validate(body)
    assert body["from"] == "2025-03-01T00:00:00Z"
    assert body["unpriced"] == [
        {
            "provider": "openai",
            "upstream_model": "gpt-9",
            "requested_model": "openai/gpt-9",
            "price_model": "gpt-9",
            "events": 1,
            "input_tokens": 1000,
            "output_tokens": 200,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "total_tokens": 1200,
            "first_at": "2025-03-01T09:00:00Z",
            "last_at": "2025-03-01T09:00:00Z",
        }
    ]
    other = staff_client.get(UNPRICED_URL, {"from": "2025-03-01", "provider": "gemini"}).json()
    assert other["unpriced"] == []
    assert other["filters"]["provider"] == "gemini"


def test_the_api_needs_a_staff_session_or_the_token(client: Client, settings: Any) -> None:
    settings.GATEWAY_ADMIN_API_TOKEN = TOKEN
    assert client.get(UNPRICED_URL).status_code == 401
    authorized = client.get(UNPRICED_URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status_code == 200
    client.force_login(User.objects.create_user(email="helpdesk@example.com", is_staff=True))
    assert client.get(UNPRICED_URL).status_code == 403


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "to"),
        ({"granularity": "fortnight"}, "granularity"),
        ({"from": "next tuesday"}, "from"),
        ({"provider": "Not A Provider"}, "provider"),
        ({"provider": "generic"}, "provider"),
        ({"user": "alice"}, "user"),
        ({"access_key": "-1"}, "access_key"),
    ],
)
def test_bad_api_parameters_are_400(staff_client: Client, params: dict, param: str) -> None:
    response = staff_client.get(UNPRICED_URL, params)
    assert response.status_code == 400, response.content
    assert response.json()["param"] == param


# --- Dashboard with many providers --------------------------------------------------------------

PROVIDERS = ["anthropic", "bedrock", "openai", "gemini", "ollama", "vllm"]


@pytest.fixture
def many_providers() -> None:
    Price.objects.all().delete()
    for provider, model in (
        ("anthropic", "claude-sonnet-4-5"),
        ("bedrock", "claude-sonnet-4-5"),
        ("openai", "gpt-4.1"),
        ("gemini", "gemini-2.5-pro"),
    ):
        make_price(provider=provider, model=model)
    rows = [
        {"provider": "anthropic", "requested_model": "claude-sonnet-4-5",
         "upstream_model": "claude-sonnet-4-5-20250929"},
        {"provider": "bedrock", "requested_model": "claude-sonnet-4-5",
         "upstream_model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
         "fallback_reason": "anthropic_529"},
        {"provider": "openai", "requested_model": "openai/gpt-4.1", "upstream_model": "gpt-4.1"},
        {"provider": "openai", "requested_model": "fast", "upstream_model": "gpt-9"},
        {"provider": "gemini", "requested_model": "gemini-2.5-pro",
         "upstream_model": "gemini-2.5-pro"},
        {"provider": "ollama", "requested_model": "qwen3", "upstream_model": "qwen3"},
        {"provider": "vllm", "requested_model": "vllm/llama", "upstream_model": "llama"},
    ]  # fmt: skip
    make_events({**row, "occurred_at": T0 + timedelta(hours=n)} for n, row in enumerate(rows))
    usage_rollup()


def test_the_dashboard_splits_by_every_provider(staff_client: Client, many_providers: None) -> None:
    response = staff_client.get(reverse("admin:usage_dashboard"), WINDOW)
    assert response.status_code == 200
    page = response.content.decode()
    assert response.context["report"].providers == PROVIDERS
    # Every provider in each chart and its legend, in its own colour wherever it is drawn.
    for chart_id in ("chart-tokens", "chart-cost", "chart-share"):
        chart = re.search(rf'<svg[^>]*id="{chart_id}".*?</svg>', page, re.S)
        assert chart, chart_id
        legend = re.search(r'<g class="legend".*?</g>', chart.group(0), re.S)
        assert legend
        for provider in PROVIDERS:
            assert f'data-series="{provider}"' in legend.group(0), (chart_id, provider)
            assert charts.provider_color(provider) in chart.group(0)
    for provider in ("anthropic", "bedrock", "openai", "gemini"):
        assert f'fill="{charts.provider_color(provider)}" d="M' in page  # bars drawn
    # Share by provider: every provider, no two-provider wording left.
    shares = response.context["provider_shares"]
    assert [share["provider"] for share in shares] == PROVIDERS
    assert [share["requests"] for share in shares] == ["14.3%"] * 2 + ["28.6%"] + ["14.3%"] * 3
    assert 'id="usage-provider-shares"' in page
    assert page.count('<li data-provider="') == len(PROVIDERS)
    assert "Anthropic / Bedrock" not in page and "Bedrock share" not in page
    # The fallback rate stays.
    cards = {card["label"]: card["value"] for card in response.context["cards"]}
    assert cards["Fallback rate"] == "14.3%"
    # A column pair per provider in the data table.
    header = re.search(r"<thead><tr>\s*<th scope=\"col\">Bucket.*?</tr></thead>", page, re.S)
    assert header and all(f"{p} tokens" in header.group(0) for p in PROVIDERS)


def test_the_dashboard_lists_usage_without_a_price(
    staff_client: Client, many_providers: None
) -> None:
    response = staff_client.get(reverse("admin:usage_dashboard"), WINDOW)
    page = response.content.decode()
    rows = response.context["unpriced"]
    assert [(r["usage"].provider, r["usage"].upstream_model) for r in rows] == [("openai", "gpt-9")]
    assert 'id="usage-unpriced"' in page
    links = re.findall(r'<a class="addlink" href="([^"]+)">as ([^<]+)</a>', page)
    assert [name for _, name in links] == ["gpt-9", "fast"]
    target = urlsplit(links[0][0].replace("&amp;", "&"))
    assert target.path == reverse("admin:usage_price_add")
    assert parse_qs(target.query) == {"provider": ["openai"], "model": ["gpt-9"]}
    # The link opens the price form filled in.
    form = staff_client.get(links[0][0].replace("&amp;", "&")).content.decode()
    assert re.search(r'name="provider"[^>]*value="openai"', form)
    assert re.search(r'name="model"[^>]*value="gpt-9"', form)
    # And as CSV, with the same filters.
    export = staff_client.get(reverse("admin:usage_dashboard"), {**WINDOW, "export": "unpriced"})
    assert export["Content-Type"].startswith("text/csv")
    assert "unpriced-all-" in export["Content-Disposition"]
    lines = export.content.decode().splitlines()
    assert lines[0].startswith("provider,upstream_model,requested_model,events,input_tokens")
    assert lines[1:] == ["openai,gpt-9,fast,1,1000,200,0,0,1200,2025-03-01T12:00:00+00:00,"
                         "2025-03-01T12:00:00+00:00"]  # fmt: skip
    # Filtered to a provider with everything priced, the section is gone.
    priced = staff_client.get(reverse("admin:usage_dashboard"), {**WINDOW, "provider": "vllm"})
    assert priced.status_code == 200
    assert priced.context["unpriced"] == []
    assert 'id="usage-unpriced"' not in priced.content.decode()


def test_viewers_who_cannot_add_prices_get_no_links(client: Client, many_providers: None) -> None:
    user = User.objects.create_user(email="analyst@example.com", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_usageaggregate"))
    client.force_login(user)
    page = client.get(reverse("admin:usage_dashboard"), WINDOW).content.decode()
    assert 'id="usage-unpriced"' in page
    assert reverse("admin:usage_price_add") not in page


def test_a_generic_provider_filter_is_accepted(staff_client: Client, many_providers: None) -> None:
    response = staff_client.get(reverse("admin:usage_dashboard"), {**WINDOW, "provider": "vllm"})
    assert response.context["report"].providers == ["vllm"]
    assert '<option value="vllm">' not in response.content.decode()  # not a credential yet
    bad = staff_client.get(reverse("admin:usage_dashboard"), {**WINDOW, "provider": "No Such!"})
    assert "report" not in bad.context
    assert "unknown provider" in bad.content.decode()


# --- Price admin --------------------------------------------------------------------------------


def test_the_price_list_filters_by_usage_without_a_price(staff_client: Client) -> None:
    now = timezone.now()
    Price.objects.filter(provider="openai", model="gpt-4.1").delete()
    make_price(provider="openai", model="gpt-4.1", valid_from=now - timedelta(hours=1))
    make_event(provider="openai", requested_model="gpt-4.1", upstream_model="gpt-4.1",
               occurred_at=now - timedelta(hours=3))  # fmt: skip
    make_event(provider="gemini", requested_model="gemini-9", upstream_model="gemini-9",
               occurred_at=now - timedelta(days=3))  # fmt: skip
    url = reverse("admin:usage_price_changelist")

    plain = staff_client.get(url).content.decode()
    assert 'id="usage-unpriced"' not in plain
    assert "?unpriced=7" in plain

    last_day = staff_client.get(url, {"unpriced": "1"})
    assert last_day.status_code == 200
    page = last_day.content.decode()
    assert 'id="usage-unpriced"' in page
    # The row that starts too late is the one listed; the gemini usage is older than a day.
    assert list(last_day.context["cl"].result_list) == [
        Price.objects.get(provider="openai", model="gpt-4.1")
    ]
    assert "gemini-9" not in page
    week = staff_client.get(url, {"unpriced": "7"})
    assert list(week.context["cl"].result_list) == [
        Price.objects.get(provider="openai", model="gpt-4.1")
    ]
    # Equal tokens: by provider.
    assert [r["usage"].upstream_model for r in week.context["unpriced"]] == ["gemini-9", "gpt-4.1"]
    add = reverse("admin:usage_price_add") + "?provider=gemini&amp;model=gemini-9"
    assert add in week.content.decode()


def test_the_price_list_says_when_everything_is_priced(staff_client: Client) -> None:
    response = staff_client.get(reverse("admin:usage_price_changelist"), {"unpriced": "30"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    assert "Every event in this period has a price" in response.content.decode()


# --- Charts -------------------------------------------------------------------------------------


def test_a_long_legend_wraps_and_pushes_the_plot_down() -> None:
    names = [*PROVIDERS, "groq", "together-ai", "fireworks", "deepinfra"]
    series = [charts.ChartSeries(name, charts.provider_color(name), [1.0]) for name in names]
    narrow = charts.stacked_bar_chart(
        chart_id="c", title="t", summary="s", labels=["a"], series=series,
        formatter=charts.format_count, width=520,
    )  # fmt: skip
    wide = charts.stacked_bar_chart(
        chart_id="c", title="t", summary="s", labels=["a"], series=series[:2],
        formatter=charts.format_count, width=520,
    )  # fmt: skip
    assert charts.legend_extra_height(series, 520) > 0
    assert charts.legend_extra_height(series[:2], 520) == 0
    legend = re.search(r'<g class="legend".*?</g>', narrow, re.S)
    assert legend
    xs = [float(x) for x in re.findall(r'<rect x="(-?[\d.]+)"', legend.group(0))]
    ys = {float(y) for y in re.findall(r'<rect x="[-\d.]+" y="([\d.]+)"', legend.group(0))}
    assert len(xs) == len(names) and min(xs) >= 0
    assert len(ys) > 1  # more than one line
    height = float(re.search(r'viewBox="0 0 520 ([\d.]+)"', narrow).group(1))  # type: ignore[union-attr]
    assert height == 260 + charts.legend_extra_height(series, 520)
    assert 'viewBox="0 0 520 260"' in wide
    # The hover target (the plot's top) starts below the legend.
    top = float(
        re.search(r'<g class="hover-targets"><rect x="[\d.]+" y="([\d.]+)"', narrow).group(1)
    )  # type: ignore[union-attr]
    assert top == max(ys) + 12 + 10
