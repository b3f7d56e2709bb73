"""Rolling usage events up into UsageAggregate, rebuilding aggregates, and pruning raw events.

How the rollup stays exact and idempotent:

* Every inserted event is queued in PendingUsageEvent by a database trigger. A rollup batch takes
  the queued events up to some id, sums them per minute bucket and dimensions (user, access key,
  provider, requested model) into a temporary table, adds those sums to the minute, hour, day,
  week (from Monday) and month rows with one upsert per bucket size (``INSERT … ON CONFLICT …
  DO UPDATE SET n = n + excluded.n``, which PostgreSQL and SQLite both run), and deletes the
  queue rows: all in one transaction. Each event therefore lands exactly once in each bucket
  size, so for any aligned window the minute, hour, day, week and month sums and the raw events
  agree; a rerun finds nothing to add; a late event (written minutes after it occurred, or
  replayed from a spool hours later) is just a queued event in an old bucket.
* A queue, not a watermark on id or ``recorded_at``: both are taken before commit and
  transactions commit out of order, so a watermark can move past an event that commits later and
  skip it forever. The queue holds only what is pending, so a rollup never reads history, and
  the events table is never updated (an update would rewrite each row and all its indexes).
* The statements of a batch must see the same events while the proxy keeps inserting: on
  PostgreSQL a batch runs at REPEATABLE READ; SQLite serializes write transactions.
* Two rollups at once: a lock (usage.locks) keeps them apart. Without it totals still hold: at
  REPEATABLE READ the second transaction to touch the same queue or aggregate rows fails with a
  serialization error and is retried; on SQLite it waits, then finds the queue empty. A batch
  also checks that it deleted as many queue rows as it counted, and rolls back if not.

Cost: an event's cost is ``UsageEvent.cost_usd`` when whoever recorded it set one, else the price
valid at its ``occurred_at`` (usage.pricing, computed here in SQL with the same integer
arithmetic), else 0. It is not written back to the event. A price added or corrected later
applies to events rolled up from then on; ``usage_aggregates_rebuild`` re-prices a period.

Rebuild (``usage_aggregates_rebuild``) recomputes aggregates from rolled-up raw events day by
day (delete, then insert minute rows from events, hours from minutes, the day from hours), then
weeks and months from days. It only reaches back to ``UsageRollupState.pruned_before``: older raw
events may be gone, so older rows are kept as they are.

Prune (``usage_events_prune``) deletes rolled-up events that occurred before a UTC day boundary
``retention`` days back and records that boundary first. Aggregates already hold those events,
so no total changes; a late event for a pruned day is still added to its buckets.

SQLite stores decimals as floats, so costs travel through SQL as integers in units of 1e-8 USD
and are converted back per row: sums stay exact to the last of the 8 decimal places (up to about
10^7 USD in one aggregate row). PostgreSQL numerics are exact anyway.
"""

# ruff: noqa: S608 - the SQL below is assembled only from this module's table names and
# expressions; every value is passed as a query parameter.

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.db import OperationalError, connection, transaction
from django.db.models import Exists, Max, Min, OuterRef, Q
from django.utils import timezone

from usage.locks import Lease, maintenance_lock
from usage.models import (
    Bucket,
    PendingUsageEvent,
    Price,
    UsageAggregate,
    UsageEvent,
    UsageRollupState,
)
from usage.pricing import PICO_PER_COST_UNIT, PriceWindow, price_micros, price_windows
from usage.pricing import report_unpriced as _report_unpriced

logger = logging.getLogger(__name__)

LEVELS: tuple[str, ...] = (Bucket.MINUTE, Bucket.HOUR, Bucket.DAY, Bucket.WEEK, Bucket.MONTH)
ROLLUP_LOCK = "usage-rollup"
PRUNE_LOCK = "usage-prune"
# Longer than any task's time limit, so a live holder never loses it; a dead one frees it soon.
LOCK_TTL_SECONDS = 300.0
DEFAULT_BATCH_SIZE = 50_000
DEFAULT_PRUNE_BATCH_SIZE = 10_000
_MAX_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock

Progress = Callable[[str], None]
_T = TypeVar("_T")


class RollupError(Exception):
    """A rollup, rebuild or prune request refused, with a message fit for the operator."""


# --- Buckets (pure) -------------------------------------------------------------------------


