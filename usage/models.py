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
    status_code = models.PositiveSmallIntegerField(default=200)
    streamed = models.BooleanField(default=False)
    client_disconnected = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(default=0)
    time_to_first_byte_ms = models.PositiveIntegerField(null=True, blank=True)
    fallback_reason = models.CharField(max_length=64, blank=True)
    session_id = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=100, blank=True)

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
