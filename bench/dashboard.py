"""Benchmark of the usage dashboard and the admin usage API on a year of aggregates.

Run against a scratch PostgreSQL database, never a production one: ``--generate`` empties the
aggregate table and fills it again.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/gateway_bench \\
        .venv/bin/python -m bench.dashboard --generate

The data set is what a rollup of ``--events`` requests (default 10 million) over the last year
leaves behind, written directly as aggregates: 200 users with 2 keys each, 2 providers, 6
models, hour buckets for the year and minute buckets for the last ``--minute-days`` days; day,
week and month buckets are then summed from the hours in SQL, so every bucket size agrees. Each
dashboard page and API call is requested through Django's test client (middleware, session,
templates and all) once to warm up, then ``--repeat`` times; the median and the slowest run are
reported against the 300 ms target.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

TARGET_MS = 300.0
USERS = 200
KEYS_PER_USER = 2
# (model, share of requests, input tokens, output tokens, USD per request)
MODELS: list[tuple[str, float, int, int, float]] = [
    ("claude-sonnet-4-5", 0.36, 18_000, 900, 0.045),
    ("claude-opus-4-6", 0.14, 22_000, 1_200, 0.16),
    ("claude-haiku-4-5", 0.25, 9_000, 500, 0.011),
    ("claude-sonnet-4-6", 0.15, 20_000, 1_000, 0.05),
    ("claude-opus-4-5", 0.06, 21_000, 1_100, 0.15),
    ("claude-3-7-sonnet", 0.04, 15_000, 800, 0.04),
]
COLUMNS = (
    "bucket, bucket_start, user_id, access_key_id, provider, model, requests, errors, fallbacks, "
    "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd"
)
SUMS = (
    "sum(requests), sum(errors), sum(fallbacks), sum(input_tokens), sum(output_tokens), "
    "sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd)"
)


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()


# --- Data ---------------------------------------------------------------------------------------


def _hour_weight(moment: datetime) -> float:
    """Working hours (around 01:00-10:00 UTC, i.e. a day in Seoul) and weekdays are busier."""
    daily = 0.25 + (1.0 if 0 <= moment.hour < 11 else 0.35)
    return daily * (1.0 if moment.weekday() < 5 else 0.35)


def _rows(
    *, bucket: str, starts: list[datetime], requests_per_bucket: float, rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    """Aggregate rows of ``bucket`` size: a few active keys per bucket, most requests on few
    keys (a long tail), each key on one or two models, Bedrock for the fallbacks and for the
    keys set up to use it."""
    keys = [
        (user, user * KEYS_PER_USER + number)
        for user in range(1, USERS + 1)
        for number in range(KEYS_PER_USER)
    ]
    key_weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(keys))]
    favourite_models = {
        key: rng.choices(range(len(MODELS)), weights=[m[1] for m in MODELS], k=2) for _, key in keys
    }
    weights_sum = sum(_hour_weight(start) for start in starts) / len(starts)
    for start in starts:
        volume = requests_per_bucket * _hour_weight(start) / weights_sum
        # About 9 requests per chosen key (calibrated: ~1.8 models each, fewer once repeated
        # draws of a busy key collapse into one).
        active = max(1, min(len(keys), int(rng.gauss(volume / 9, volume / 45))))
        # A key appears once per bucket (the aggregate key is unique).
        for user, key in sorted(set(rng.choices(keys, weights=key_weights, k=active))):
            for model_index in set(favourite_models[key]):
                model, _, input_tokens, output_tokens, usd = MODELS[model_index]
                requests = max(1, int(rng.expovariate(1 / 8)))
                fallbacks = sum(rng.random() < 0.06 for _ in range(min(requests, 20)))
                for provider, count, fallback_count in (
                    ("anthropic", requests - fallbacks, 0),
                    ("bedrock", fallbacks, fallbacks),
                ):
                    if count <= 0:
                        continue
                    cache_read = int(count * input_tokens * rng.uniform(0.5, 3))
                    yield (
                        bucket,
                        start,
                        user,
                        key,
                        provider,
                        model,
                        count,
                        int(count * 0.01 * rng.random()),
                        fallback_count,
                        count * input_tokens,
                        count * output_tokens,
                        cache_read,
                        int(count * input_tokens * 0.1),
                        f"{count * usd * rng.uniform(0.8, 1.2):.8f}",
                    )


def generate(*, events: int, minute_days: int, seed: int) -> None:
    from django.db import connection

    rng = random.Random(seed)  # noqa: S311 - synthetic data
    now = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    minute_from = (now - timedelta(days=minute_days)).replace(minute=0)
    year_start = (now - timedelta(days=365)).replace(minute=0)
    hours = [year_start + timedelta(hours=index) for index in range(365 * 24)]
    hours = [hour for hour in hours if hour < minute_from]
    minutes_count = int((now - minute_from).total_seconds() // 60) + 1
    minutes = [minute_from + timedelta(minutes=index) for index in range(minutes_count)]
    per_hour = events / (365 * 24)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE usage_usageaggregate")
        with cursor.cursor.copy(f"COPY usage_usageaggregate ({COLUMNS}) FROM STDIN") as copy:
            for row in _rows(bucket="hour", starts=hours, requests_per_bucket=per_hour, rng=rng):
                copy.write_row(row)
            for row in _rows(
                bucket="minute", starts=minutes, requests_per_bucket=per_hour / 60, rng=rng
            ):
                copy.write_row(row)
        print(f"  hour and minute rows written in {time.perf_counter() - started:.1f} s")  # noqa: T201
        # Hours of the minute-bucket days come from the minutes, so both sizes agree there.
        for bucket, source, truncate in (
            ("hour", "minute", "date_trunc('hour', bucket_start, 'UTC')"),
            ("day", "hour", "date_trunc('day', bucket_start, 'UTC')"),
            ("week", "day", "date_trunc('week', bucket_start, 'UTC')"),
            ("month", "day", "date_trunc('month', bucket_start, 'UTC')"),
        ):
            cursor.execute(
                f"INSERT INTO usage_usageaggregate ({COLUMNS}) "  # noqa: S608 - constants only
                f"SELECT %s, {truncate}, user_id, access_key_id, provider, model, {SUMS} "
                "FROM usage_usageaggregate WHERE bucket = %s "
                "GROUP BY 2, user_id, access_key_id, provider, model",
                [bucket, source],
            )
        cursor.execute("VACUUM ANALYZE usage_usageaggregate")
        cursor.execute(
            "SELECT bucket, count(*), sum(requests) FROM usage_usageaggregate GROUP BY bucket "
            "ORDER BY min(bucket_start)"
        )
        for bucket, rows, requests in cursor.fetchall():
            print(f"  {bucket:>6}: {rows:>9,} rows, {requests:>11,} requests")  # noqa: T201
    print(f"  generated in {time.perf_counter() - started:.1f} s")  # noqa: T201


# --- Timing -------------------------------------------------------------------------------------


def cases(user_id: int, key_id: int) -> list[tuple[str, str, dict[str, str]]]:
    """(name, url, query parameters) of every page and call to time."""
    from django.urls import reverse

    dashboard = reverse("admin:usage_dashboard")
    user_page = reverse("admin:usage_dashboard_user", args=[user_id])
    key_page = reverse("admin:usage_dashboard_key", args=[key_id])
    now = datetime.now(tz=UTC)
    year = {
        "range": "custom",
        "start": (now - timedelta(days=364)).strftime("%Y-%m-%dT00:00"),
        "end": now.strftime("%Y-%m-%dT%H:%M"),
    }
    api_year = {"from": year["start"], "to": year["end"]}
    return [
        ("dashboard: last hour (minute), UTC", dashboard, {"range": "hour"}),
        ("dashboard: last day (hour), UTC", dashboard, {"range": "day"}),
        ("dashboard: last day (hour), Asia/Seoul", dashboard, {"range": "day", "tz": "Asia/Seoul"}),
        ("dashboard: last week (hour), UTC", dashboard, {"range": "week"}),
        (
            "dashboard: last week (hour), Asia/Kolkata",
            dashboard,
            {"range": "week", "tz": "Asia/Kolkata"},
        ),
        ("dashboard: last month (day), UTC", dashboard, {"range": "month"}),
        (
            "dashboard: last month (day), Asia/Seoul",
            dashboard,
            {"range": "month", "tz": "Asia/Seoul"},
        ),
        (
            "dashboard: last month (day), America/New_York",
            dashboard,
            {"range": "month", "tz": "America/New_York"},
        ),
        ("dashboard: year by month, UTC", dashboard, {**year, "granularity": "month"}),
        (
            "dashboard: year by month, Asia/Seoul",
            dashboard,
            {**year, "granularity": "month", "tz": "Asia/Seoul"},
        ),
        ("dashboard: year by week, UTC", dashboard, {**year, "granularity": "week"}),
        ("dashboard: year by day, UTC", dashboard, {**year, "granularity": "day"}),
        ("dashboard: last month, rank by tokens", dashboard, {"range": "month", "rank": "tokens"}),
        (
            "dashboard: last month, provider bedrock",
            dashboard,
            {"range": "month", "provider": "bedrock"},
        ),
        ("user drill-down: last month (day)", user_page, {"range": "month"}),
        (
            "user drill-down: year by month, Asia/Seoul",
            user_page,
            {**year, "granularity": "month", "tz": "Asia/Seoul"},
        ),
        ("key drill-down: last month (day)", key_page, {"range": "month"}),
        ("CSV series: last month (day)", dashboard, {"range": "month", "export": "series"}),
        ("CSV top users: last month", dashboard, {"range": "month", "export": "users"}),
        (
            "CSV models: year by month",
            dashboard,
            {**year, "granularity": "month", "export": "models"},
        ),
        ("API usage: default (last day, hour)", "/api/admin/usage", {}),
        ("API usage: last day by minute", "/api/admin/usage", {"granularity": "minute"}),
        (
            "API usage: month by day, Asia/Seoul",
            "/api/admin/usage",
            {
                "from": (now - timedelta(days=30)).strftime("%Y-%m-%d"),
                "granularity": "day",
                "tz": "Asia/Seoul",
            },
        ),
        ("API usage: year by month, UTC", "/api/admin/usage", {**api_year, "granularity": "month"}),
        (
            "API usage: year by month, Asia/Kolkata",
            "/api/admin/usage",
            {**api_year, "granularity": "month", "tz": "Asia/Kolkata"},
        ),
        (
            "API usage: one user, year by week",
            "/api/admin/usage",
            {**api_year, "granularity": "week", "user": str(user_id)},
        ),
        (
            "API top users: last month by cost",
            "/api/admin/usage/top-users",
            {"from": (now - timedelta(days=30)).isoformat()},
        ),
        (
            "API top users: year by tokens",
            "/api/admin/usage/top-users",
            {**api_year, "order_by": "tokens", "limit": "100"},
        ),
        ("admin: aggregate list", reverse("admin:usage_usageaggregate_changelist"), {}),
        (
            "admin: aggregate list, day buckets",
            reverse("admin:usage_usageaggregate_changelist"),
            {"bucket": "day"},
        ),
        ("admin: usage event list", reverse("admin:usage_usageevent_changelist"), {}),
    ]


def run(*, repeat: int) -> int:
    from django.conf import settings
    from django.db.models import Sum
    from django.test import Client

    from accounts.models import User
    from usage.models import UsageAggregate

    if "testserver" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS.append("testserver")
    staff, _ = User.objects.get_or_create(
        email="bench-admin@example.com", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(staff)
    busiest = (
        UsageAggregate.objects.filter(bucket="month")
        .values("user_id", "access_key_id")
        .annotate(cost=Sum("cost_usd"))
        .order_by("-cost")
        .first()
    )
    if busiest is None:
        print("No aggregates: run with --generate first.")  # noqa: T201
        return 2
    slow = 0
    print(f"{'page or call':<52} {'median':>9} {'slowest':>9}")  # noqa: T201
    for name, url, params in cases(busiest["user_id"], busiest["access_key_id"]):
        timings = []
        for attempt in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(url, params)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                print(f"{name}: HTTP {response.status_code} {response.content[:300]!r}")  # noqa: T201
                return 1
            if attempt:  # the first request warms caches and is not counted
                timings.append(elapsed)
        median, worst = statistics.median(timings), max(timings)
        flag = "" if median < TARGET_MS else "  over target"
        slow += median >= TARGET_MS
        print(f"{name:<52} {median:>7.1f}ms {worst:>7.1f}ms{flag}")  # noqa: T201
    print(f"{slow} of the timed pages and calls over {TARGET_MS:.0f} ms (median).")  # noqa: T201
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generate", action="store_true", help="refill the aggregate table")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--minute-days", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        print("The benchmark needs PostgreSQL: set DATABASE_URL.")  # noqa: T201
        return 2
    call_command("migrate", verbosity=0)
    if args.generate:
        print(f"Generating aggregates for {args.events:,} events over a year...")  # noqa: T201
        generate(events=args.events, minute_days=args.minute_days, seed=args.seed)
    return run(repeat=args.repeat)


if __name__ == "__main__":
    sys.exit(main())