def bucket_floor(bucket: str, moment: datetime) -> datetime:
    """The UTC start of the ``bucket`` that contains ``moment`` (weeks start on Monday)."""
    moment = moment.astimezone(UTC)
    if bucket == Bucket.MINUTE:
        return moment.replace(second=0, microsecond=0)
    if bucket == Bucket.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == Bucket.DAY:
        return day
    if bucket == Bucket.WEEK:
        return day - timedelta(days=day.weekday())
    if bucket == Bucket.MONTH:
        return day.replace(day=1)
    raise ValueError(f"unknown bucket {bucket!r}")


def bucket_next(bucket: str, start: datetime) -> datetime:
    """The start of the bucket after the one starting at ``start``."""
    if bucket == Bucket.MINUTE:
        return start + timedelta(minutes=1)
    if bucket == Bucket.HOUR:
        return start + timedelta(hours=1)
    if bucket == Bucket.DAY:
        return start + timedelta(days=1)
    if bucket == Bucket.WEEK:
        return start + timedelta(days=7)
    if bucket == Bucket.MONTH:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    raise ValueError(f"unknown bucket {bucket!r}")


# --- SQL for the two supported databases ----------------------------------------------------


class _Sql:
    """The few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, vendor: str) -> None:
        if vendor not in ("postgresql", "sqlite"):
            raise RollupError(f"the usage rollup supports PostgreSQL and SQLite, not {vendor}")
        self.postgres = vendor == "postgresql"

    def trunc(self, bucket: str, column: str) -> str:
        if self.postgres:
            return f"date_trunc('{bucket}', {column}, 'UTC')"
        # SQLite keeps datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in UTC; these formats
        # give exactly the text Django writes for a bucket start. ('%%': the query has params.)
        formats: dict[str, str] = {
            Bucket.MINUTE: f"strftime('%%Y-%%m-%%d %%H:%%M:00', {column})",
            Bucket.HOUR: f"strftime('%%Y-%%m-%%d %%H:00:00', {column})",
            Bucket.DAY: f"strftime('%%Y-%%m-%%d 00:00:00', {column})",
            # 'weekday 0' moves forward to Sunday (staying on a Sunday); 6 days back is Monday.
            Bucket.WEEK: f"strftime('%%Y-%%m-%%d 00:00:00', {column}, 'weekday 0', '-6 days')",
            Bucket.MONTH: f"strftime('%%Y-%%m-01 00:00:00', {column})",
        }
        return formats[bucket]

    def to_units(self, column: str) -> str:
        """A cost column as an integer count of 1e-8 USD."""
        if self.postgres:
            return f"ROUND({column} * 100000000)::bigint"
        return f"CAST(ROUND({column} * 100000000) AS INTEGER)"

    def from_units(self, expression: str) -> str:
        if self.postgres:
            return f"(({expression})::numeric / 100000000)"
        return f"(({expression}) / 100000000.0)"

    def add_costs(self, current: str, added: str) -> str:
        if self.postgres:
            return f"{current} + {added}"
        return f"(ROUND({current} * 100000000 + {added} * 100000000) / 100000000.0)"

    def cast(self, kind: str) -> str:
        types = {
            "text": ("text", "TEXT"),
            "timestamp": ("timestamptz", "TEXT"),
            "integer": ("bigint", "INTEGER"),
        }
        return f"CAST(%s AS {types[kind][0 if self.postgres else 1]})"

    @property
    def timestamp_type(self) -> str:
        return "timestamptz" if self.postgres else "TEXT"


def _sql() -> _Sql:
    return _Sql(connection.vendor)


def _dt(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


EVENTS = UsageEvent._meta.db_table
AGGREGATES = UsageAggregate._meta.db_table
QUEUE = PendingUsageEvent._meta.db_table
DELTA = "usage_rollup_delta"
_DIMENSIONS = "user_id, access_key_id, provider, model"
_COUNTS = (
    "requests",
    "errors",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
_AGGREGATE_COLUMNS = f"bucket, bucket_start, {_DIMENSIONS}, {', '.join(_COUNTS)}, cost_usd"
_CONFLICT = "ON CONFLICT (bucket, bucket_start, user_id, access_key_id, provider, model)"


def _price_cte(sql: _Sql, windows: Sequence[PriceWindow]) -> tuple[str, list[Any]]:
    """A ``price_window`` table of prices in millionths of a dollar per million tokens."""
    text, stamp, integer = sql.cast("text"), sql.cast("timestamp"), sql.cast("integer")
    row = f"({text}, {text}, {stamp}, {stamp}, {integer}, {integer}, {integer}, {integer})"
    params: list[Any] = []
    for w in windows:
        params += [
            w.provider,
            w.model,
            _dt(w.valid_from),
            _dt(w.valid_until),
            price_micros(w.input_per_mtok),
            price_micros(w.output_per_mtok),
            price_micros(w.cache_read_per_mtok),
            price_micros(w.cache_write_per_mtok),
        ]
    if not windows:  # VALUES needs a row; NULLs match nothing
        params = [None] * 8
    rows = ", ".join([row] * max(1, len(windows)))
    return (
        f"price_window (provider, model, valid_from, valid_until, pi, po, pr, pw) "
        f"AS (VALUES {rows})",
        params,
    )


_PRICE_MATCH = (
    "p.provider = e.provider AND p.model = e.requested_model AND e.occurred_at >= p.valid_from "
    "AND (p.valid_until IS NULL OR e.occurred_at < p.valid_until)"
)
# Exactly usage.pricing.cost_units: tokens × micro-dollars per million tokens, in 1e-12 USD,
# rounded half up to 1e-8 USD.
_COMPUTED_UNITS = (
    "((e.input_tokens * p.pi + e.output_tokens * p.po + e.cache_read_tokens * p.pr"
    f" + e.cache_write_tokens * p.pw + {PICO_PER_COST_UNIT // 2}) / {PICO_PER_COST_UNIT})"
)


def _create_delta(sql: _Sql, cursor: Any) -> None:
    """The temporary table of one batch's sums per minute bucket and dimensions."""
    counts = ", ".join(f"{name} bigint" for name in _COUNTS)
    cursor.execute(f"DROP TABLE IF EXISTS {DELTA}", [])
    cursor.execute(
        f"CREATE TEMPORARY TABLE {DELTA} (bucket_start {sql.timestamp_type}, user_id bigint, "
        f"access_key_id bigint, provider varchar(16), model varchar(200), {counts}, "
        "cost_units bigint, unpriced bigint)",
        [],
    )


