"""The model map: which Bedrock model or inference profile answers for an Anthropic model name."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class ModelMapping(models.Model):
    anthropic_model = models.CharField(
        max_length=200, unique=True, help_text="Model name or alias as clients send it."
    )
    bedrock_model_id = models.CharField(
        max_length=200, help_text="Bedrock model ID or inference profile, e.g. global.anthropic…"
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The Bedrock model's output limit; larger max_tokens are lowered to it.",
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("anthropic_model",)

    def __str__(self) -> str:
        return f"{self.anthropic_model} → {self.bedrock_model_id}"


class ModelAlias(models.Model):
    """A model name clients may send, standing for ``provider/model`` (``fast`` → ``ollama/qwen3``).

    Aliases are looked up before any other routing; the target is checked when saved.
    """

    alias = models.CharField(
        max_length=200, unique=True, help_text="The model name as clients send it, e.g. fast."
    )
    target = models.CharField(
        max_length=300,
        help_text="provider/model it stands for, e.g. openai/gpt-4.1-mini or ollama/qwen3.",
    )
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("alias",)
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return f"{self.alias} → {self.target}"

    def clean(self) -> None:
        """The target must name a provider the gateway knows: checked when saved, never found
        out at request time."""
        from accounts.models import Provider, ProviderCredential

        provider, _, model = self.target.strip().partition("/")
        if not provider or not model:
            raise ValidationError(
                {"target": "Write provider/model, e.g. openai/gpt-4.1-mini or ollama/qwen3."}
            )
        builtin = set(Provider.values) - {Provider.GENERIC}
        generic = ProviderCredential.objects.filter(provider=Provider.GENERIC, name=provider)
        if provider not in builtin and not generic.exists():
            names = ", ".join(sorted(builtin))
            raise ValidationError(
                {
                    "target": f"Unknown provider {provider!r}: use one of {names}, or the name "
                    "of a generic server's credential."
                }
            )
        if self.alias.strip() == self.target.strip():
            raise ValidationError({"target": "An alias cannot stand for itself."})
