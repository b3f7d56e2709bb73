"""Seed the model map with the current Claude models (inference profiles per PROTOCOLS.md §3).

The global profile is used where it exists, else the US one. Admins edit the table afterwards.
"""

from django.db import migrations

SEED = {
    "claude-opus-4-6": "global.anthropic.claude-opus-4-6-v1",
    "claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6",
    "claude-sonnet-4-5-20250929": "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-sonnet-4-5": "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-opus-4-5-20251101": "global.anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-5": "global.anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-haiku-4-5-20251001": "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-haiku-4-5": "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-1-20250805": "us.anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-1": "us.anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-20250514": "us.anthropic.claude-opus-4-20250514-v1:0",
    "claude-opus-4-0": "us.anthropic.claude-opus-4-20250514-v1:0",
    "claude-sonnet-4-20250514": "global.anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-sonnet-4-0": "global.anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-3-7-sonnet-20250219": "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "claude-3-7-sonnet-latest": "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "claude-3-5-sonnet-20241022": "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "claude-3-5-haiku-20241022": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "claude-3-5-haiku-latest": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
}


def seed(apps, schema_editor):
    ModelMapping = apps.get_model("proxy", "ModelMapping")
    for anthropic_model, bedrock_model_id in SEED.items():
        ModelMapping.objects.get_or_create(
            anthropic_model=anthropic_model, defaults={"bedrock_model_id": bedrock_model_id}
        )


def unseed(apps, schema_editor):
    ModelMapping = apps.get_model("proxy", "ModelMapping")
    ModelMapping.objects.filter(anthropic_model__in=SEED).delete()


class Migration(migrations.Migration):
    dependencies = [("proxy", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
