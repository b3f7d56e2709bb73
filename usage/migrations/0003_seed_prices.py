"""Seed list prices (USD per million tokens) of the current Claude models on Anthropic and Bedrock.

Bedrock rows use the names clients request (the aggregate's ``model``), not Bedrock model IDs.
Bedrock's on-demand prices for global inference profiles equal Anthropic's; regional profiles
of newer models cost more, so admins running those edit the Bedrock rows. ``cache_write`` is the
5-minute cache write price. Admins add rows with a later ``valid_from`` when prices change.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

VALID_FROM = datetime(2024, 1, 1, tzinfo=UTC)

# (input, output, cache read, cache write) per million tokens.
OPUS_45 = ("5", "25", "0.50", "6.25")
OPUS_4 = ("15", "75", "1.50", "18.75")
SONNET = ("3", "15", "0.30", "3.75")
HAIKU_45 = ("1", "5", "0.10", "1.25")
HAIKU_35 = ("0.80", "4", "0.08", "1.00")
HAIKU_3 = ("0.25", "1.25", "0.03", "0.30")

PRICES = {
    "claude-opus-4-6": OPUS_45,
    "claude-opus-4-5-20251101": OPUS_45,
    "claude-opus-4-5": OPUS_45,
    "claude-opus-4-1-20250805": OPUS_4,
    "claude-opus-4-1": OPUS_4,
    "claude-opus-4-20250514": OPUS_4,
    "claude-opus-4-0": OPUS_4,
    "claude-sonnet-4-6": SONNET,
    "claude-sonnet-4-5-20250929": SONNET,
    "claude-sonnet-4-5": SONNET,
    "claude-sonnet-4-20250514": SONNET,
    "claude-sonnet-4-0": SONNET,
    "claude-3-7-sonnet-20250219": SONNET,
    "claude-3-7-sonnet-latest": SONNET,
    "claude-3-5-sonnet-20241022": SONNET,
    "claude-haiku-4-5-20251001": HAIKU_45,
    "claude-haiku-4-5": HAIKU_45,
    "claude-3-5-haiku-20241022": HAIKU_35,
    "claude-3-5-haiku-latest": HAIKU_35,
    "claude-3-haiku-20240307": HAIKU_3,
}
PROVIDERS = ("anthropic", "bedrock")


def seed(apps, schema_editor):
    Price = apps.get_model("usage", "Price")
    for provider in PROVIDERS:
        for model, (input_, output, cache_read, cache_write) in PRICES.items():
            Price.objects.get_or_create(
                provider=provider,
                model=model,
                valid_from=VALID_FROM,
                defaults={
                    "input_per_mtok": Decimal(input_),
                    "output_per_mtok": Decimal(output),
                    "cache_read_per_mtok": Decimal(cache_read),
                    "cache_write_per_mtok": Decimal(cache_write),
                },
            )


def unseed(apps, schema_editor):
    Price = apps.get_model("usage", "Price")
    Price.objects.filter(provider__in=PROVIDERS, model__in=PRICES, valid_from=VALID_FROM).delete()


class Migration(migrations.Migration):
    dependencies = [("usage", "0002_rollup_state")]
    operations = [migrations.RunPython(seed, unseed)]
