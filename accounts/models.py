"""Users, their access keys and the provider credentials the gateway uses on their behalf.

Writes go through accounts.services; this module holds the schema and small state predicates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

# Bounds of a pool member's settings (the API and the forms refuse anything beyond them).
MAX_WEIGHT = 1000
MAX_LIMIT = 1_000_000_000
MAX_CONCURRENCY = 100_000


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("A user needs an email address.")
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person holding access keys; staff users are the admins."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Can log in to the admin.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ("email",)

    def __str__(self) -> str:
        return self.email


class AccessKey(models.Model):
    """A gateway key. Only its public prefix and an HMAC of the whole key are stored."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ROTATED = "rotated", "Rotated (in grace period)"
        REVOKED = "revoked", "Revoked"

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="access_keys")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False, help_text="HMAC-SHA256, hex.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    grace_ends_at = models.DateTimeField(
        null=True, blank=True, help_text="For a rotated key: when it stops working."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    replaced_by = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replaces",
        editable=False,
    )
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-created_at",)
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["status", "grace_ends_at"], name="accesskey_status_grace")
        ]

    def __str__(self) -> str:
        return f"{self.prefix} ({self.label})" if self.label else self.prefix

    def usable_at(self, moment: datetime) -> bool:
        """Whether the key authenticates requests at ``moment``."""
        if self.deleted_at is not None:
            return False
        if self.expires_at is not None and self.expires_at <= moment:
            return False
        if self.status == self.Status.ACTIVE:
            return True
        if self.status == self.Status.ROTATED:
            return self.grace_ends_at is not None and self.grace_ends_at > moment
        return False


class Provider(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic"
    BEDROCK = "bedrock", "AWS Bedrock"
    OPENAI = "openai", "OpenAI"
    GEMINI = "gemini", "Google Gemini"
    OLLAMA = "ollama", "Ollama"
    GENERIC = "generic", "Generic OpenAI-compatible server"


class BedrockApiMode(models.TextChoices):
    INVOKE = "invoke", "InvokeModel (Anthropic-native body)"
    CONVERSE = "converse", "Converse"


class ProviderCredential(models.Model):
    """A secret for one upstream, scoped globally, to one user or to one access key.

    The most specific scope wins (access key, then user, then global). The secret is stored only
    encrypted (accounts.crypto); ``secret_hint`` keeps its last four characters for recognition.
    A credential without a secret (Ollama, a keyless generic server) stores an empty ciphertext.
    Generic OpenAI-compatible servers are told apart by ``name``, which is empty for every other
    provider. Which fields each provider takes is checked in accounts.services.
    """

    provider = models.CharField(max_length=16, choices=Provider.choices)
    name = models.CharField(
        max_length=32,
        blank=True,
        help_text="Generic servers only: the name clients use in model ids (vllm/<model>); "
        "lowercase letters, digits, - and _.",
    )
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="credentials"
    )
    access_key = models.ForeignKey(
        AccessKey, null=True, blank=True, on_delete=models.CASCADE, related_name="credentials"
    )
    label = models.CharField(max_length=100, blank=True)
    region = models.CharField(
        max_length=32, blank=True, help_text="Bedrock only: AWS region, e.g. us-east-1."
    )
    api_mode = models.CharField(
        max_length=16,
        choices=BedrockApiMode.choices,
        blank=True,
        help_text="Bedrock only: which API answers fallback requests (default: InvokeModel).",
    )
    endpoint_url = models.CharField(
        max_length=200,
        blank=True,
        help_text="Where requests go, overriding the provider's default. Generic servers: the "
        "base URL (required), e.g. https://api.groq.com/openai.",
    )
    fallback_model = models.CharField(
        max_length=200,
        blank=True,
        help_text="Bedrock only: model used for requested models missing from the model map.",
    )
    enabled = models.BooleanField(
        default=True,
        help_text="A disabled credential is not used: the next more general one applies, or none.",
    )
    # Pool membership: every enabled credential of one provider (and name) and scope is a
    # member of that scope's pool; how members are chosen is the CredentialPool's strategy.
    weight = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(MAX_WEIGHT)],
        help_text="Share of the pool's requests under the weighted strategy (0: a standby, used "
        "only when every weighted member is unavailable).",
    )
    rpm_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LIMIT)],
        help_text="Requests per minute this key may send (empty: no limit).",
    )
    tpm_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LIMIT)],
        help_text="Tokens per minute this key may use (empty: no limit).",
    )
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONCURRENCY)],
        help_text="Requests this key may have in flight at once (empty: no limit).",
    )
    disabled_reason = models.CharField(
        max_length=500,
        blank=True,
        editable=False,
        help_text="Why the gateway disabled it (an exhausted quota, a refused key); cleared "
        "when it is enabled again.",
    )
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    secret_ciphertext = models.TextField(editable=False, blank=True)
    secret_hint = models.CharField(max_length=8, editable=False, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("provider", "name", "id")
        permissions = (
            (
                "redirect_providercredential",
                "Can change where a stored secret is sent without entering it again",
            ),
        )
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=Q(user__isnull=True) | Q(access_key__isnull=True),
                name="credential_one_scope",
            ),
        ]

    def __str__(self) -> str:
        name = f" {self.name}" if self.name else ""
        return f"{self.get_provider_display()}{name} ({self.scope_description})"

    @property
    def provider_key(self) -> str:
        """How the proxy finds this credential: the name of a generic server, else the provider."""
        return self.name or self.provider

    @property
    def scope_description(self) -> str:
        if self.access_key is not None:
            return f"key {self.access_key.prefix}"
        if self.user is not None:
            return f"user {self.user.email}"
        return "global"

    @property
    def fingerprint(self) -> str:
        return f"…{self.secret_hint}" if self.secret_hint else ""


class PoolStrategy(models.TextChoices):
    ROUND_ROBIN = "round_robin", "Round robin"
    WEIGHTED = "weighted", "Weighted random"
    LEAST_IN_FLIGHT = "least_in_flight", "Least requests in flight"
    LEAST_TOKENS = "least_tokens", "Least tokens used this minute"


class CredentialPool(models.Model):
    """How the members of a key pool are chosen, per provider key (a provider, or a generic
    server's name). One row applies to that provider's pools in every scope; without a row the
    strategy is round robin. Members are the ProviderCredential rows themselves."""

    provider = models.CharField(max_length=16, choices=Provider.choices)
    name = models.CharField(max_length=32, blank=True, help_text="Generic servers only.")
    strategy = models.CharField(
        max_length=16, choices=PoolStrategy.choices, default=PoolStrategy.ROUND_ROBIN
    )
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("provider", "name")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["provider", "name"], name="credential_pool_unique")
        ]

    def __str__(self) -> str:
        return f"{self.provider_key} pool ({self.get_strategy_display()})"

    @property
    def provider_key(self) -> str:
        return self.name or self.provider


class KeyCacheGeneration(models.Model):
    """One row, bumped on every change that affects whether a key works or what it may use.

    Every gateway process compares it with the value it last saw, at most once a second, and
    drops its cached key metadata when it moved: how a change made by a command or another
    worker reaches running processes without Redis (and while Redis is away).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"key cache generation {self.value}"
