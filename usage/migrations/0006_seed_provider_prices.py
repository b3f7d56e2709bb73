"""Seed list prices (USD per million tokens) of current OpenAI and Gemini models.

Only adds rows: a (provider, model) that already has any Price row is left alone, so admin edits
(and admin-added rows) survive, and running it again adds nothing. Reversing it removes only
the rows it added, unchanged.

Prices are the providers' standard (non-batch, non-priority) list prices as of VALID_FROM:

* OpenAI: https://platform.openai.com/docs/pricing and the model pages under
  https://developers.openai.com/api/docs/models/ ("Text tokens, per 1M tokens": input, cached
  input, output). gpt-5-nano ($0.05 / $0.005 / $0.40) and gpt-4.1-nano ($0.10 / $0.025 / $0.40)
  were checked against those model pages; the other figures are the published list prices as
  known to us, cross-checked against third-party summaries only, and should be verified by an
  admin (notably o3, whose price was cut from $10 / $40 to $2 / $8 in June 2025).
  OpenAI has no cache-write charge: prompt caching is automatic and written tokens bill as
  input, so cache write = input.
* Gemini: https://ai.google.dev/gemini-api/docs/pricing, paid tier. Prices there depend on the
  prompt size for gemini-2.5-pro (above 200k prompt tokens: $2.50 in, $15 out, $0.25 cached);
  a Price row has one rate, so the rows carry the rate for prompts up to 200k tokens and long
  prompts are under-counted. Audio input costs more than text on the Flash models; the rows
  carry the text/image/video rate. "Context caching" is the cache-read rate; storage per hour
  is not billed per token and is not modelled, so cache write = input. The 2.5 cache-read
  rates ($0.125, $0.03, $0.01) are those listed after Google's move to a 90% cached discount
  and were confirmed only through a third-party copy of the page.
  text-embedding-004 has no paid-tier price on the Gemini API (it is retired in favour of
  gemini-embedding-001), so it gets no row: its usage shows as unpriced until an admin decides.

Per-request surcharges (web search, grounding, images, audio) are outside the token price.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

VALID_FROM = datetime(2026, 12, 3, tzinfo=UTC)

# (input, output, cache read, cache write) per million tokens.
PRICES: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "openai": {
        "gpt-5": ("1.25", "10", "0.125", "1.25"),
        "gpt-5-mini": ("0.25", "2", "0.025", "0.25"),
        "gpt-5-nano": ("0.05", "0.40", "0.005", "0.05"),
        "gpt-4.1": ("2", "8", "0.50", "2"),
        "gpt-4.1-mini": ("0.40", "1.60", "0.10", "0.40"),
        "gpt-4.1-nano": ("0.10", "0.40", "0.025", "0.10"),
        "gpt-4o": ("2.50", "10", "1.25", "2.50"),
        "gpt-4o-mini": ("0.15", "0.60", "0.075", "0.15"),
        "o3": ("2", "8", "0.50", "2"),
        "o3-mini": ("1.10", "4.40", "0.55", "1.10"),
        "o4-mini": ("1.10", "4.40", "0.275", "1.10"),
        # Embeddings bill input only.
        "text-embedding-3-small": ("0.02", "0", "0", "0.02"),
        "text-embedding-3-large": ("0.13", "0", "0", "0.13"),
    },
    "gemini": {
        "gemini-2.5-pro": ("1.25", "10", "0.125", "1.25"),
        "gemini-2.5-flash": ("0.30", "2.50", "0.03", "0.30"),
        "gemini-2.5-flash-lite": ("0.10", "0.40", "0.01", "0.10"),
        "gemini-2.0-flash": ("0.10", "0.40", "0.025", "0.10"),
        "gemini-2.0-flash-lite": ("0.075", "0.30", "0.075", "0.075"),
        "gemini-embedding-001": ("0.15", "0", "0", "0.15"),
    },
}


def seed(apps, schema_editor):
    Price = apps.get_model("usage", "Price")
    for provider, models in PRICES.items():
        priced = set(
            Price.objects.filter(provider=provider, model__in=models).values_list(
                "model", flat=True
            )
        )
        Price.objects.bulk_create(
            [
                Price(
                    provider=provider,
                    model=model,
                    valid_from=VALID_FROM,
                    input_per_mtok=Decimal(input_),
                    output_per_mtok=Decimal(output),
                    cache_read_per_mtok=Decimal(cache_read),
                    cache_write_per_mtok=Decimal(cache_write),
                )
                for model, (input_, output, cache_read, cache_write) in models.items()
                if model not in priced
            ]
        )


def unseed(apps, schema_editor):
    Price = apps.get_model("usage", "Price")
    for provider, models in PRICES.items():
        for model, (input_, output, cache_read, cache_write) in models.items():
            Price.objects.filter(
                provider=provider,
                model=model,
                valid_from=VALID_FROM,
                input_per_mtok=Decimal(input_),
                output_per_mtok=Decimal(output),
                cache_read_per_mtok=Decimal(cache_read),
                cache_write_per_mtok=Decimal(cache_write),
            ).delete()


class Migration(migrations.Migration):
    dependencies = [("usage", "0005_dead_letter_events")]
    operations = [migrations.RunPython(seed, unseed)]
