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


class RoutingRule(models.Model):
    """Where matching requests go: tried in increasing ``position``, the first match wins.

    Every condition left empty matches anything; a request that matches no rule takes the
    default route (``provider/model`` addressing, model families, Claude's Bedrock fallback).
    Checks that span the rule and its targets live in proxy.rule_services.
    """

    class Stream(models.TextChoices):
        ANY = "any", "Streamed or not"
        STREAM = "stream", "Streamed only"
        NO_STREAM = "no_stream", "Not streamed only"

    class Strategy(models.TextChoices):
        ORDERED = "ordered", "In order (position)"
        WEIGHTED = "weighted", "Weighted random"
        ROUND_ROBIN = "round_robin", "Round-robin"

    name = models.CharField(max_length=100, unique=True)
    position = models.PositiveIntegerField(
        default=100, help_text="Rules are tried in increasing position; the first match wins."
    )
    enabled = models.BooleanField(default=True)
    model_pattern = models.CharField(
        max_length=200,
        blank=True,
        help_text="The model the client asked for, exact or a glob: cheap-*, claude-*, "
        "gpt-4.1?. Empty: any model.",
    )
    header_name = models.CharField(
        max_length=100, blank=True, help_text="A request header to match, e.g. x-gateway-route."
    )
    header_value = models.CharField(
        max_length=200,
        blank=True,
        help_text="The header's value, exact or a glob. Empty: the header is present.",
    )
    access_key = models.ForeignKey(
        "accounts.AccessKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="routing_rules",
    )
    user = models.ForeignKey(
        "accounts.User",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="routing_rules",
    )
    group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="routing_rules",
        help_text="Matches the keys of every user in this group.",
    )
    min_input_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Estimated input tokens, at least (locally estimated)."
    )
    max_input_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Estimated input tokens, at most."
    )
    stream = models.CharField(max_length=16, choices=Stream.choices, default=Stream.ANY)
    strategy = models.CharField(
        max_length=16,
        choices=Strategy.choices,
        default=Strategy.ORDERED,
        help_text="How the targets of one tier are ordered: by position, weighted random (the "
        "first pick by weight, the rest as failover), or taking turns.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="At most this many targets are tried per request. Empty: every target.",
    )
    deadline_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="No further target is tried once this many seconds have passed.",
    )
    description = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("position", "id")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The rule's own fields (its targets are checked with it, in proxy.rule_services)."""
        from proxy.rule_services import rule_errors

        errors = rule_errors(self)
        if errors:
            raise ValidationError(errors)


class RouteTarget(models.Model):
    """One place a rule sends requests: a provider (its key pool) and an upstream model."""

    rule = models.ForeignKey(RoutingRule, on_delete=models.CASCADE, related_name="targets")
    tier = models.PositiveSmallIntegerField(
        default=1, help_text="Tiers are tried in increasing order; a later tier is the failover."
    )
    provider = models.CharField(
        max_length=32,
        help_text="anthropic, bedrock, openai, gemini, ollama, or a generic server's name.",
    )
    model = models.CharField(
        max_length=200,
        blank=True,
        help_text="The upstream model. Empty: the model the client asked for (on Bedrock, its "
        "model-map entry).",
    )
    weight = models.PositiveIntegerField(
        default=1, help_text="Weighted strategy: the share of first picks in its tier."
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("tier", "position", "id")

    def __str__(self) -> str:
        model = self.model or "(requested model)"
        return f"tier {self.tier}: {self.provider}/{model}"