# Requested model names priced through a fallback name (usage.pricing.model_name_candidates),
# remembered so later batches price them in their first pass.
_fallback_priced: set[tuple[str, str]] = set()


def _fill_delta(sql: _Sql, cursor: Any, *, source: str, where: str, params: list[Any]) -> None:
    """Sum the events ``e`` of ``source`` matching ``where`` into a fresh delta table, pricing
    those without a recorded cost.

    Prices are joined for every (provider, model) of the price table, plus fallback names seen
    before; should the batch hold another pair that has a price after all, it is summed again
    with it. This spares a pass over the batch's events to list their models first.
    """
    pairs = set(Price.objects.order_by().values_list("provider", "model").distinct())
    pairs |= _fallback_priced
    while True:
        _create_delta(sql, cursor)
        prices, price_params = _price_cte(sql, price_windows(pairs))
        stored_units = sql.to_units("e.cost_usd")
        cursor.execute(
            f"WITH {prices} INSERT INTO {DELTA} SELECT"
            f" {sql.trunc(Bucket.MINUTE, 'e.occurred_at')}, COALESCE(e.user_id, 0),"
            " COALESCE(e.access_key_id, 0), e.provider, e.requested_model,"
            " COUNT(*), SUM(CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN e.fallback_reason <> '' THEN 1 ELSE 0 END),"
            " SUM(e.input_tokens), SUM(e.output_tokens), SUM(e.cache_read_tokens),"
            f" SUM(e.cache_write_tokens), SUM(COALESCE({stored_units}, {_COMPUTED_UNITS}, 0)),"
            " SUM(CASE WHEN e.cost_usd IS NULL AND p.provider IS NULL THEN 1 ELSE 0 END)"
            f" FROM {source} LEFT JOIN price_window p ON {_PRICE_MATCH}"
            f" WHERE {where} GROUP BY 1, 2, 3, 4, 5",
            [*price_params, *params],
        )
        cursor.execute(f"SELECT DISTINCT provider, model FROM {DELTA}", [])
        unseen = set(cursor.fetchall()) - pairs
        newly_priced = {(w.provider, w.model) for w in price_windows(unseen)}
        if not newly_priced:
            return
        _fallback_priced.update(newly_priced)
        pairs |= newly_priced


