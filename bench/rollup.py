"""Benchmark of the usage rollup: load N synthetic events into PostgreSQL, time the rollup.

Run against a scratch database, never a production one: ``--reset`` empties the usage tables.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/gateway_bench \\
        .venv/bin/python -m bench.rollup --events 1000000 --reset

It migrates the database, writes the events with COPY (not timed; the insert trigger queues
them for the rollup), analyzes the tables as autovacuum would, times
``usage.rollup.usage_rollup`` over the whole backlog, then checks that every bucket size adds up
to the raw events. ``--rebuild`` also times a full rebuild.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()


# (provider, requested model, share); the last model has no price on purpose.
MODELS = [
    ("claude-sonnet-4-5", 0.45),
    ("claude-opus-4-6", 0.20),
    ("claude-haiku-4-5-20251001", 0.25),
    ("claude-sonnet-4-6", 0.09),
    ("some-unpriced-model", 0.01),
]
COLUMNS = (
    "event_id, occurred_at, recorded_at, user_id, access_key_id, provider, requested_model, "
    "upstream_model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
    "status_code, streamed, client_disconnected, latency_ms, fallback_reason, session_id, "
    "request_id"
)


def generate(*, events: int, days: int, users: int, seed: int) -> None:
    """Write ``events`` events that occurred over the last ``days`` days, with COPY.

    Events are written in the order they were recorded, as the proxy writes them: a few
    seconds after they occurred, except 1% that arrive late (minutes to hours, as when a spool
    is replayed) and so land in older buckets than their neighbours.
    """
    from django.db import connection

    rng = random.Random(seed)  # noqa: S311 - synthetic data
    now = datetime.now(tz=UTC)
    span = days * 86400
    names = [name for name, _ in MODELS]
    weights = [share for _, share in MODELS]
    timeline = []
    for _ in range(events):
        occurred = rng.random() * span
        delay = rng.random() * 3 if rng.random() > 0.01 else rng.random() * 6 * 3600
        timeline.append((occurred + delay, occurred))
    timeline.sort()
    start = now - timedelta(seconds=span)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY usage_usageevent ({COLUMNS}) FROM STDIN") as copy,
    ):
        for number, (recorded_offset, occurred_offset) in enumerate(timeline):
            user = rng.randint(1, users)
            bedrock = rng.random() < 0.15
            status = 200 if rng.random() > 0.02 else rng.choice((400, 429, 500, 529))
            copy.write_row(
                (
                    uuid.UUID(int=rng.getrandbits(128), version=4),
                    start + timedelta(seconds=occurred_offset),
                    start + timedelta(seconds=recorded_offset),
                    user,
                    1000 + user,
                    "bedrock" if bedrock else "anthropic",
                    rng.choices(names, weights)[0],
                    "",
                    rng.randint(1, 20_000),
                    rng.randint(1, 4_000),
                    rng.choice((0, 0, rng.randint(0, 200_000))),
                    rng.choice((0, 0, 0, rng.randint(0, 20_000))),
                    status,
                    True,
                    False,
                    rng.randint(200, 60_000),
                    "anthropic_rate_limited" if bedrock else "",
                    "",
                    f"req_{number}",
                )
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE usage_usageevent, usage_pendingusageevent")


def check_totals() -> None:
    """Each bucket size must sum to the raw events: requests, tokens, and cost, priced here
    independently (latest price valid at each event, rounded half up to 1e-8 USD per event)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*), SUM(e.input_tokens + e.output_tokens + e.cache_read_tokens"
            " + e.cache_write_tokens), SUM(COALESCE(e.cost_usd, ROUND((e.input_tokens *"
            " p.input_per_mtok + e.output_tokens * p.output_per_mtok + e.cache_read_tokens *"
            " p.cache_read_per_mtok + e.cache_write_tokens * p.cache_write_per_mtok) / 1000000,"
            " 8), 0)) FROM usage_usageevent e LEFT JOIN LATERAL (SELECT * FROM usage_price p"
            " WHERE p.provider = e.provider AND p.model = e.requested_model"
            " AND p.valid_from <= e.occurred_at ORDER BY p.valid_from DESC LIMIT 1) p ON TRUE"
        )
        raw = cursor.fetchone()
        cursor.execute(
            "SELECT bucket, SUM(requests), SUM(input_tokens + output_tokens + cache_read_tokens"
            " + cache_write_tokens), SUM(cost_usd), COUNT(*) FROM usage_usageaggregate"
            " GROUP BY bucket ORDER BY bucket"
        )
        rows = cursor.fetchall()
    print(f"raw events: {raw[0]} requests, {raw[1]} tokens, {raw[2]} USD")  # noqa: T201
    ok = True
    for bucket, requests, tokens, cost, count in rows:
        same = (requests, tokens, cost) == tuple(raw)
        ok = ok and same
        print(f"  {bucket:>6}: {count:>8} rows, totals {'match' if same else 'DIFFER'}")  # noqa: T201
    if not ok:
        sys.exit("totals differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reset", action="store_true", help="empty the usage tables first")
    parser.add_argument("--rebuild", action="store_true", help="also time a full rebuild")
    args = parser.parse_args()

    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    from usage.models import UsageAggregate, UsageEvent
    from usage.rollup import DEFAULT_BATCH_SIZE, usage_aggregates_rebuild, usage_rollup

    if connection.vendor != "postgresql":
        sys.exit("the benchmark needs PostgreSQL: set DATABASE_URL")
    call_command("migrate", verbosity=0)
    if UsageEvent.objects.exists() or UsageAggregate.objects.exists():
        if not args.reset:
            sys.exit("the usage tables are not empty: pass --reset to empty them")
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE usage_usageevent, usage_usageaggregate, usage_usagerollupstate"
            )

    started = time.perf_counter()
    generate(events=args.events, days=args.days, users=args.users, seed=args.seed)
    print(f"generated {args.events} events in {time.perf_counter() - started:.1f} s")  # noqa: T201

    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    started = time.perf_counter()
    report = usage_rollup(
        batch_size=batch_size,
        progress=lambda line: print(f"  {time.perf_counter() - started:6.1f} s  {line}"),  # noqa: T201
    )
    elapsed = time.perf_counter() - started
    print(  # noqa: T201
        f"rollup: {report.events} events in {report.batches} batches of {batch_size}: "
        f"{elapsed:.1f} s ({report.events / elapsed:,.0f} events/s)"
    )
    check_totals()

    if args.rebuild:
        started = time.perf_counter()
        rebuilt = usage_aggregates_rebuild()
        elapsed = time.perf_counter() - started
        print(f"rebuild: {rebuilt.events} events over {rebuilt.days} days: {elapsed:.1f} s")  # noqa: T201
        check_totals()


if __name__ == "__main__":
    main()
