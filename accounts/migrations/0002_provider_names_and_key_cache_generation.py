"""Credentials for every provider (generic servers by name; no secret for some) and the key
cache's generation counter in the database."""

from typing import Any

from django.db import migrations, models


def forward(apps: Any, schema_editor: Any) -> None:
    credential_model = apps.get_model("accounts", "ProviderCredential")
    # The API mode means something for Bedrock only; other providers had the old default.
    credential_model.objects.exclude(provider="bedrock").update(api_mode="")
    credential_model.objects.filter(provider="bedrock", api_mode="").update(api_mode="invoke")
    apps.get_model("accounts", "KeyCacheGeneration").objects.get_or_create(id=1)


def backward(apps: Any, schema_editor: Any) -> None:
    apps.get_model("accounts", "ProviderCredential").objects.filter(api_mode="").update(
        api_mode="invoke"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="KeyCacheGeneration",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(
                        default=1, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("value", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AlterModelOptions(
            name="providercredential",
            options={
                "ordering": ("provider", "name", "id"),
                "permissions": (
                    (
                        "redirect_providercredential",
                        "Can change where a stored secret is sent without entering it again",
                    ),
                ),
            },
        ),
        migrations.RemoveConstraint(
            model_name="providercredential",
            name="credential_unique_global",
        ),
        migrations.RemoveConstraint(
            model_name="providercredential",
            name="credential_unique_user",
        ),
        migrations.RemoveConstraint(
            model_name="providercredential",
            name="credential_unique_access_key",
        ),
        migrations.AddField(
            model_name="providercredential",
            name="name",
            field=models.CharField(
                blank=True,
                help_text="Generic servers only: the name clients use in model ids (vllm/<model>); lowercase letters, digits, - and _.",
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="providercredential",
            name="api_mode",
            field=models.CharField(
                blank=True,
                choices=[
                    ("invoke", "InvokeModel (Anthropic-native body)"),
                    ("converse", "Converse"),
                ],
                help_text="Bedrock only: which API answers fallback requests (default: InvokeModel).",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="providercredential",
            name="endpoint_url",
            field=models.CharField(
                blank=True,
                help_text="Where requests go, overriding the provider's default. Generic servers: the base URL (required), e.g. https://api.groq.com/openai.",
                max_length=200,
            ),
        ),
        migrations.AlterField(
            model_name="providercredential",
            name="provider",
            field=models.CharField(
                choices=[
                    ("anthropic", "Anthropic"),
                    ("bedrock", "AWS Bedrock"),
                    ("openai", "OpenAI"),
                    ("gemini", "Google Gemini"),
                    ("ollama", "Ollama"),
                    ("generic", "Generic OpenAI-compatible server"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="providercredential",
            name="region",
            field=models.CharField(
                blank=True, help_text="Bedrock only: AWS region, e.g. us-east-1.", max_length=32
            ),
        ),
        migrations.AlterField(
            model_name="providercredential",
            name="secret_ciphertext",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddConstraint(
            model_name="providercredential",
            constraint=models.UniqueConstraint(
                condition=models.Q(("access_key__isnull", True), ("user__isnull", True)),
                fields=("provider", "name"),
                name="credential_unique_global",
            ),
        ),
        migrations.AddConstraint(
            model_name="providercredential",
            constraint=models.UniqueConstraint(
                condition=models.Q(("user__isnull", False)),
                fields=("provider", "name", "user"),
                name="credential_unique_user",
            ),
        ),
        migrations.AddConstraint(
            model_name="providercredential",
            constraint=models.UniqueConstraint(
                condition=models.Q(("access_key__isnull", False)),
                fields=("provider", "name", "access_key"),
                name="credential_unique_access_key",
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
