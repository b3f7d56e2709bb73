"""Rollups running at the same time on PostgreSQL, each in its own thread and connection.

With the lock bypassed, two rollups that took the same snapshot still leave exact totals: the
second to write fails with a serialization error and retries. With the lock, the second one is
refused. Events keep arriving meanwhile, as from the proxy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections

from usage import rollup
from usage.locks import Lease, LockBusy
from usage.models import UsageEvent
from usage.rollup import services as rollup_services
from usage.rollup import sql as rollup_sql
from usage.tests.factories import event_fields, expected_aggregates, make_events, stored_aggregates

pytestmark = pytest.mark.django_db(transaction=True)

START = datetime(2026, 3, 1, 22, tzinfo=UTC)


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL (SQLite serializes writers)")


def events(count: int, offset: int = 0) -> list[dict[str, Any]]:
    return [
        event_fields(
            occurred_at=START + timedelta(minutes=7 * n, seconds=n % 60),
            user_id=n % 3,
            provider=("anthropic", "bedrock")[n % 2],
            input_tokens=100 + n,
        )
        for n in range(offset, offset + count)
    ]


class Runner:
    """Runs callables in threads, each with its own database connection."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.results: list[Any] = []
        self.errors: list[BaseException] = []

    def start(self, work: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self.results.append(work())
            except BaseException as exc:  # reported by join()
                self.errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
        assert not self.errors, self.errors


def pause_first_batches(monkeypatch, parties: int) -> threading.Barrier:
    """Make the first ``parties`` batches wait for each other once they have their snapshot."""
    barrier = threading.Barrier(parties, timeout=20)
    original = rollup_sql.create_delta
    waited: set[int] = set()

    def create_delta(dialect: Any, cursor: Any) -> None:
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()
        original(dialect, cursor)

    monkeypatch.setattr(rollup_sql, "create_delta", create_delta)
    return barrier


def test_two_rollups_at_once_without_the_lock_stay_exact(monkeypatch, caplog):
    @contextmanager
    def no_lock(name: str, *, ttl: float) -> Iterator[Lease]:
        yield Lease(name=name, owner="test", ttl=ttl, backend="none")

    monkeypatch.setattr(rollup_services, "maintenance_lock", no_lock)
    monkeypatch.setattr(Lease, "extend", lambda self: None)
    pause_first_batches(monkeypatch, parties=2)
    make_events(events(300))

    runner = Runner()
    with caplog.at_level(logging.INFO, logger="usage.rollup"):
        runner.start(lambda: rollup.usage_rollup(batch_size=1000))
        runner.start(lambda: rollup.usage_rollup(batch_size=1000))
        # The proxy goes on writing, in small transactions, while both run.
        for chunk in range(5):
            runner.start(lambda chunk=chunk: make_events(events(20, offset=300 + 20 * chunk)))
        runner.join()

    counted = sum(r.events for r in runner.results if isinstance(r, rollup.RollupReport))
    assert 300 <= counted <= 400
    assert any("retrying" in record.getMessage() for record in caplog.records)
    rollup.usage_rollup()
    assert stored_aggregates() == expected_aggregates(UsageEvent.objects.all())
    assert UsageEvent.objects.count() == 400


def test_a_second_rollup_is_refused_while_the_first_holds_the_lock(monkeypatch):
    entered, release = threading.Event(), threading.Event()
    original = rollup_sql.create_delta

    def slow_create_delta(dialect: Any, cursor: Any) -> None:
        entered.set()
        assert release.wait(timeout=20)
        original(dialect, cursor)

    monkeypatch.setattr(rollup_sql, "create_delta", slow_create_delta)
    make_events(events(50))
    runner = Runner()
    runner.start(lambda: rollup.usage_rollup())
    assert entered.wait(timeout=20)
    try:
        with pytest.raises(LockBusy):
            rollup.usage_rollup()
    finally:
        release.set()
        runner.join()
    assert runner.results[0].events == 50
    assert stored_aggregates() == expected_aggregates(UsageEvent.objects.all())


def test_rollup_and_prune_run_side_by_side(monkeypatch):
    old = events(40)
    for row in old:
        row["occurred_at"] -= timedelta(days=400)
    make_events(old)
    rollup.usage_rollup()
    pause_first_batches(monkeypatch, parties=1)
    make_events(events(60))
    runner = Runner()
    runner.start(lambda: rollup.usage_rollup(batch_size=7))
    runner.start(lambda: rollup.usage_events_prune(retention_days=200, now=START, batch_size=9))
    runner.join()
    assert UsageEvent.objects.count() == 60
    assert stored_aggregates() == expected_aggregates(
        [UsageEvent(**row) for row in old] + list(UsageEvent.objects.all())
    )
