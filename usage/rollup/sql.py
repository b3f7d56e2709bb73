"""The SQL of the rollup, for PostgreSQL and SQLite: bucket truncation, cost arithmetic in
integer units, the per-batch delta table, the upserts into UsageAggregate, and the transaction
and retry rules every statement here runs under. usage.rollup.services decides what to run."""

# ruff: noqa: S608 - the SQL below is assembled only from this module's table names and
# expressions; every value is passed as a query parameter.

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import DatabaseError, DataError, OperationalError, connection, transaction

from usage.models import (
    AGGREGATE_COUNT_FIELDS,
    MAX_TOKENS_PER_COUNT,
    TOKEN_COUNT_FIELDS,
    Bucket,
    DeadLetterUsageEvent,
    PendingUsageEvent,
    Price,
    UsageAggregate,
    UsageEvent,
)
from usage.pricing import (
    PICO_PER_COST_UNIT,
    PriceKey,
    PriceWindow,
    price_micros,
    price_windows,
)

logger = logging.getLogger("usage.rollup")

_MAX_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock
_T = TypeVar("_T")


class UnsupportedDatabase(Exception):
    pass


class Dialect:
    """The few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, vendor: str) -> None:
        if vendor not in ("postgresql", "sqlite"):
            raise UnsupportedDatabase(
                f"the usage rollup supports PostgreSQL and SQLite, not {vendor}"
            )
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


def dialect() -> Dialect:
    return Dialect(connection.vendor)


def dt(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


EVENTS = UsageEvent._meta.db_table
AGGREGATES = UsageAggregate._meta.db_table
QUEUE = PendingUsageEvent._meta.db_table
DEAD_LETTERS = DeadLetterUsageEvent._meta.db_table
DELTA = "usage_rollup_delta"
_DIMENSIONS = "user_id, access_key_id, provider, model"
_COUNTS = AGGREGATE_COUNT_FIELDS
_AGGREGATE_COLUMNS = f"bucket, bucket_start, {_DIMENSIONS}, {', '.join(_COUNTS)}, cost_usd"
_CONFLICT = "ON CONFLICT (bucket, bucket_start, user_id, access_key_id, provider, model)"


def price_cte(sql: Dialect, windows: Sequence[PriceWindow]) -> tuple[str, list[Any]]:
    """A ``price_window`` table of prices in millionths of a dollar per million tokens, per
    (provider, upstream model, requested model) as usage.pricing resolved them."""
    text, stamp, integer = sql.cast("text"), sql.cast("timestamp"), sql.cast("integer")
    row = f"({text}, {text}, {text}, {stamp}, {stamp}, {integer}, {integer}, {integer}, {integer})"
    params: list[Any] = []
    for w in windows:
        params += [
            w.provider,
            w.upstream_model,
            w.model,
            dt(w.valid_from),
            dt(w.valid_until),
            price_micros(w.input_per_mtok),
            price_micros(w.output_per_mtok),
            price_micros(w.cache_read_per_mtok),
            price_micros(w.cache_write_per_mtok),
        ]
    if not windows:  # VALUES needs a row; NULLs match nothing
        params = [None] * 9
    rows = ", ".join([row] * max(1, len(windows)))
    return (
        "price_window (provider, upstream_model, requested_model, valid_from, valid_until,"
        f" pi, po, pr, pw) AS (VALUES {rows})",
        params,
    )


_PRICE_MATCH = (
    "p.provider = e.provider AND p.upstream_model = e.upstream_model"
    " AND p.requested_model = e.requested_model AND e.occurred_at >= p.valid_from"
    " AND (p.valid_until IS NULL OR e.occurred_at < p.valid_until)"
)
# Exactly usage.pricing.cost_units: tokens × micro-dollars per million tokens, in 1e-12 USD,
# rounded half up to 1e-8 USD.
_COMPUTED_UNITS = (
    "((e.input_tokens * p.pi + e.output_tokens * p.po + e.cache_read_tokens * p.pr"
    f" + e.cache_write_tokens * p.pw + {PICO_PER_COST_UNIT // 2}) / {PICO_PER_COST_UNIT})"
)


def create_delta(sql: Dialect, cursor: Any) -> None:
    """The temporary table of one batch's sums per minute bucket, dimensions and upstream model
    (which prices events but is not an aggregate dimension)."""
    counts = ", ".join(f"{name} bigint" for name in _COUNTS)
    cursor.execute(f"DROP TABLE IF EXISTS {DELTA}", [])
    cursor.execute(
        f"CREATE TEMPORARY TABLE {DELTA} (bucket_start {sql.timestamp_type}, user_id bigint, "
        f"access_key_id bigint, provider varchar(16), model varchar(200), "
        f"upstream_model varchar(200), {counts}, cost_units bigint, unpriced bigint)",
        [],
    )


# Priced (provider, upstream, requested) keys that the price table's own names do not cover (an
# alias, a snapshot, a prefixed or Bedrock name: usage.pricing.price_names), remembered so later
# batches price them in their first pass. Only priced keys are kept, so it grows with the models
# in use, not with the traffic; it is bounded because each key's windows are statement
# parameters (9 each; SQLite takes 32,766 in all). Past the bound, new keys still get their
# price, through a second pass of their batch.
_fallback_priced: set[PriceKey] = set()
_FALLBACK_MEMORY = 1_000


def fill_delta(sql: Dialect, cursor: Any, *, source: str, where: str, params: list[Any]) -> None:
    """Sum the events ``e`` of ``source`` matching ``where`` into a fresh delta table, pricing
    those without a recorded cost.

    Prices are joined for every key whose models both equal a priced name (the common case: an
    event asked for the model that answered), plus keys priced through other names seen
    before; should the batch hold another key that has a price after all, it is summed again
    with it. This spares a pass over the batch's events to list their models first.
    """
    keys: set[PriceKey] = {
        (provider, model, model)
        for provider, model in Price.objects.order_by().values_list("provider", "model").distinct()
    }
    keys |= _fallback_priced
    while True:
        create_delta(sql, cursor)
        prices, price_params = price_cte(sql, price_windows(keys))
        stored_units = sql.to_units("e.cost_usd")
        cursor.execute(
            f"WITH {prices} INSERT INTO {DELTA} SELECT"
            f" {sql.trunc(Bucket.MINUTE, 'e.occurred_at')}, COALESCE(e.user_id, 0),"
            " COALESCE(e.access_key_id, 0), e.provider, e.requested_model, e.upstream_model,"
            " COUNT(*), SUM(CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN e.fallback_reason <> '' THEN 1 ELSE 0 END),"
            " SUM(e.input_tokens), SUM(e.output_tokens), SUM(e.cache_read_tokens),"
            f" SUM(e.cache_write_tokens), SUM(COALESCE({stored_units}, {_COMPUTED_UNITS}, 0)),"
            " SUM(CASE WHEN e.cost_usd IS NULL AND p.provider IS NULL THEN 1 ELSE 0 END)"
            f" FROM {source} LEFT JOIN price_window p ON {_PRICE_MATCH}"
            f" WHERE {where} GROUP BY 1, 2, 3, 4, 5, 6",
            [*price_params, *params],
        )
        cursor.execute(
            f"SELECT DISTINCT provider, upstream_model, model FROM {DELTA} WHERE unpriced > 0", []
        )
        unseen = {(str(p), str(u), str(r)) for p, u, r in cursor.fetchall()} - keys
        newly_priced = {w.key for w in price_windows(unseen)}
        if not newly_priced:
            return
        if len(_fallback_priced) < _FALLBACK_MEMORY:
            _fallback_priced.update(newly_priced)
        keys |= newly_priced


def delta_to_level(sql: Dialect, cursor: Any, level: str, *, add: bool) -> None:
    """Write the delta's sums into the ``level`` rows: added to existing rows (``add``) or as
    new rows (the rebuild, which deleted them first)."""
    # The delta has a row per upstream model too, so even minutes are summed.
    start = "d.bucket_start" if level == Bucket.MINUTE else sql.trunc(level, "d.bucket_start")
    select = (
        f"SELECT %s, {start}, d.user_id, d.access_key_id,"
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


def delta_totals(cursor: Any) -> tuple[int, dict[tuple[str, str], int]]:
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


def recompute_from(
    sql: Dialect, cursor: Any, level: str, finer: str, start: datetime, end: datetime
) -> None:
    """Replace the ``level`` rows starting in [start, end) by sums of ``finer`` rows."""
    cursor.execute(
        f"DELETE FROM {AGGREGATES} WHERE bucket = %s AND bucket_start >= %s AND bucket_start < %s",
        [level, dt(start), dt(end)],
    )
    counts = ", ".join(f"SUM(a.{name})" for name in _COUNTS)
    cost = sql.from_units(f"SUM({sql.to_units('a.cost_usd')})")
    cursor.execute(
        f"INSERT INTO {AGGREGATES} ({_AGGREGATE_COLUMNS}) SELECT %s,"
        f" {sql.trunc(level, 'a.bucket_start')}, a.user_id, a.access_key_id, a.provider, a.model,"
        f" {counts}, {cost} FROM {AGGREGATES} a"
        " WHERE a.bucket = %s AND a.bucket_start >= %s AND a.bucket_start < %s"
        " GROUP BY 2, 3, 4, 5, 6",
        [level, finer, dt(start), dt(end)],
    )


def days_with_data(start: datetime) -> list[datetime]:
    """The UTC days from ``start`` on that hold events or minute, hour or day rows."""
    sql = dialect()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sql.trunc(Bucket.DAY, 'occurred_at')} FROM {EVENTS}"
            f" WHERE occurred_at >= %s GROUP BY 1 UNION"
            f" SELECT {sql.trunc(Bucket.DAY, 'bucket_start')} FROM {AGGREGATES}"
            " WHERE bucket IN (%s, %s, %s) AND bucket_start >= %s GROUP BY 1",
            [dt(start), Bucket.MINUTE, Bucket.HOUR, Bucket.DAY, dt(start)],
        )
        days = [value for (value,) in cursor.fetchall()]
    # SQLite answers with text in Django's storage format.
    return sorted(
        day if isinstance(day, datetime) else datetime.fromisoformat(day).replace(tzinfo=UTC)
        for day in days
    )


ENQUEUE_TRIGGER = "usage_enqueue_events"


def enqueue_trigger_exists() -> bool:
    """Whether the trigger that queues inserted events (migration usage 0002) is in place.

    On SQLite, a later migration that rebuilds the events table drops it; such a migration
    must create it again.
    """
    with connection.cursor() as cursor:
        if dialect().postgres:
            cursor.execute(
                "SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
                [ENQUEUE_TRIGGER, EVENTS],
            )
        else:
            cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = %s"
                " AND tbl_name = %s",
                [ENQUEUE_TRIGGER, EVENTS],
            )
        return cursor.fetchone() is not None


# A batch is the queued ids in (after, upper]; ``after`` None is the start of the queue.
_IN_RANGE = "event_id > %s AND event_id <= %s"


def _bounds(after: int | None, upper: int) -> list[int]:
    return [-1 if after is None else after, upper]


def queue_batch(cursor: Any, batch_size: int) -> tuple[int | None, int]:
    """The highest id and the number of the first ``batch_size`` queued events."""
    cursor.execute(
        f"SELECT MAX(event_id), COUNT(*) FROM (SELECT event_id FROM {QUEUE}"
        " ORDER BY event_id LIMIT %s) AS batch",
        [batch_size],
    )
    upper, queued = cursor.fetchone()
    return upper, int(queued)


def queue_count(cursor: Any, after: int | None, upper: int) -> int:
    cursor.execute(f"SELECT COUNT(*) FROM {QUEUE} WHERE {_IN_RANGE}", _bounds(after, upper))
    return int(cursor.fetchone()[0])


def queue_split(cursor: Any, after: int | None, upper: int, count: int) -> int:
    """The id that ends the first half of the ``count`` queued ids in (after, upper]."""
    cursor.execute(
        f"SELECT event_id FROM {QUEUE} WHERE {_IN_RANGE} ORDER BY event_id LIMIT 1 OFFSET %s",
        [*_bounds(after, upper), max(count // 2 - 1, 0)],
    )
    return int(cursor.fetchone()[0])


def queue_ids(cursor: Any, after: int | None, upper: int) -> list[int]:
    cursor.execute(
        f"SELECT event_id FROM {QUEUE} WHERE {_IN_RANGE} ORDER BY event_id", _bounds(after, upper)
    )
    return [int(event_id) for (event_id,) in cursor.fetchall()]


def queue_oversized(cursor: Any, after: int | None, upper: int) -> list[int]:
    """Queued ids in (after, upper] of events with a token count beyond MAX_TOKENS_PER_COUNT
    (stored before usage.recording bounded them, or written by hand): their sums and costs could
    overflow 64 bits, which PostgreSQL refuses but SQLite turns into floats without a word."""
    beyond = " OR ".join(f"e.{name} > %s" for name in TOKEN_COUNT_FIELDS)
    cursor.execute(
        f"SELECT q.event_id FROM {QUEUE} q JOIN {EVENTS} e ON e.id = q.event_id"
        f" WHERE q.event_id > %s AND q.event_id <= %s AND ({beyond}) ORDER BY q.event_id",
        [*_bounds(after, upper), *[MAX_TOKENS_PER_COUNT] * len(TOKEN_COUNT_FIELDS)],
    )
    return [int(event_id) for (event_id,) in cursor.fetchall()]


def fill_delta_from_queue(sql: Dialect, cursor: Any, after: int | None, upper: int) -> None:
    fill_delta(
        sql,
        cursor,
        source=f"{QUEUE} q JOIN {EVENTS} e ON e.id = q.event_id",
        where="q.event_id > %s AND q.event_id <= %s",
        params=_bounds(after, upper),
    )


def fill_delta_from_day(sql: Dialect, cursor: Any, day: datetime, end: datetime) -> None:
    """The rolled-up events (neither in the queue nor set aside) that occurred in [day, end)."""
    fill_delta(
        sql,
        cursor,
        source=f"{EVENTS} e",
        where=(
            "e.occurred_at >= %s AND e.occurred_at < %s"
            f" AND NOT EXISTS (SELECT 1 FROM {QUEUE} q WHERE q.event_id = e.id)"
            f" AND NOT EXISTS (SELECT 1 FROM {DEAD_LETTERS} x WHERE x.event_id = e.id)"
        ),
        params=[dt(day), dt(end)],
    )


def dequeue(cursor: Any, after: int | None, upper: int) -> int:
    """Delete the queue rows in (after, upper]; returns how many there were."""
    cursor.execute(f"DELETE FROM {QUEUE} WHERE {_IN_RANGE}", _bounds(after, upper))
    return int(cursor.rowcount)


def set_aside(cursor: Any, event_id: int, reason: str, now: datetime) -> None:
    """Move one queued event to the dead letters."""
    cursor.execute(f"DELETE FROM {QUEUE} WHERE event_id = %s", [event_id])
    cursor.execute(
        f"INSERT INTO {DEAD_LETTERS} (event_id, reason, set_aside_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (event_id) DO UPDATE SET reason = excluded.reason,"
        " set_aside_at = excluded.set_aside_at",
        [event_id, reason, dt(now)],
    )


def delete_rows(cursor: Any, level: str, start: datetime, end: datetime) -> None:
    cursor.execute(
        f"DELETE FROM {AGGREGATES} WHERE bucket = %s AND bucket_start >= %s AND bucket_start < %s",
        [level, dt(start), dt(end)],
    )


def drop_delta(cursor: Any) -> None:
    cursor.execute(f"DROP TABLE {DELTA}", [])


# --- Transactions ---------------------------------------------------------------------------


@contextmanager
def snapshot_transaction() -> Iterator[None]:
    """A transaction whose statements all see one snapshot (see usage.rollup)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if outermost:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # A batch's grouping fits in memory instead of spilling to disk.
                cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def is_data_error(exc: DatabaseError) -> bool:
    """Whether ``exc`` comes from the values a statement computed (a sum beyond 64 bits, a
    value out of its column's range) rather than from the database being away or busy: the
    same events fail the same way every time."""
    if isinstance(exc, DataError):
        return True
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("22")  # PostgreSQL's class 22: data exception
    message = str(exc)
    return connection.vendor == "sqlite" and ("integer overflow" in message or "too big" in message)


def _retryable(exc: OperationalError) -> bool:
    if getattr(exc.__cause__, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(exc)


def with_retries(work: Callable[[], _T]) -> _T:
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
