"""Prices and costs: the arithmetic, model-name fallbacks, validity windows and the seed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usage import pricing
from usage.models import Price
from usage.pricing import (
    PriceWindow,
    cost_of_tokens,
    event_cost,
    model_name_candidates,
    price_at,
    price_micros,
    price_windows,
)
from usage.tests.factories import make_price

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def window(input_="3", output="15", cache_read="0.30", cache_write="3.75") -> PriceWindow:
    return PriceWindow(
        provider="anthropic",
        model="m",
        valid_from=T0,
        valid_until=None,
        input_per_mtok=Decimal(input_),
        output_per_mtok=Decimal(output),
        cache_read_per_mtok=Decimal(cache_read),
        cache_write_per_mtok=Decimal(cache_write),
    )


def tokens(input_=0, output=0, cache_read=0, cache_write=0) -> dict[str, int]:
    return {
        "input_tokens": input_,
        "output_tokens": output,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
    }


# --- arithmetic -----------------------------------------------------------------------------


def test_cost_of_each_token_kind_at_its_own_price():
    price = window()
    assert cost_of_tokens(**tokens(input_=1_000_000), price=price) == Decimal("3")
    assert cost_of_tokens(**tokens(output=1_000_000), price=price) == Decimal("15")
    assert cost_of_tokens(**tokens(cache_read=1_000_000), price=price) == Decimal("0.3")
    assert cost_of_tokens(**tokens(cache_write=1_000_000), price=price) == Decimal("3.75")
    assert cost_of_tokens(**tokens(1000, 200, 5000, 100), price=price) == Decimal("0.007875")


def test_cost_is_rounded_half_up_to_8_places_once_per_event():
    tiny = window(input_="0.000005")  # 5e-12 USD per token
    assert cost_of_tokens(**tokens(input_=999), price=tiny) == Decimal("0")  # 0.4995e-8
    assert cost_of_tokens(**tokens(input_=1000), price=tiny) == Decimal("0.00000001")  # 0.5e-8
    assert cost_of_tokens(**tokens(input_=2999), price=tiny) == Decimal("0.00000001")
    assert cost_of_tokens(**tokens(input_=3000), price=tiny) == Decimal("0.00000002")
    assert cost_of_tokens(**tokens(), price=tiny) == Decimal(0)


prices = st.decimals(min_value=0, max_value=1000, places=6)
counts = st.integers(min_value=0, max_value=10**9)


@given(counts, counts, counts, counts, prices, prices, prices, prices)
def test_cost_equals_exact_decimal_arithmetic(i, o, r, w, pi, po, pr, pw):
    price = window(str(pi), str(po), str(pr), str(pw))
    exact = (i * pi + o * po + r * pr + w * pw) / Decimal(10**6)
    expected = exact.quantize(Decimal("0.00000001"), rounding=ROUND_HALF_UP)
    assert cost_of_tokens(**tokens(i, o, r, w), price=price) == expected


def test_price_micros_is_exact_and_refuses_finer_prices():
    assert price_micros(Decimal("3")) == 3_000_000
    assert price_micros(Decimal("0.000001")) == 1
    with pytest.raises(ValueError, match="6 decimal places"):
        price_micros(Decimal("0.0000001"))


@pytest.mark.parametrize(
    ("model", "candidates"),
    [
        ("claude-sonnet-4-5", ["claude-sonnet-4-5"]),
        ("claude-sonnet-4-5-20250929", ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5"]),
        ("claude-opus-4-6[1m]", ["claude-opus-4-6[1m]", "claude-opus-4-6"]),
        ("claude-3-7-sonnet-latest", ["claude-3-7-sonnet-latest", "claude-3-7-sonnet"]),
        ("", [""]),
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            [
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5",
            ],
        ),
        (
            "arn:aws:bedrock:eu-west-1:1:inference-profile/eu.anthropic.claude-haiku-4-5-v1:0",
            [
                "arn:aws:bedrock:eu-west-1:1:inference-profile/eu.anthropic.claude-haiku-4-5-v1:0",
                "eu.anthropic.claude-haiku-4-5-v1:0",
                "claude-haiku-4-5",
            ],
        ),
        ("claude-sonnet-4-5@20250929", ["claude-sonnet-4-5@20250929", "claude-sonnet-4-5"]),
        ("gpt-4o-2024-08-06", ["gpt-4o-2024-08-06", "gpt-4o"]),
        ("gemini-2.0-flash-001", ["gemini-2.0-flash-001", "gemini-2.0-flash"]),
        ("models/gemini-2.5-pro", ["models/gemini-2.5-pro", "gemini-2.5-pro"]),
        # Names that only look like those keep to themselves.
        ("text-embedding-004", ["text-embedding-004"]),
        ("llama3.1:8b", ["llama3.1:8b"]),
        ("gpt-4.1", ["gpt-4.1"]),
    ],
)
def test_model_name_candidates(model, candidates):
    assert model_name_candidates(model) == candidates


# --- price table ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_price_valid_at_a_moment_is_the_latest_started_one():
    Price.objects.all().delete()
    make_price(model="m", valid_from=T0, input_per_mtok="3")
    make_price(model="m", valid_from=T0 + timedelta(days=10), input_per_mtok="2")
    assert price_at(provider="anthropic", model="m", at=T0 - timedelta(microseconds=1)) is None
    assert price_at(provider="anthropic", model="m", at=T0).input_per_mtok == 3
    late = T0 + timedelta(days=10) - timedelta(microseconds=1)
    assert price_at(provider="anthropic", model="m", at=late).input_per_mtok == 3
    assert price_at(provider="anthropic", model="m", at=T0 + timedelta(days=10)).input_per_mtok == 2
    assert (
        price_at(provider="anthropic", model="m", at=T0 + timedelta(days=900)).input_per_mtok == 2
    )
    assert price_at(provider="bedrock", model="m", at=T0) is None


@pytest.mark.django_db
def test_windows_chain_without_gaps_per_provider():
    Price.objects.all().delete()
    make_price(model="m", valid_from=T0)
    make_price(model="m", valid_from=T0 + timedelta(days=1))
    make_price(provider="bedrock", model="m", valid_from=T0 + timedelta(days=5))
    windows = price_windows(
        [("anthropic", "", "m"), ("bedrock", "m", "m"), ("anthropic", "other", "other")]
    )
    assert [(w.provider, w.valid_from, w.valid_until) for w in windows] == [
        ("anthropic", T0, T0 + timedelta(days=1)),
        ("anthropic", T0 + timedelta(days=1), None),
        ("bedrock", T0 + timedelta(days=5), None),
    ]
    assert price_windows([]) == []


@pytest.mark.django_db
def test_dated_snapshot_falls_back_to_its_alias_but_an_exact_row_wins():
    Price.objects.all().delete()
    make_price(model="claude-sonnet-9", input_per_mtok="3")
    make_price(model="claude-sonnet-9-20990101", input_per_mtok="1")
    alias = price_at(provider="anthropic", model="claude-sonnet-9-20991231", at=T0)
    assert alias is not None
    assert (alias.model, alias.input_per_mtok) == ("claude-sonnet-9-20991231", 3)
    exact = price_at(provider="anthropic", model="claude-sonnet-9-20990101", at=T0)
    assert exact.input_per_mtok == 1


@pytest.mark.django_db
def test_event_cost_uses_the_price_valid_at_the_event():
    Price.objects.all().delete()
    make_price(model="m", valid_from=T0, input_per_mtok="3")
    make_price(model="m", valid_from=T0 + timedelta(hours=1), input_per_mtok="6")
    common = {"provider": "anthropic", "model": "m", **tokens(input_=1000)}
    assert event_cost(occurred_at=T0, **common) == Decimal("0.003")
    assert event_cost(occurred_at=T0 + timedelta(hours=2), **common) == Decimal("0.006")
    assert event_cost(occurred_at=T0 - timedelta(days=1), **common) is None
    assert event_cost(**{**common, "model": "unknown"}, occurred_at=T0) is None


@pytest.mark.django_db
def test_without_a_price_only_local_and_generic_servers_are_free():
    Price.objects.filter(provider__in=["ollama", "vllm"]).delete()
    common = {"model": "unknown", "occurred_at": T0, **tokens(input_=1000)}
    for provider in ("anthropic", "bedrock", "openai", "gemini"):
        assert event_cost(provider=provider, **common) is None, provider
    for provider in ("ollama", "vllm", "groq"):
        assert event_cost(provider=provider, **common) == 0, provider
    # A price for one of its models makes a server priced: its other models are gaps.
    make_price(provider="vllm", model="llama-3")
    assert event_cost(provider="vllm", **common) is None
    assert event_cost(provider="ollama", **common) == 0


CURRENT_MODELS = [
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-5-20251101",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-1-20250805",
    "claude-opus-4-20250514",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-20241022",
]


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["anthropic", "bedrock"])
def test_seeded_prices_cover_current_models_on_both_providers(provider):
    now = datetime.now(UTC)
    for model in CURRENT_MODELS:
        assert price_at(provider=provider, model=model, at=now) is not None, model
    sonnet = price_at(provider=provider, model="claude-sonnet-4-5", at=now)
    assert (sonnet.input_per_mtok, sonnet.output_per_mtok) == (3, 15)
    assert (sonnet.cache_read_per_mtok, sonnet.cache_write_per_mtok) == (Decimal("0.3"), 3.75)
    opus = price_at(provider=provider, model="claude-opus-4-6", at=now)
    assert (opus.input_per_mtok, opus.output_per_mtok) == (5, 25)
    haiku = price_at(provider=provider, model="claude-haiku-4-5-20251001", at=now)
    assert (haiku.input_per_mtok, haiku.output_per_mtok) == (1, 5)


def test_unpriced_models_are_logged_once_per_process(caplog, monkeypatch):
    monkeypatch.setattr(pricing, "_reported_unpriced", set())
    with caplog.at_level(logging.WARNING, logger="usage.pricing"):
        pricing.report_unpriced("anthropic", "mystery", 3)
        pricing.report_unpriced("anthropic", "mystery", 5)
        pricing.report_unpriced("bedrock", "mystery", 1)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "anthropic/mystery; 3 event(s)" in messages[0]
