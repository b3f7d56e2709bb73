"""Writes of the request log: rows for a batch of usage records, pruning, level policies.

``request_logs_write`` runs in the usage writer thread right after the batch's usage events are
inserted, in a transaction of its own; when it fails the whole batch is spooled and replayed,
and every insert ignores conflicts, so a replay writes nothing twice.
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from requestlog.capture import LogCapture, log_prepare
from requestlog.models import LogLevelPolicy, MediaObject, RequestBody, RequestLog, RequestMedia
from requestlog.redaction import redactor

if TYPE_CHECKING:
    from usage.recording import UsageRecord

logger = logging.getLogger(__name__)


def prepared_log(record: UsageRecord) -> dict[str, Any] | None:
    """The record's log in its redacted, JSON-able form (prepared once, in place).

    The usage event's own free text from the client (model names, session id) is redacted
    too: the log viewer shows it, and the event is the log's record of those facts."""
    log = record.log
    if isinstance(log, LogCapture):
        red = redactor()
        record.requested_model = red.text(record.requested_model)
        record.upstream_model = red.text(record.upstream_model)
        record.session_id = red.text(record.session_id)
        record.log = log = log_prepare(log)
    return log if isinstance(log, dict) else None


# Lone halves of a surrogate pair: a Python string may hold them (JSON "\\ud800" decodes to
# one), UTF-8 cannot encode them and PostgreSQL refuses their JSON escape. A pair that belongs
# together is one code point in a Python string, so every match here is a lone half.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(value: Any) -> Any:
    """``value`` with every string (keys too, at any depth) free of what a database refuses in
    text and JSON: NUL characters are dropped, lone surrogates become U+FFFD."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def request_log_scrub(record: UsageRecord) -> bool:
    """Make the record's prepared log storable (see ``_storable``); False when nothing in it
    needed to change, so writing it again would fail the same way."""
    log = prepared_log(record)
    if log is None:
        return False
    scrubbed = _storable(log)
    request_id = _storable(record.request_id)
    if scrubbed == log and request_id == record.request_id:
        return False
    record.log = scrubbed
    record.request_id = request_id
    return True


def _blob(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def request_logs_write(records: Sequence[UsageRecord]) -> int:
    """Insert the log rows (and bodies, media references) of the records that have a log."""
    logs: list[RequestLog] = []
    bodies: list[tuple[uuid.UUID, datetime, dict[str, Any]]] = []
    for record in records:
        log = prepared_log(record)
        if log is None:
            continue
        event_id = uuid.UUID(record.event_id)
        body = log.get("body")
        logs.append(
            RequestLog(
                event_id=event_id,
                occurred_at=record.occurred_at,
                request_id=record.request_id[:100],
                level=str(log.get("level", ""))[:8],
                surface=str(log.get("surface", ""))[:16],
                credential_fingerprint=str(log.get("credential_fingerprint", ""))[:16],
                user_agent=str(log.get("user_agent", ""))[:300],
                attempts=log.get("attempts") or [],
                has_body=body is not None,
            )
        )
        if body is not None:
            bodies.append((event_id, record.occurred_at, body))
    if not logs:
        return 0
    with transaction.atomic():
        _logs_insert(logs, bodies)
    return len(logs)


def _logs_insert(
    logs: list[RequestLog], bodies: list[tuple[uuid.UUID, datetime, dict[str, Any]]]
) -> None:
    RequestLog.objects.bulk_create(logs, ignore_conflicts=True)
    if bodies:
        rows = RequestLog.objects.filter(
            event_id__in=[event_id for event_id, _, _ in bodies]
        ).values_list("event_id", "id")
        ids: dict[uuid.UUID, int] = {uuid.UUID(str(event_id)): log_id for event_id, log_id in rows}
        RequestBody.objects.bulk_create(
            [
                RequestBody(
                    log_id=ids[event_id],
                    occurred_at=occurred_at,
                    request_headers=body.get("request_headers") or {},
                    request=_blob(body.get("request", "")),
                    response=_blob(body.get("response", "")),
                    stream=_blob(body.get("stream", "")),
                    notes=body.get("notes") or [],
                )
                for event_id, occurred_at, body in bodies
                if event_id in ids
            ],
            ignore_conflicts=True,
        )
        _media_rows_write([item for _, _, body in bodies for item in body.get("media") or []])
        references = [
            RequestMedia(body_id=ids[event_id], media_id=sha256)
            for event_id, _, body in bodies
            if event_id in ids
            for sha256 in {item["sha256"] for item in body.get("media") or []}
        ]
        if references:
            RequestMedia.objects.bulk_create(references, ignore_conflicts=True)


def _media_rows_write(items: list[dict[str, Any]]) -> None:
    """One row per medium (the file is already in the store), seen now."""
    if not items:
        return
    now = timezone.now()
    unique = {item["sha256"]: item for item in items}
    MediaObject.objects.bulk_create(
        [
            MediaObject(
                sha256=sha256,
                content_type=str(item.get("content_type", ""))[:100],
                size=int(item.get("size", 0)),
                created_at=now,
                last_seen_at=now,
            )
            for sha256, item in unique.items()
        ],
        ignore_conflicts=True,
    )
    MediaObject.objects.filter(sha256__in=list(unique), last_seen_at__lt=now).update(
        last_seen_at=now
    )


def request_logs_prune(*, retention_days: int, batch_size: int = 1000) -> int:
    """Delete log rows (with their bodies) older than ``retention_days``: the usage events
    they extend are pruned after as long (GATEWAY_USAGE_RETENTION_DAYS)."""
    cutoff = timezone.now() - timedelta(days=retention_days)
    deleted = 0
    while True:
        ids = list(
            RequestLog.objects.filter(occurred_at__lt=cutoff)
            .order_by("occurred_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        with transaction.atomic():
            RequestMedia.objects.filter(body_id__in=ids).delete()
            RequestBody.objects.filter(log_id__in=ids).delete()
            RequestLog.objects.filter(id__in=ids).delete()
        deleted += len(ids)


@dataclass
class PruneReport:
    bodies: int = 0
    media: int = 0
    logs: int = 0


def request_logs_maintain(*, batch_size: int = 1000) -> PruneReport:
    """The periodic prune, under a lock: bodies and media past GATEWAY_LOG_BODY_RETENTION_DAYS,
    log rows past GATEWAY_USAGE_RETENTION_DAYS (with the events they extend)."""
    from django.conf import settings

    from usage.locks import maintenance_lock

    with maintenance_lock("requestlog-prune", ttl=3600):
        report = request_log_bodies_prune(
            retention_days=settings.GATEWAY_LOG_BODY_RETENTION_DAYS, batch_size=batch_size
        )
        report.logs = request_logs_prune(
            retention_days=settings.GATEWAY_USAGE_RETENTION_DAYS, batch_size=batch_size
        )
    return report


def request_log_bodies_prune(
    *, retention_days: int, batch_size: int = 1000, now: datetime | None = None
) -> PruneReport:
    """Delete bodies older than ``retention_days`` (in batches, each its own short
    transaction, so the table is never locked for long), then media no body refers to any
    more."""
    from requestlog.media import media_delete_unreferenced

    now = now or timezone.now()
    cutoff = now - timedelta(days=retention_days)
    report = PruneReport()
    while True:
        ids = list(
            RequestBody.objects.filter(occurred_at__lt=cutoff)
            .order_by("occurred_at")
            .values_list("log_id", flat=True)[:batch_size]
        )
        if not ids:
            break
        with transaction.atomic():
            RequestMedia.objects.filter(body_id__in=ids).delete()
            RequestBody.objects.filter(log_id__in=ids).delete()
            RequestLog.objects.filter(id__in=ids).update(has_body=False)
        report.bodies += len(ids)
    report.media = media_delete_unreferenced(older_than=cutoff, batch_size=batch_size)
    return report


def log_level_set(
    *, level: str, user_id: int | None = None, access_key_id: int | None = None
) -> None:
    """Set (or with level "" remove) the logging level of one user or one access key."""
    from requestlog.levels import log_levels_reload

    if (user_id is None) == (access_key_id is None):
        raise ValueError("exactly one of user_id and access_key_id")
    scope: dict[str, Any] = (
        {"user_id": user_id} if user_id is not None else {"access_key_id": access_key_id}
    )
    if level:
        LogLevelPolicy.objects.update_or_create(**scope, defaults={"level": level})
    else:
        LogLevelPolicy.objects.filter(**scope).delete()
    transaction.on_commit(log_levels_reload)


__all__ = [
    "MediaObject",
    "PruneReport",
    "log_level_set",
    "prepared_log",
    "request_log_bodies_prune",
    "request_log_scrub",
    "request_logs_write",
]
