"""The seeded OpenAI and Gemini prices start when those list prices took effect (migration 0008),
not on the day they were seeded: earlier usage of those models is priced, admin edits and an
admin's own price history are left alone, and reversing restores the seed's date."""

from __future__ import annotations

import importlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from usage.models import Price
from usage.pricing import event_cost, price_at
from usage.tests.factories import make_price

pytestmark = pytest.mark.django_db

SEED = importlib.import_module("usage.migrations.0006_seed_provider_prices")
BACKDATE = importlib.import_module("usage.migrations.0008_backdate_provider_prices")


def _seeded_rows() -> list[tuple[str, str]]:
    return [(provider, model) for provider, models in SEED.PRICES.items() for model in models]


def _valid_from(provider: str, model: str) -> list:
    return list(
        Price.objects.filter(provider=provider, model=model)
        .order_by("valid_from")
        .values_list("valid_from", flat=True)
    )


def test_every_seeded_model_has_a_date_it_took_effect() -> None:
    assert sorted(_seeded_rows()) == sorted(
        (provider, model) for provider, models in BACKDATE.TOOK_EFFECT.items() for model in models
    )
    for provider, model in _seeded_rows():
        assert BACKDATE.TOOK_EFFECT[provider][model] < SEED.VALID_FROM, model


@pytest.mark.parametrize(("provider", "model"), _seeded_rows())
def test_a_seeded_price_applies_from_when_it_took_effect(provider: str, model: str) -> None:
    took_effect = BACKDATE.TOOK_EFFECT[provider][model]
    price = price_at(provider=provider, model=model, at=took_effect)
    assert price is not None
    assert price.input_per_mtok == Decimal(SEED.PRICES[provider][model][0])
    assert price_at(provider=provider, model=model, at=took_effect - timedelta(seconds=1)) is None


def test_usage_from_before_the_seed_day_is_priced() -> None:
    at = BACKDATE.TOOK_EFFECT["openai"]["gpt-4.1"] + timedelta(days=30)
    assert at < SEED.VALID_FROM
    priced = event_cost(
        provider="openai",
        model="openai/gpt-4.1",
        upstream_model="gpt-4.1-2025-04-14",
        occurred_at=at,
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_tokens=0,
        cache_write_tokens=0,
    )
    assert priced == Decimal(2 + 8)


def test_admin_edits_and_admin_history_are_left_alone() -> None:
    BACKDATE.restore(django_apps, None)
    assert _valid_from("openai", "gpt-5") == [SEED.VALID_FROM]
    # An edited price, an earlier price of the admin's, a row of the admin's on the very date.
    Price.objects.filter(provider="openai", model="gpt-4.1").update(input_per_mtok=Decimal("9"))
    history = BACKDATE.TOOK_EFFECT["gemini"]["gemini-2.5-flash"] - timedelta(days=60)
    make_price(provider="gemini", model="gemini-2.5-flash", valid_from=history)
    on_the_date = BACKDATE.TOOK_EFFECT["openai"]["o3"]
    make_price(provider="openai", model="o3", valid_from=on_the_date, input_per_mtok="10")

    BACKDATE.backdate(django_apps, None)
    BACKDATE.backdate(django_apps, None)  # a second run changes nothing

    assert _valid_from("openai", "gpt-4.1") == [SEED.VALID_FROM]
    assert _valid_from("gemini", "gemini-2.5-flash") == [history, SEED.VALID_FROM]
    assert _valid_from("openai", "o3") == [on_the_date, SEED.VALID_FROM]
    for provider, model in _seeded_rows():
        if model not in ("gpt-4.1", "gemini-2.5-flash", "o3"):
            assert _valid_from(provider, model) == [BACKDATE.TOOK_EFFECT[provider][model]], model


def test_reversing_restores_the_seed_date_and_then_0006_removes_the_rows() -> None:
    Price.objects.filter(provider="gemini", model="gemini-2.0-flash").update(
        output_per_mtok=Decimal("0.5")
    )
    BACKDATE.restore(django_apps, None)
    assert _valid_from("openai", "gpt-4o") == [SEED.VALID_FROM]
    # The edited row is the admin's now: it keeps its date.
    assert _valid_from("gemini", "gemini-2.0-flash") == [
        BACKDATE.TOOK_EFFECT["gemini"]["gemini-2.0-flash"]
    ]
    SEED.unseed(django_apps, None)
    remaining = Price.objects.filter(provider__in=SEED.PRICES).values_list("model", flat=True)
    assert list(remaining) == ["gemini-2.0-flash"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_the_seeded_rows_both_ways() -> None:
    before = [("usage", "0007_reasoning_tokens")]
    after = [("usage", "0008_backdate_provider_prices")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        old_price = old_apps.get_model("usage", "Price")
        # Transactional tests empty every table afterwards: seed as 0006 did.
        old_price.objects.all().delete()
        SEED.seed(old_apps, None)
        assert set(old_price.objects.values_list("valid_from", flat=True)) == {SEED.VALID_FROM}

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new_price = executor.loader.project_state(after).apps.get_model("usage", "Price")
        moved = {(row.provider, row.model): row.valid_from for row in new_price.objects.all()}
        assert moved == {
            (provider, model): BACKDATE.TOOK_EFFECT[provider][model]
            for provider, model in _seeded_rows()
        }

        executor = MigrationExecutor(connection)
        executor.migrate(before)  # and back
        assert set(old_price.objects.values_list("valid_from", flat=True)) == {SEED.VALID_FROM}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
