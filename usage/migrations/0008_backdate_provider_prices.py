"""Move the seeded OpenAI and Gemini prices (0006) back to when those list prices took effect.

0006 dated every row from the day it was written (2026-12-03), so every earlier event for those
models showed as unpriced, although the providers billed it at exactly these rates. Each row now
starts on the date its four figures were all in effect: the model's release or general
availability at that price, or the later price change or feature launch that set one of them.
Where a date is uncertain the later candidate is taken, so no event is priced at a rate that
was not yet the list price (it stays unpriced instead, and an admin can add an earlier row).

A row moves only while it is exactly as seeded (date and four prices) and its model has no
earlier row: an admin's edit, or an admin's own price history for the model, is left alone.
Reversing moves the rows still as this migration left them back to the seed's date.

OpenAI (https://platform.openai.com/docs/changelog and the model pages):

* gpt-5, gpt-5-mini, gpt-5-nano: released 2025-08-07 at these prices.
* gpt-4.1, gpt-4.1-mini, gpt-4.1-nano: released 2025-04-14 at these prices.
* gpt-4o ($2.50 / $10): the price of gpt-4o-2024-08-06, which the gpt-4o alias has named since
  2024-10-02 (before, gpt-4o-2024-05-13 at $5 / $15); cached input since prompt caching,
  2024-10-01.
* gpt-4o-mini: released 2024-07-18; its cached-input rate since prompt caching, 2024-10-01.
* o3: released 2025-04-16 at $10 / $40; these prices ($2 / $8) since the cut of 2025-06-10.
* o3-mini: released 2025-01-31. o4-mini: released 2025-04-16.
* text-embedding-3-small and -large: released 2024-01-25 at these prices.

Gemini (https://ai.google.dev/gemini-api/docs/changelog, paid tier):

* gemini-2.5-pro and gemini-2.5-flash: generally available 2025-06-17 (2.5 Flash's preview had
  other prices). gemini-2.5-flash-lite: generally available 2025-07-22.
* gemini-2.0-flash: generally available 2025-02-05. gemini-2.0-flash-lite: 2025-02-25.
* gemini-embedding-001: generally available 2025-07-14.

The 2.5 rows' cache-read rates are the 90%-discount ones, which 0006 could confirm only through a
third-party copy of Google's page and whose start date is not documented there: before it,
cached reads were dearer, so cache-heavy 2.5 usage between general availability and that change
is somewhat under-counted. Input and output, nearly all of the cost, are exact from these dates.
"""

import importlib
from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SEED = importlib.import_module("usage.migrations.0006_seed_provider_prices")

# When each seeded row's prices took effect (see the module docstring for why each date).
TOOK_EFFECT: dict[str, dict[str, datetime]] = {
    "openai": {
        "gpt-5": datetime(2025, 8, 7, tzinfo=UTC),
        "gpt-5-mini": datetime(2025, 8, 7, tzinfo=UTC),
        "gpt-5-nano": datetime(2025, 8, 7, tzinfo=UTC),
        "gpt-4.1": datetime(2025, 4, 14, tzinfo=UTC),
        "gpt-4.1-mini": datetime(2025, 4, 14, tzinfo=UTC),
        "gpt-4.1-nano": datetime(2025, 4, 14, tzinfo=UTC),
        "gpt-4o": datetime(2024, 10, 2, tzinfo=UTC),
        "gpt-4o-mini": datetime(2024, 10, 1, tzinfo=UTC),
        "o3": datetime(2025, 6, 10, tzinfo=UTC),
        "o3-mini": datetime(2025, 1, 31, tzinfo=UTC),
        "o4-mini": datetime(2025, 4, 16, tzinfo=UTC),
        "text-embedding-3-small": datetime(2024, 1, 25, tzinfo=UTC),
        "text-embedding-3-large": datetime(2024, 1, 25, tzinfo=UTC),
    },
    "gemini": {
        "gemini-2.5-pro": datetime(2025, 6, 17, tzinfo=UTC),
        "gemini-2.5-flash": datetime(2025, 6, 17, tzinfo=UTC),
        "gemini-2.5-flash-lite": datetime(2025, 7, 22, tzinfo=UTC),
        "gemini-2.0-flash": datetime(2025, 2, 5, tzinfo=UTC),
        "gemini-2.0-flash-lite": datetime(2025, 2, 25, tzinfo=UTC),
        "gemini-embedding-001": datetime(2025, 7, 14, tzinfo=UTC),
    },
}


def _move(apps, *, forward: bool) -> None:
    Price = apps.get_model("usage", "Price")
    for provider, models in SEED.PRICES.items():
        for model, (input_, output, cache_read, cache_write) in models.items():
            took_effect = TOOK_EFFECT[provider][model]
            before, after = (
                (SEED.VALID_FROM, took_effect) if forward else (took_effect, SEED.VALID_FROM)
            )
            rows = Price.objects.filter(provider=provider, model=model)
            as_seeded = rows.filter(
                valid_from=before,
                input_per_mtok=Decimal(input_),
                output_per_mtok=Decimal(output),
                cache_read_per_mtok=Decimal(cache_read),
                cache_write_per_mtok=Decimal(cache_write),
            )
            # Any other row from before the seed's date is the admin's history of the model.
            admin_history = rows.filter(valid_from__lt=SEED.VALID_FROM).exclude(
                pk__in=as_seeded.values("pk")
            )
            if admin_history.exists() or rows.filter(valid_from=after).exists():
                continue
            as_seeded.update(valid_from=after)


def backdate(apps, schema_editor):
    _move(apps, forward=True)


def restore(apps, schema_editor):
    _move(apps, forward=False)


class Migration(migrations.Migration):
    dependencies = [("usage", "0007_reasoning_tokens")]
    operations = [migrations.RunPython(backdate, restore)]
