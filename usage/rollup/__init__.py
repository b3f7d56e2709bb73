"""Rolling usage events up into UsageAggregate, rebuilding aggregates, and pruning raw events.

Modules: ``buckets`` (UTC bucket arithmetic, pure), ``sql`` (the statements, for PostgreSQL and
SQLite), ``services`` (the rollup, rebuild and prune, with their locks). Import from here.

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
* An event that cannot be added (a sum beyond 64 bits, from an absurd count stored before
  usage.recording bounded them) must not stop all accounting: a batch that fails on its data
  is split in halves until the failing events are alone; those move from the queue to
  DeadLetterUsageEvent (logged as errors, listed in the admin, queued again from there) and
  the rest is counted. A database that is away fails the run instead, to be retried.

Cost: an event's cost is ``UsageEvent.cost_usd`` when whoever recorded it set one, else the price
valid at its ``occurred_at`` of its upstream model, else of its requested model (usage.pricing,
computed here in SQL with the same integer arithmetic; the batch's sums are kept per upstream
model until they are written, since that model decides the price), else 0. It is not written
back to the event. A price added or corrected later
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

from usage.rollup.buckets import LEVELS, bucket_floor, bucket_next
from usage.rollup.services import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PRUNE_BATCH_SIZE,
    LOCK_TTL_SECONDS,
    PRUNE_LOCK,
    ROLLUP_LOCK,
    PruneReport,
    RebuildReport,
    RollupError,
    RollupReport,
    prune_cutoff,
    rollup_state,
    usage_aggregates_rebuild,
    usage_dead_letters_requeue,
    usage_events_prune,
    usage_rollup,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PRUNE_BATCH_SIZE",
    "LEVELS",
    "LOCK_TTL_SECONDS",
    "PRUNE_LOCK",
    "ROLLUP_LOCK",
    "PruneReport",
    "RebuildReport",
    "RollupError",
    "RollupReport",
    "bucket_floor",
    "bucket_next",
    "prune_cutoff",
    "rollup_state",
    "usage_aggregates_rebuild",
    "usage_dead_letters_requeue",
    "usage_events_prune",
    "usage_rollup",
]
