"""Benchmark of the request log viewer and the log API on millions of logged requests.

Run against a scratch PostgreSQL database, never a production one: ``--generate`` empties the
usage event and request log tables and fills them again.

    createdb -h 127.0.0.1 -U postgres gateway_bench_logs
    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/gateway_bench_logs \\
        .venv/bin/python -m bench.requestlog --generate --rows 2000000

The data set: ``--rows`` requests over the last ``--days`` days (default 30), each a usage
event and a request log at level metadata; 200 users with one key each, 5 models, 15% answered
by Bedrock after a fallback, 2% errors (a tenth of them 429s), 30% streamed, latencies and costs
spread over two orders of magnitude. Rows are written with INSERT ... SELECT over
generate_series in SQL (the usage rollup's trigger is disabled while they are, so the pending
queue is not filled), then ANALYZEd.

Each admin list page (no filter, each filter alone, a few together, a request id search) and
each API list call is requested through Django's test client (middleware, session, templates)
once to warm up, then ``--repeat`` times; the median and the slowest run are reported against
the 300 ms target. Not a test: nothing asserts on the timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

TARGET_MS = 300.0

# Fills both tables in one statement per chunk; %(start)s/%(stop)s number the rows.
FILL_EVENTS = """
INSERT INTO usage_usageevent (
    event_id, occurred_at, recorded_at, user_id, access_key_id, provider, requested_model,
    upstream_model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
    status_code, streamed, client_disconnected, latency_ms, time_to_first_byte_ms,
    fallback_reason, session_id, request_id, cost_usd
)
SELECT
    md5('event' || n)::uuid,
    now() - (%(days)s * interval '1 day') * ((%(rows)s - n)::float / %(rows)s),
    now(),
    1 + mod(h, 200),
    1 + mod(h, 200),
    CASE WHEN mod(h, 100) < 15 THEN 'bedrock' ELSE 'anthropic' END,
    (ARRAY['claude-sonnet-4-5','claude-opus-4-6','claude-haiku-4-5','claude-sonnet-4-6',
           'claude-opus-4-5'])[1 + mod(h / 7, 5)],
    '',
    1000 + mod(h, 30000), 50 + mod(h, 2000), 0, 0,
    CASE WHEN mod(h, 1000) < 2 THEN 429 WHEN mod(h, 100) < 2 THEN 500 ELSE 200 END,
    mod(h, 10) < 3,
    false,
    100 + mod(h * 7919, 60000),
    50 + mod(h, 900),
    CASE WHEN mod(h, 100) < 15 THEN 'anthropic_529' ELSE '' END,
    'session-' || mod(h, 5000),
    'gwreq_' || lpad(to_hex(n), 24, '0'),
    (mod(h, 5000) / 10000.0)::numeric(18, 8)
FROM (
    SELECT n, abs(hashtext(n::text))::bigint AS h
    FROM generate_series(%(start)s, %(stop)s) AS n
) AS numbered
"""
FILL_LOGS = """
INSERT INTO requestlog_requestlog (
    event_id, occurred_at, request_id, level, surface, credential_fingerprint, user_agent,
    attempts, has_body
)
SELECT event_id, occurred_at, request_id, 'metadata', 'messages', 'c0ffee123456',
       'claude-cli/2.1.0 (external, cli)',
       CASE WHEN fallback_reason = '' THEN
           '[{"provider":"anthropic","outcome":"answered","status":200,"latency_ms":900}]'::jsonb
       ELSE
           '[{"provider":"anthropic","outcome":"anthropic_529","latency_ms":120},
             {"provider":"bedrock","outcome":"answered","status":200,"latency_ms":1500}]'::jsonb
       END,
       false
