"""Request log records: the per-request metadata beyond the usage event, bodies, media, levels.

A request's common facts (time, user, key, provider, models, status, timings, tokens, cost,
fallback reason, session) live in its ``usage.UsageEvent`` only; ``RequestLog`` adds what the
log viewer needs besides (surface, attempts, credential fingerprint, client) and is joined to
the event by ``event_id``. Bodies live in their own table, compressed, with their own
retention; media referred to by bodies are stored once per SHA-256 in Django's storage.

No database constraints to the usage event, users or keys: log rows are written by the usage
writer in bulk, possibly replayed from the spool after the key was removed.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone


class LogLevel(models.TextChoices):
    OFF = "off", "Off (usage only)"
    METADATA = "metadata", "Metadata"
    FULL = "full", "Full (request and response bodies)"


class RequestLog(models.Model):
    """One proxied request, logged at level ``metadata`` or ``full``."""

    event = models.OneToOneField(
        "usage.UsageEvent",
        to_field="event_id",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="request_log",
    )
    # The request's moment and id again: the list is ordered by the one and searched by the
    # other without touching the (much larger) event table.
    occurred_at = models.DateTimeField()
    request_id = models.CharField(max_length=100)
    level = models.CharField(max_length=8, choices=LogLevel.choices)
    surface = models.CharField(max_length=16, blank=True)
    credential_fingerprint = models.CharField(max_length=16, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    attempts = models.JSONField(default=list, blank=True)
    has_body = models.BooleanField(default=False)

    class Meta:
        ordering = ("-occurred_at",)
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["-occurred_at"], name="requestlog_time"),
            models.Index(fields=["request_id"], name="requestlog_request_id"),
        ]

    def __str__(self) -> str:
        return self.request_id or str(self.event_id)


class RequestBody(models.Model):
    """The redacted, compressed bodies of one request logged at level ``full``.

    ``request`` and ``response`` are zlib-compressed UTF-8 JSON (or text when the body was not
    JSON); a streamed answer's ``response`` is the reassembled final message and ``stream`` the
    raw stream up to its cap. ``notes`` says what was truncated or not JSON.
    """

    log = models.OneToOneField(
        RequestLog, primary_key=True, on_delete=models.CASCADE, related_name="body"
    )
    occurred_at = models.DateTimeField(db_index=True)
    request_headers = models.JSONField(default=dict, blank=True)
    request = models.BinaryField(blank=True, default=b"")
    response = models.BinaryField(blank=True, default=b"")
    stream = models.BinaryField(blank=True, default=b"")
    notes = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"bodies of {self.log_id}"


class MediaObject(models.Model):
    """An image, audio clip or document from a body, stored once under its SHA-256."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    content_type = models.CharField(max_length=100)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    # Set again whenever a new body refers to it: pruning spares media seen within retention.
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} {self.content_type}"


class RequestMedia(models.Model):
    """Which bodies refer to which media: media no body refers to any more are pruned."""

    body = models.ForeignKey(RequestBody, on_delete=models.CASCADE, related_name="media")
    media = models.ForeignKey(
        MediaObject, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["body", "media"], name="requestmedia_unique")
        ]

    def __str__(self) -> str:
        return f"{self.body_id} -> {self.media_id}"


class LogLevelPolicy(models.Model):
    """The logging level of one user or one access key (the key's wins over its user's)."""

    user = models.OneToOneField(
        "accounts.User", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    access_key = models.OneToOneField(
        "accounts.AccessKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    level = models.CharField(max_length=8, choices=LogLevel.choices)

    class Meta:
        verbose_name = "logging level"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, access_key__isnull=True)
                | models.Q(user__isnull=True, access_key__isnull=False),
                name="loglevelpolicy_one_scope",
            )
        ]

    def __str__(self) -> str:
        scope = f"key {self.access_key_id}" if self.access_key_id else f"user {self.user_id}"
        return f"{scope}: {self.level}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if (self.user_id is None) == (self.access_key_id is None):
            raise ValidationError("Choose a user or an access key, not both.")