def _delta_to_level(sql: _Sql, cursor: Any, level: str, *, add: bool) -> None:
    """Write the delta's sums into the ``level`` rows: added to existing rows (``add``) or as
    new rows (the rebuild, which deleted them first)."""
    if level == Bucket.MINUTE:  # the delta is already one row per minute and dimensions
        select = (
            f"SELECT %s, d.bucket_start, d.user_id, d.access_key_id, d.provider, d.model,"
            f" {', '.join(f'd.{name}' for name in _COUNTS)}, {sql.from_units('d.cost_units')}"
            f" FROM {DELTA} d WHERE 1 = 1"
        )
    else:
        select = (
            f"SELECT %s, {sql.trunc(level, 'd.bucket_start')}, d.user_id, d.access_key_id,"
            f" d.provider, d.model, {', '.join(f'SUM(d.{name})' for name in _COUNTS)},"
            f" {sql.from_units('SUM(d.cost_units)')} FROM {DELTA} d WHERE 1 = 1"
            " GROUP BY 2, 3, 4, 5, 6"
        )
    conflict = ""
    if add:
        updates = ", ".join(f"{name} = {AGGREGATES}.{name} + excluded.{name}" for name in _COUNTS)
        cost = sql.add_costs(f"{AGGREGATES}.cost_usd", "excluded.cost_usd")
        conflict = f" {_CONFLICT} DO UPDATE SET {updates}, cost_usd = {cost}"
    cursor.execute(f"INSERT INTO {AGGREGATES} ({_AGGREGATE_COLUMNS}) {select}{conflict}", [level])


# --- Transactions ---------------------------------------------------------------------------


