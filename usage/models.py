"""Usage events, one per proxied request, written by usage.recording off the response path.

User and key are plain references without database constraints: an event must be writable even
when it is replayed from the spool after its key or user was removed, and the event table is the
hottest write path of the system.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.db import models
from django.utils import timezone

# The most tokens of one kind one event may carry. No request comes near it (the largest context
# windows are a few million tokens), and it keeps the rollup's arithmetic within 64 bits: a count
# times a price in millionths of a dollar per million tokens (usage.pricing) fits for prices up
# to $2,000 per million tokens, four of those terms still fit in their sum, and billions of
# events fit in one aggregate row. usage.recording bounds incoming counts to it; the rollup sets
# aside stored events beyond it.
MAX_TOKENS_PER_COUNT = 10**9
TOKEN_COUNT_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)


class UsageEvent(models.Model):
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    user = models.ForeignKey(
        "accounts.User",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    access_key = models.ForeignKey(
        "accounts.AccessKey",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    provider = models.CharField(max_length=16)
    requested_model = models.CharField(max_length=200, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    # The part of output_tokens spent reasoning, where the provider reports it (OpenAI, Gemini);
    # 0 otherwise. Informational: output_tokens already counts it, as providers bill it.
    reasoning_tokens = models.BigIntegerField(default=0, db_default=0)
    status_code = models.PositiveSmallIntegerField(default=200)
    streamed = models.BooleanField(default=False)
    client_disconnected = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(default=0)
    time_to_first_byte_ms = models.PositiveIntegerField(null=True, blank=True)
    fallback_reason = models.CharField(max_length=64, blank=True)
    session_id = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)

    class Meta:
        ordering = ("-occurred_at",)
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["user", "occurred_at"], name="usageevent_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.provider} {self.requested_model}"

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400


class Price(models.Model):
    """USD per million tokens for one provider and model, valid from ``valid_from`` on."""

    provider = models.CharField(max_length=16)
    model = models.CharField(
        max_length=200, help_text="Model name as clients request it, e.g. claude-sonnet-4-5."
    )
    valid_from = models.DateTimeField(default=timezone.now)
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cache_read_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cache_write_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)

    class Meta:
        ordering = ("provider", "model", "-valid_from")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["provider", "model", "valid_from"], name="price_unique_validity"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} from {self.valid_from:%Y-%m-%d}"


class Bucket(models.TextChoices):
    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"
    DAY = "day", "Day"
    WEEK = "week", "Week (from Monday)"
    MONTH = "month", "Month"


# The summed counters of an aggregate row (cost_usd aside), in one place for the roll-up's SQL
# and the report selectors.
AGGREGATE_COUNT_FIELDS: tuple[str, ...] = (
    "requests",
    "errors",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)


class UsageAggregate(models.Model):
    """Sums of usage events per bucket (UTC start) and dimensions.

    Missing dimensions are stored as 0 / "" rather than NULL so that the unique key, and so the
    upsert of the rollup, also matches them (NULLs never conflict).
    """

    bucket = models.CharField(max_length=8, choices=Bucket.choices)
    bucket_start = models.DateTimeField()
    user_id = models.BigIntegerField(default=0)
    access_key_id = models.BigIntegerField(default=0)
    provider = models.CharField(max_length=16)
    model = models.CharField(max_length=200)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    fallbacks = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=8, default=0)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["bucket", "bucket_start", "user_id", "access_key_id", "provider", "model"],
                name="usageaggregate_unique_bucket",
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["bucket", "bucket_start"], name="usageagg_bucket_start"),
            models.Index(fields=["bucket", "user_id", "bucket_start"], name="usageagg_user"),
            models.Index(fields=["bucket", "access_key_id", "bucket_start"], name="usageagg_key"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket} {self.bucket_start:%Y-%m-%d %H:%M} {self.provider}/{self.model}"


class PendingUsageEvent(models.Model):
    """An event not rolled up yet (see usage.rollup).

    A database trigger (migration 0002) adds a row for every event inserted, whatever the code
    path (ORM, bulk insert, raw SQL, COPY); the rollup deletes the rows in the transaction that
    adds their events to the aggregates. The events table itself is never updated.
    """

    event_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"pending event {self.event_id}"


class DeadLetterUsageEvent(models.Model):
    """An event the rollup could not add to the aggregates, set aside instead of retried forever.

    A rollup batch that fails with a data error (a sum beyond 64 bits, say) is split until the
    events that cannot be applied are found; those leave the queue for this table, with the
    error, and every other event of the batch is counted. Admins see them in the admin and can
    queue them again once the cause is fixed (usage.rollup.usage_dead_letters_requeue).
    """

    event = models.OneToOneField(
        UsageEvent,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    reason = models.TextField()
    set_aside_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "dead-letter usage event"

    def __str__(self) -> str:
        return f"event {self.event_id} set aside at {self.set_aside_at:%Y-%m-%d %H:%M:%S}"


class UsageRollupState(models.Model):
    """Bookkeeping of the usage rollup; a single row (pk 1), see usage.rollup."""

    pruned_before = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Raw events that occurred before this moment may have been pruned; "
        "aggregates before it cannot be rebuilt.",
    )
    last_rollup_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "usage rollup state"


class MaintenanceLease(models.Model):
    """A named lock held until ``expires_at``; the database fallback of usage.locks."""

    name = models.CharField(max_length=64, unique=True)
    owner = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