FROM usage_usageevent WHERE id > %(after)s
"""


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()


def generate(*, rows: int, days: int, chunk: int = 200_000) -> None:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE requestlog_requestbody, requestlog_requestmedia, requestlog_requestlog"
        )
        cursor.execute("TRUNCATE usage_usageevent, usage_pendingusageevent")
        cursor.execute("ALTER TABLE usage_usageevent DISABLE TRIGGER USER")
        try:
            for start in range(1, rows + 1, chunk):
                stop = min(rows, start + chunk - 1)
                cursor.execute("SELECT coalesce(max(id), 0) FROM usage_usageevent")
                after = cursor.fetchone()[0]
                began = time.perf_counter()
                cursor.execute(
                    FILL_EVENTS, {"start": start, "stop": stop, "rows": rows, "days": days}
                )
                cursor.execute(FILL_LOGS, {"after": after})
                print(f"  rows {start:>9}-{stop:<9} {time.perf_counter() - began:6.1f} s")  # noqa: T201
        finally:
            cursor.execute("ALTER TABLE usage_usageevent ENABLE TRIGGER USER")
        cursor.execute("ANALYZE usage_usageevent")
        cursor.execute("ANALYZE requestlog_requestlog")


def _time(client: Any, url: str, repeat: int) -> tuple[float, float, int]:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: status {response.status_code}")
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        runs.append((time.perf_counter() - began) * 1000)
    return statistics.median(runs), max(runs), len(response.content)


def measure(repeat: int) -> bool:
    from django.conf import settings
    from django.test import Client

    from accounts.models import User

    if "testserver" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS.append("testserver")

    user, _ = User.objects.get_or_create(
        email="bench-admin@example.com", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    some_request = "gwreq_" + format(1234, "x").rjust(24, "0")
    pages = {
        "admin list, no filter": "/admin/requestlog/requestlog/",
        "admin, last 24 h": "/admin/requestlog/requestlog/?since=24h",
        "admin, one user": "/admin/requestlog/requestlog/?user=17",
        "admin, one key": "/admin/requestlog/requestlog/?key=17",
        "admin, bedrock": "/admin/requestlog/requestlog/?provider=bedrock",
        "admin, model": "/admin/requestlog/requestlog/?model=claude-opus-4-6",
        "admin, 429s": "/admin/requestlog/requestlog/?status=429",
        "admin, errors": "/admin/requestlog/requestlog/?status=error",
        "admin, fallback": "/admin/requestlog/requestlog/?fallback=yes",
        "admin, streamed": "/admin/requestlog/requestlog/?streamed=yes",
        "admin, latency >= 60 s": "/admin/requestlog/requestlog/?latency=gt60",
        "admin, cost $0.10-1": "/admin/requestlog/requestlog/?cost=0.1-1",
        "admin, user + errors + 7 d": "/admin/requestlog/requestlog/?user=17&status=error&since=7d",
        "admin, page 50": "/admin/requestlog/requestlog/?p=50",
        "admin, request id": f"/admin/requestlog/requestlog/?q={some_request}",
        "api, no filter": "/api/admin/logs?limit=100",
        "api, user + fallback": "/api/admin/logs?limit=100&user=17&fallback=true",
        "api, 429s": "/api/admin/logs?limit=100&status=429",
        "api, detail": f"/api/admin/logs/{some_request}",
    }
    within = True
    print(f"{'page':32} {'median ms':>10} {'max ms':>8}  target {TARGET_MS:.0f} ms")  # noqa: T201
    for name, url in pages.items():
        median, slowest, _ = _time(client, url, repeat)
        mark = "ok" if median <= TARGET_MS else "SLOW"
        within &= median <= TARGET_MS
        print(f"{name:32} {median:10.1f} {slowest:8.1f}  {mark}")  # noqa: T201
    return within


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generate", action="store_true", help="Empty and fill the tables.")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    _setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        print("bench.requestlog needs PostgreSQL (DATABASE_URL)", file=sys.stderr)  # noqa: T201
        return 2
    if args.generate:
        print(f"generating {args.rows} logged requests over {args.days} days")  # noqa: T201
        generate(rows=args.rows, days=args.days)
    return 0 if measure(args.repeat) else 1


if __name__ == "__main__":
    sys.exit(main())