@contextmanager
def _snapshot_transaction() -> Iterator[None]:
    """A transaction whose statements all see one snapshot (see the module docstring)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if outermost:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # A batch's grouping fits in memory instead of spilling to disk.
                cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def _retryable(exc: OperationalError) -> bool:
    if getattr(exc.__cause__, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(exc)


def _with_retries(work: Callable[[], _T]) -> _T:
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as exc:
            # Inside an outer transaction (tests) the failed work cannot be redone in isolation.
            if attempt == _MAX_ATTEMPTS or connection.in_atomic_block or not _retryable(exc):
                raise
            logger.info("usage rollup: concurrent update, retrying (%s)", exc)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def rollup_state() -> UsageRollupState:
    state, _ = UsageRollupState.objects.get_or_create(pk=1)
    return state


# --- Incremental rollup ---------------------------------------------------------------------


@dataclass
class RollupReport:
    events: int = 0
    batches: int = 0
    unpriced: dict[tuple[str, str], int] = field(default_factory=dict)
    # Queued ids whose event no longer exists (deleted by hand): dropped from the queue.
    missing: int = 0
    # False when a batch limit or time budget stopped the run with events still queued.
    complete: bool = True


@dataclass(frozen=True)
class _Batch:
    queued: int
    events: int
    unpriced: dict[tuple[str, str], int]


def _unpriced_in_delta(cursor: Any) -> tuple[int, dict[tuple[str, str], int]]:
    cursor.execute(
        f"SELECT provider, model, SUM(unpriced), SUM(requests) FROM {DELTA}"
        " GROUP BY provider, model",
        [],
    )
    unpriced: dict[tuple[str, str], int] = {}
    events = 0
    for provider, model, without_price, requests in cursor.fetchall():
        events += int(requests)
        if without_price:
            unpriced[(provider, model)] = int(without_price)
    return events, unpriced


def _rollup_batch(batch_size: int) -> _Batch | None:
    sql = _sql()
    with _snapshot_transaction(), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MAX(event_id), COUNT(*) FROM (SELECT event_id FROM {QUEUE}"
            " ORDER BY event_id LIMIT %s) AS batch",
            [batch_size],
        )
        upper, queued = cursor.fetchone()
        if not queued:
            return None
        _create_delta(sql, cursor)
        _fill_delta(
            sql,
            cursor,
            source=f"{QUEUE} q JOIN {EVENTS} e ON e.id = q.event_id",
            where="q.event_id <= %s",
            params=[upper],
        )
        for level in LEVELS:
            _delta_to_level(sql, cursor, level, add=True)
        events, unpriced = _unpriced_in_delta(cursor)
        cursor.execute(f"DELETE FROM {QUEUE} WHERE event_id <= %s", [upper])
        deleted = cursor.rowcount
        cursor.execute(f"DROP TABLE {DELTA}", [])
        if deleted != queued:
            # Only possible if another transaction changed the queue inside this batch.
            raise OperationalError(f"usage rollup: batch counted {queued}, deleted {deleted}")
    return _Batch(queued=queued, events=events, unpriced=unpriced)


def _rollup_pending(
    *,
    leases: Sequence[Lease],
    batch_size: int,
    max_batches: int | None,
    time_budget: float | None,
    progress: Progress | None,
) -> RollupReport:
    report = RollupReport()
    started = time.monotonic()
    while True:
        batch = _with_retries(lambda: _rollup_batch(batch_size))
        if batch is None:
            break
        report.batches += 1
        report.events += batch.events
        report.missing += batch.queued - batch.events
        for key, count in batch.unpriced.items():
            report.unpriced[key] = report.unpriced.get(key, 0) + count
            _report_unpriced(key[0], key[1], count)
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


def _recompute_from(
    sql: _Sql, cursor: Any, level: str, finer: str, start: datetime, end: datetime
) -> None:
    """Replace the ``level`` rows starting in [start, end) by sums of ``finer`` rows."""
    cursor.execute(
        f"DELETE FROM {AGGREGATES} WHERE bucket = %s AND bucket_start >= %s AND bucket_start < %s",
        [level, _dt(start), _dt(end)],
    )
    counts = ", ".join(f"SUM(a.{name})" for name in _COUNTS)
    cost = sql.from_units(f"SUM({sql.to_units('a.cost_usd')})")
    cursor.execute(
        f"INSERT INTO {AGGREGATES} ({_AGGREGATE_COLUMNS}) SELECT %s,"
        f" {sql.trunc(level, 'a.bucket_start')}, a.user_id, a.access_key_id, a.provider, a.model,"
        f" {counts}, {cost} FROM {AGGREGATES} a"
        " WHERE a.bucket = %s AND a.bucket_start >= %s AND a.bucket_start < %s"
        " GROUP BY 2, 3, 4, 5, 6",
        [level, finer, _dt(start), _dt(end)],
    )


def _rebuild_day(day: datetime) -> int:
    """Recompute the minute, hour and day rows of one UTC day from its rolled-up events."""
    sql = _sql()
    end = bucket_next(Bucket.DAY, day)
    with _snapshot_transaction(), connection.cursor() as cursor:
        _create_delta(sql, cursor)
        _fill_delta(
            sql,
            cursor,
            source=f"{EVENTS} e",
            where=(
                "e.occurred_at >= %s AND e.occurred_at < %s"
                f" AND NOT EXISTS (SELECT 1 FROM {QUEUE} q WHERE q.event_id = e.id)"
            ),
            params=[_dt(day), _dt(end)],
        )
        events, _ = _unpriced_in_delta(cursor)
        cursor.execute(
            f"DELETE FROM {AGGREGATES} WHERE bucket = %s AND bucket_start >= %s"
            " AND bucket_start < %s",
            [Bucket.MINUTE, _dt(day), _dt(end)],
        )
        _delta_to_level(sql, cursor, Bucket.MINUTE, add=False)
        cursor.execute(f"DROP TABLE {DELTA}", [])
        _recompute_from(sql, cursor, Bucket.HOUR, Bucket.MINUTE, day, end)
        _recompute_from(sql, cursor, Bucket.DAY, Bucket.HOUR, day, end)
    return events


def _rebuild_weeks_and_months(start: datetime, end: datetime) -> None:
    sql = _sql()
    with _snapshot_transaction(), connection.cursor() as cursor:
        week, month = bucket_floor(Bucket.WEEK, start), bucket_floor(Bucket.MONTH, start)
        _recompute_from(sql, cursor, Bucket.WEEK, Bucket.DAY, week, end)
        _recompute_from(sql, cursor, Bucket.MONTH, Bucket.DAY, month, end)


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


def _days_with_data(start: datetime) -> list[datetime]:
    """The UTC days from ``start`` on that hold events or minute, hour or day rows."""
    sql = _sql()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sql.trunc(Bucket.DAY, 'occurred_at')} FROM {EVENTS}"
            f" WHERE occurred_at >= %s GROUP BY 1 UNION"
            f" SELECT {sql.trunc(Bucket.DAY, 'bucket_start')} FROM {AGGREGATES}"
            " WHERE bucket IN (%s, %s, %s) AND bucket_start >= %s GROUP BY 1",
            [_dt(start), Bucket.MINUTE, Bucket.HOUR, Bucket.DAY, _dt(start)],
        )
        days = [value for (value,) in cursor.fetchall()]
    # SQLite answers with text in Django's storage format.
    return sorted(
        day if isinstance(day, datetime) else datetime.fromisoformat(day).replace(tzinfo=UTC)
        for day in days
    )


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
        for day in _days_with_data(start):
            events = _with_retries(lambda day=day: _rebuild_day(day))  # type: ignore[misc]
            report.days += 1
            report.events += events
            if progress:
                progress(f"{day:%Y-%m-%d}: {events} events ({report.events} in all)")
            lease.extend()
            prune_lease.extend()
        _with_retries(lambda: _rebuild_weeks_and_months(start, end))
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
    old = UsageEvent.objects.filter(occurred_at__lt=report.cutoff).order_by()
    due = old.exclude(Exists(queued))
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
