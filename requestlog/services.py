"""Writes of the request log: rows for a batch of usage records, pruning, level policies.

``request_logs_write`` runs in the usage writer thread right after the batch's usage events are
inserted, in a transaction of its own, as plain rows (usage.rows): on PostgreSQL with COPY, the
cheapest way in, and when COPY meets a log already stored (a replay of the spool) with inserts
that skip it, as on SQLite. A batch the database refuses is written again log by log, a refused
log once more scrubbed (``request_log_scrub``, see usage.recording), so a replay writes nothing
twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from proxy import jsonio
from requestlog.capture import LogCapture, body_bytes, log_prepare
from requestlog.models import LogLevelPolicy, MediaObject, RequestBody, RequestLog, RequestMedia
from requestlog.redaction import redactor
from usage.rows import (
    Adapter,
    insert_select_statement,
    insert_statement,
    insert_with_dependent_statement,
    primary_keys_reserve,
    rows_copy,
    rows_insert,
)

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
        record.log = log = log_prepare(log, red)
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


# The columns written per log, body and medium reference, in the order of their rows' values.
_LOG_COLUMNS = (
    "event",
    "occurred_at",
    "request_id",
    "level",
    "surface",
    "credential_fingerprint",
    "user_agent",
    "attempts",
    "has_body",
)
# The first (the log's id) is looked up by the row's last value, its event id.
_BODY_COLUMNS = ("log", "occurred_at", "request_headers", "request", "response", "stream", "notes")
_REFERENCE_COLUMNS = ("body", "media")


def _encoder(model: type[Model], name: str) -> Any:
    """The encoder of the model's JSON field ``name`` (what its values are stored with)."""
    return model._meta.get_field(name).encoder  # type: ignore[union-attr]


class _Rows:
    """A batch's log rows, body rows and media references, as plain values: for inserts, or
    for COPY (``for_copy``), which takes a JSON column's value as its JSON text."""

    def __init__(self, *, for_copy: bool) -> None:
        self.adapt = Adapter()
        self.for_copy = for_copy
        # The logs without a body, and the (log, body) pairs of the others; a body's values
        # are its columns after "log" (the log's id is known only once the log is inserted).
        self.logs: list[tuple[Any, ...]] = []
        self.with_bodies: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
        self.references: list[tuple[str, Any]] = []
        self.media: list[dict[str, Any]] = []

    def add(self, record: UsageRecord, log: dict[str, Any]) -> None:
        adapt = self.adapt
        event_id = adapt.uuid(record.event_id)
        occurred_at = adapt.moment(record.occurred_at)
        body = log.get("body")
        values = (
            event_id,
            occurred_at,
            record.request_id[:100],
            str(log.get("level", ""))[:8],
            str(log.get("surface", ""))[:16],
            str(log.get("credential_fingerprint", ""))[:16],
            str(log.get("user_agent", ""))[:300],
            self._json(log.get("attempts") or [], RequestLog, "attempts"),
            body is not None,
        )
        if body is None:
            self.logs.append(values)
            return
        body_values = (
            occurred_at,
            self._json(body.get("request_headers") or {}, RequestBody, "request_headers"),
            body_bytes(body.get("request", "")),
            body_bytes(body.get("response", "")),
            body_bytes(body.get("stream", "")),
            self._json(body.get("notes") or [], RequestBody, "notes"),
        )
        self.with_bodies.append((values, body_values))
        found = body.get("media") or []
        self.media.extend(found)
        self.references.extend((sha256, event_id) for sha256 in {item["sha256"] for item in found})

    def _json(self, value: Any, model: type[Model], name: str) -> Any:
        if self.for_copy:
            # The column parses the text (jsonb): the same value as the field's own encoding.
            # A lone surrogate comes out escaped, which the column refuses like the field's
            # encoding (request_log_scrub then mends it).
            return jsonio.dumps(value).decode()
        return self.adapt.json(value, _encoder(model, name))

    def count(self) -> int:
        return len(self.logs) + len(self.with_bodies)


def _rows(records: Sequence[UsageRecord], *, for_copy: bool) -> _Rows:
    rows = _Rows(for_copy=for_copy)
    for record in records:
        log = prepared_log(record)
        if log is not None:
            rows.add(record, log)
    return rows


def request_logs_write(records: Sequence[UsageRecord]) -> int:
    """Insert the log rows (and bodies, media references) of the records that have a log, as
    plain rows (usage.rows says why), in one transaction; rows already stored are skipped."""
    vendor = connection.vendor
    rows = _rows(records, for_copy=vendor == "postgresql")
    count = rows.count()
    if not count:
        return 0
    if rows.for_copy:
        try:
            with transaction.atomic():
                _rows_copy(rows)
            return count
        except IntegrityError:
            # A log of the batch is stored already (the spool replays a batch that was
            # written in part): written again below by inserts, which skip what is stored.
            rows = _rows(records, for_copy=False)
    with transaction.atomic():
        rows_insert(insert_statement(RequestLog, _LOG_COLUMNS, vendor), rows.logs)
        if vendor == "postgresql":
            # A log and its body in one statement.
            statement = insert_with_dependent_statement(
                RequestLog, _LOG_COLUMNS, RequestBody, _BODY_COLUMNS
            )
            rows_insert(statement, [log + body for log, body in rows.with_bodies])
        else:
            # Bodies find their log's id by its event id (the log's first value) within the
            # insert: no query to look the ids up first.
            rows_insert(
                insert_statement(RequestLog, _LOG_COLUMNS, vendor),
                [log for log, _ in rows.with_bodies],
            )
            rows_insert(
                insert_select_statement(RequestBody, _BODY_COLUMNS, RequestLog, vendor),
                [(*body, log[0]) for log, body in rows.with_bodies],
            )
        _media_write(rows, vendor)
    return count


def _rows_copy(rows: _Rows) -> None:
    """PostgreSQL: the logs and bodies with COPY (each body under its log's reserved key),
    then the media rows and references."""
    keys = iter(primary_keys_reserve(RequestLog, rows.count()))
    logs = [(next(keys), *values) for values in rows.logs]
    bodies = []
    for values, body in rows.with_bodies:
        key = next(keys)
        logs.append((key, *values))
        bodies.append((key, *body))
    rows_copy(RequestLog, ("id", *_LOG_COLUMNS), logs)
    rows_copy(RequestBody, _BODY_COLUMNS, bodies)
    _media_write(rows, "postgresql")


def _media_write(rows: _Rows, vendor: str) -> None:
    """The batch's media rows, and each body's references to them (found by the log's event
    id, the reference's last value)."""
    _media_rows_write(rows.media)
    rows_insert(
        insert_select_statement(RequestMedia, _REFERENCE_COLUMNS, RequestLog, vendor),
        rows.references,
    )


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
