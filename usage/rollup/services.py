"""The rollup's services: ``usage_rollup`` (the minutely task), ``usage_aggregates_rebuild``
and ``usage_events_prune``, with their locks and reports. How they stay exact: see usage.rollup.
The SQL lives in usage.rollup.sql."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Exists, Max, Min, OuterRef, Q
from django.utils import timezone

from usage.locks import Lease, maintenance_lock
from usage.models import (
    MAX_TOKENS_PER_COUNT,
    TOKEN_COUNT_FIELDS,
    Bucket,
    DeadLetterUsageEvent,
    PendingUsageEvent,
    UsageAggregate,
    UsageEvent,
    UsageRollupState,
)
from usage.pricing import free_by_default, providers_with_prices, report_unpriced
from usage.rollup import sql
from usage.rollup.buckets import LEVELS, bucket_floor, bucket_next

logger = logging.getLogger("usage.rollup")

ROLLUP_LOCK = "usage-rollup"
PRUNE_LOCK = "usage-prune"
# Longer than any task's time limit, so a live holder never loses it; a dead one frees it soon.
LOCK_TTL_SECONDS = 300.0
DEFAULT_BATCH_SIZE = 50_000
DEFAULT_PRUNE_BATCH_SIZE = 10_000

Progress = Callable[[str], None]


class RollupError(Exception):
    """A rollup, rebuild or prune request refused, with a message fit for the operator."""


def rollup_state() -> UsageRollupState:
    state, _ = UsageRollupState.objects.get_or_create(pk=1)
    return state


# --- Incremental rollup ---------------------------------------------------------------------


@dataclass
class RollupReport:
    events: int = 0
    batches: int = 0
    # Events without a price (cost 0) per (provider, requested model); providers that are free
    # by default (usage.pricing.free_by_default) are not listed.
    unpriced: dict[tuple[str, str], int] = field(default_factory=dict)
    # Queued ids whose event no longer exists (deleted by hand): dropped from the queue.
    missing: int = 0
    # False when a batch limit or time budget stopped the run with events still queued.
    complete: bool = True
    # Events that could not be added to the aggregates: moved to DeadLetterUsageEvent.
    set_aside: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    queued: int = 0
    events: int = 0
    unpriced: dict[tuple[str, str], int] = field(default_factory=dict)
    set_aside: list[int] = field(default_factory=list)

    def add(self, other: _Batch) -> None:
        self.queued += other.queued
        self.events += other.events
        for key, count in other.unpriced.items():
            self.unpriced[key] = self.unpriced.get(key, 0) + count
        self.set_aside += other.set_aside


def _batch_upper(batch_size: int) -> int | None:
    """The last queued id of the next batch, or None when the queue is empty."""
    with connection.cursor() as cursor:
        upper, queued = sql.queue_batch(cursor, batch_size)
    return upper if queued else None


def _rollup_range(after: int | None, upper: int) -> _Batch:
    """Add the queued events with ids in (after, upper] to the aggregates, in one transaction."""
    dialect = sql.dialect()
    with sql.snapshot_transaction(), connection.cursor() as cursor:
        queued = sql.queue_count(cursor, after, upper)
        if not queued:
            return _Batch()
        sql.fill_delta_from_queue(dialect, cursor, after, upper)
        for level in LEVELS:
            sql.delta_to_level(dialect, cursor, level, add=True)
        events, unpriced = sql.delta_totals(cursor)
        if unpriced:
            # Ollama and generic servers cost 0 by design until an admin prices them.
            priced = providers_with_prices()
            unpriced = {
                key: count for key, count in unpriced.items() if not free_by_default(key[0], priced)
            }
        deleted = sql.dequeue(cursor, after, upper)
        sql.drop_delta(cursor)
        if deleted != queued:
            # Only possible if another transaction changed the queue inside this batch.
            raise OperationalError(f"usage rollup: batch counted {queued}, deleted {deleted}")
    return _Batch(queued=queued, events=events, unpriced=unpriced)


def _rollup_isolating(after: int | None, upper: int) -> _Batch:
    """``_rollup_range``, splitting a range that fails on its data until the events that
    cannot be applied are alone; those are set aside and everything else is counted.

    Only data errors split (the same events would fail every time); a database that is away
    or busy fails the whole run as before, and the next run tries the same range again.
    """
    try:
        return sql.with_retries(lambda: _rollup_range(after, upper))
    except DatabaseError as exc:
        if not sql.is_data_error(exc):
            raise
        error = exc
    with connection.cursor() as cursor:
        queued = sql.queue_count(cursor, after, upper)
        if queued > 1:
            middle = sql.queue_split(cursor, after, upper, queued)
    if queued > 1:
        logger.warning(
            "usage rollup: %d events (ids %s to %s] cannot be added together (%s); splitting",
            queued,
            after,
            upper,
            error,
        )
        batch = _rollup_isolating(after, middle)
        batch.add(_rollup_isolating(middle, upper))
        return batch
    batch = _Batch()
    with connection.cursor() as cursor:
        ids = sql.queue_ids(cursor, after, upper)
    for event_id in ids:
        _set_aside(event_id, f"{type(error).__name__}: {error}")
        batch.set_aside.append(event_id)
    return batch


def _rollup_checked(upper: int) -> _Batch:
    """The next batch, up to ``upper``: events with impossible counts set aside first, then the
    rest added (``_rollup_isolating``)."""
    with connection.cursor() as cursor:
        oversized = sql.queue_oversized(cursor, None, upper)
    for event_id in oversized:
        _set_aside(
            event_id,
            f"a token count is above {MAX_TOKENS_PER_COUNT:,} (the most one event may carry)",
        )
    batch = _rollup_isolating(None, upper)
    batch.set_aside = oversized + batch.set_aside
    return batch


def _set_aside(event_id: int, reason: str) -> None:
    reason = reason.strip()[:2000]
    with transaction.atomic(), connection.cursor() as cursor:
        sql.set_aside(cursor, event_id, reason, timezone.now())
    event = UsageEvent.objects.filter(pk=event_id).values("request_id", *TOKEN_COUNT_FIELDS).first()
    logger.error(
        "usage rollup: event %s cannot be added to the aggregates and was set aside as a dead "
        "letter (see the admin; it is not counted until queued again): %s; event %s",
        event_id,
        reason,
        event,
    )


def usage_dead_letters_requeue(*, event_ids: Sequence[int]) -> int:
    """Queue dead-letter events for the rollup again (after their cause was fixed); returns
    how many were queued. The next rollup adds them, or sets them aside again."""
    with transaction.atomic():
        letters = list(
            DeadLetterUsageEvent.objects.select_for_update()
            .filter(event_id__in=list(event_ids))
            .values_list("event_id", flat=True)
        )
        PendingUsageEvent.objects.bulk_create(
            [PendingUsageEvent(event_id=event_id) for event_id in letters],
            ignore_conflicts=True,
        )
        DeadLetterUsageEvent.objects.filter(event_id__in=letters).delete()
    return len(letters)


def _rollup_pending(
    *,
    leases: Sequence[Lease],
    batch_size: int,
    max_batches: int | None,
    time_budget: float | None,
    progress: Progress | None,
) -> RollupReport:
    if not sql.enqueue_trigger_exists():
        logger.error(
            "usage rollup: the trigger %s is missing, so new events are not queued and will "
            "not be counted; recreate it (see migration usage 0002)",
            sql.ENQUEUE_TRIGGER,
        )
    report = RollupReport()
    started = time.monotonic()
    while True:
        upper = _batch_upper(batch_size)
        if upper is None:
            break
        batch = _rollup_checked(upper)
        report.batches += 1
        report.events += batch.events
        report.missing += batch.queued - batch.events
        report.set_aside += batch.set_aside
        for key, count in batch.unpriced.items():
            report.unpriced[key] = report.unpriced.get(key, 0) + count
            report_unpriced(key[0], key[1], count)
        if progress:
            progress(f"batch {report.batches}: {batch.events} events ({report.events} in all)")
        for lease in leases:
            lease.extend()
        # Limits are checked after a batch, so every run makes progress.
        if (max_batches is not None and report.batches >= max_batches) or (
            time_budget is not None and time.monotonic() - started >= time_budget
        ):
            report.complete = not PendingUsageEvent.objects.exists()
            break
    if report.missing:
        logger.warning("usage rollup: %d queued events no longer existed", report.missing)
    if report.set_aside:
        logger.error(
            "usage rollup: %d events set aside as dead letters, not counted: ids %s",
            len(report.set_aside),
            report.set_aside[:20],
        )
    rollup_state()
    UsageRollupState.objects.filter(pk=1).update(last_rollup_at=timezone.now())
    return report


def usage_rollup(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int | None = None,
    time_budget: float | None = None,
    progress: Progress | None = None,
) -> RollupReport:
    """Add every queued event to the aggregates, ``batch_size`` events per transaction.

    ``max_batches`` or ``time_budget`` (seconds, checked between batches) stop early; the next
    run goes on from there. Raises usage.locks.LockBusy when another rollup or a rebuild runs.
    """
    if batch_size < 1:
        raise RollupError("the batch size must be at least 1")
    with maintenance_lock(ROLLUP_LOCK, ttl=LOCK_TTL_SECONDS) as lease:
        return _rollup_pending(
            leases=[lease],
            batch_size=batch_size,
            max_batches=max_batches,
            time_budget=time_budget,
            progress=progress,
        )


# --- Rebuild --------------------------------------------------------------------------------


@dataclass
class RebuildReport:
    start: datetime | None = None
    end: datetime | None = None
    days: int = 0
    events: int = 0
    rolled_up_first: int = 0


def _rebuild_day(day: datetime) -> int:
    """Recompute the minute, hour and day rows of one UTC day from its rolled-up events."""
    dialect = sql.dialect()
    end = bucket_next(Bucket.DAY, day)
    with sql.snapshot_transaction(), connection.cursor() as cursor:
        sql.fill_delta_from_day(dialect, cursor, day, end)
        events, _ = sql.delta_totals(cursor)
        sql.delete_rows(cursor, Bucket.MINUTE, day, end)
        sql.delta_to_level(dialect, cursor, Bucket.MINUTE, add=False)
        sql.drop_delta(cursor)
        sql.recompute_from(dialect, cursor, Bucket.HOUR, Bucket.MINUTE, day, end)
        sql.recompute_from(dialect, cursor, Bucket.DAY, Bucket.HOUR, day, end)
    return events


def _rebuild_weeks_and_months(start: datetime, end: datetime) -> None:
    dialect = sql.dialect()
    with sql.snapshot_transaction(), connection.cursor() as cursor:
        week, month = bucket_floor(Bucket.WEEK, start), bucket_floor(Bucket.MONTH, start)
        sql.recompute_from(dialect, cursor, Bucket.WEEK, Bucket.DAY, week, end)
        sql.recompute_from(dialect, cursor, Bucket.MONTH, Bucket.DAY, month, end)


def _data_bounds() -> tuple[datetime | None, datetime | None]:
    events = UsageEvent.objects.order_by().aggregate(
        first=Min("occurred_at"), last=Max("occurred_at")
    )
    rows = UsageAggregate.objects.order_by().aggregate(
        first=Min("bucket_start"), last=Max("bucket_start")
    )
    firsts = [v for v in (events["first"], rows["first"]) if v is not None]
    lasts = [v for v in (events["last"], rows["last"]) if v is not None]
    return (min(firsts) if firsts else None, max(lasts) if lasts else None)


def usage_aggregates_rebuild(
    *, since: datetime | None = None, progress: Progress | None = None
) -> RebuildReport:
    """Recompute the aggregates from raw events, from ``since`` (rounded down to its UTC day)
    or from as far back as raw events are complete, with the current price table. Without price
    changes the totals come out identical to what the rollup built. Works day by day, one
    transaction per day that has events or rows, then weeks and months. Holds the rollup and
    prune locks throughout (raises LockBusy if either is taken)."""
    if since is not None and since > timezone.now():
        raise RollupError(f"{since.isoformat()} is in the future")
    with (
        maintenance_lock(ROLLUP_LOCK, ttl=LOCK_TTL_SECONDS) as lease,
        maintenance_lock(PRUNE_LOCK, ttl=LOCK_TTL_SECONDS) as prune_lease,
    ):
        report = RebuildReport()
        horizon = rollup_state().pruned_before
        if since is not None:
            start: datetime | None = bucket_floor(Bucket.DAY, since)
            if horizon is not None and bucket_floor(Bucket.DAY, since) < horizon:
                raise RollupError(
                    f"raw events before {horizon.isoformat()} have been pruned; "
                    "aggregates before then cannot be rebuilt"
                )
        else:
            start = horizon
        # Roll up what is queued first: the rebuild reads rolled-up events only, and events
        # arriving meanwhile stay queued for the next rollup, so none is counted twice.
        report.rolled_up_first = _rollup_pending(
            leases=[lease, prune_lease],
            batch_size=DEFAULT_BATCH_SIZE,
            max_batches=None,
            time_budget=None,
            progress=progress,
        ).events
        earliest, latest = _data_bounds()
        if start is None:
            if earliest is None:
                return report  # no events and no aggregates
            start = bucket_floor(Bucket.DAY, earliest)
        end = bucket_next(Bucket.DAY, bucket_floor(Bucket.DAY, max(latest or start, start)))
        report.start, report.end = start, end
        for day in sql.days_with_data(start):
            events = sql.with_retries(lambda day=day: _rebuild_day(day))  # type: ignore[misc]
            report.days += 1
            report.events += events
            if progress:
                progress(f"{day:%Y-%m-%d}: {events} events ({report.events} in all)")
            lease.extend()
            prune_lease.extend()
        sql.with_retries(lambda: _rebuild_weeks_and_months(start, end))
        if progress:
            progress(f"weeks and months from {start:%Y-%m-%d} recomputed")
        return report


# --- Prune ----------------------------------------------------------------------------------


@dataclass
class PruneReport:
    cutoff: datetime
    deleted: int = 0
    # Old events not rolled up yet: kept until a rollup has counted them.
    kept_pending: int = 0
    dry_run: bool = False


def prune_cutoff(*, retention_days: int, now: datetime | None = None) -> datetime:
    """Events that occurred before this UTC midnight are due for pruning."""
    return bucket_floor(Bucket.DAY, (now or timezone.now()) - timedelta(days=retention_days))


def usage_events_prune(
    *,
    retention_days: int,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_PRUNE_BATCH_SIZE,
    progress: Progress | None = None,
) -> PruneReport:
    """Delete rolled-up events older than ``retention_days`` (from a UTC day boundary).
    Raises LockBusy during a rebuild."""
    if retention_days < 1:
        raise RollupError("the retention must be at least one day")
    if batch_size < 1:
        raise RollupError("the batch size must be at least 1")
    report = PruneReport(cutoff=prune_cutoff(retention_days=retention_days, now=now))
    queued = PendingUsageEvent.objects.filter(event_id=OuterRef("pk"))
    dead_letter = DeadLetterUsageEvent.objects.filter(event_id=OuterRef("pk"))
    old = UsageEvent.objects.filter(occurred_at__lt=report.cutoff).order_by()
    # Dead letters stay until an admin has dealt with them: they are in no aggregate.
    due = old.exclude(Exists(queued)).exclude(Exists(dead_letter))
    if dry_run:
        report.dry_run = True
        report.deleted = due.count()
        report.kept_pending = old.filter(Exists(queued)).count()
        return report
    with maintenance_lock(PRUNE_LOCK, ttl=LOCK_TTL_SECONDS) as lease:
        if due.exists():
            # Recorded before deleting, so a rebuild never trusts days that lost events.
            rollup_state()
            UsageRollupState.objects.filter(pk=1).filter(
                Q(pruned_before__isnull=True) | Q(pruned_before__lt=report.cutoff)
            ).update(pruned_before=report.cutoff)
        while True:
            ids = list(due.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            deleted, _ = UsageEvent.objects.filter(pk__in=ids).delete()
            report.deleted += deleted
            if progress:
                progress(f"deleted {report.deleted} events")
            lease.extend()
        report.kept_pending = old.filter(Exists(queued)).count()
    return report
