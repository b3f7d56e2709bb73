"""Seed the output-token limits of the seeded Claude models (Anthropic's model overview).

Models whose limit is not published in PROTOCOLS.md's sources are left without one (no
clamping); admins set it in the model map.
"""

from django.db import migrations

LIMITS = {
    "claude-sonnet-4-5-20250929": 64000,
    "claude-sonnet-4-5": 64000,
    "claude-opus-4-5-20251101": 64000,
    "claude-opus-4-5": 64000,
    "claude-haiku-4-5-20251001": 64000,
    "claude-haiku-4-5": 64000,
    "claude-opus-4-1-20250805": 32000,
    "claude-opus-4-1": 32000,
    "claude-opus-4-20250514": 32000,
    "claude-opus-4-0": 32000,
    "claude-sonnet-4-20250514": 64000,
    "claude-sonnet-4-0": 64000,
    "claude-3-7-sonnet-20250219": 64000,
    "claude-3-7-sonnet-latest": 64000,
    "claude-3-5-sonnet-20241022": 8192,
    "claude-3-5-haiku-20241022": 8192,
    "claude-3-5-haiku-latest": 8192,
}


def seed(apps, schema_editor):
    ModelMapping = apps.get_model("proxy", "ModelMapping")
    for name, limit in LIMITS.items():
        ModelMapping.objects.filter(anthropic_model=name, max_output_tokens__isnull=True).update(
            max_output_tokens=limit
        )


def unseed(apps, schema_editor):
    ModelMapping = apps.get_model("proxy", "ModelMapping")
    ModelMapping.objects.filter(anthropic_model__in=LIMITS).update(max_output_tokens=None)


class Migration(migrations.Migration):
    dependencies = [("proxy", "0003_max_output_tokens")]
    operations = [migrations.RunPython(seed, unseed)]
