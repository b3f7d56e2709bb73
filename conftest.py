"""Fixtures shared by every app's tests."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _fresh_routing_rules() -> Iterator[None]:
    """Loaded routing rules live for 30 s in the process: a test's rules must not route the
    next test's requests (transactional tests empty the table, not the loaded copy)."""
    from proxy.rules import routing_rules, turns

    routing_rules.invalidate()
    turns.reset()
    yield
    routing_rules.invalidate()
    turns.reset()


@pytest.fixture(autouse=True)
def _fresh_key_pools() -> Iterator[None]:
    """Cooldowns and disable marks are kept per credential id, in the process and in Redis:
    ids come back in the next test's empty tables, its keys must start rested."""
    from redis.exceptions import RedisError

    from proxy.pools.state import clear_shared, pool_state

    def clear() -> None:
        pool_state.reset()
        # A test may point REDIS_URL at a server that is not there: nothing to clear then.
        with contextlib.suppress(RedisError, OSError):
            clear_shared()

    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def _usage_writer_in_service() -> Iterator[None]:
    """The process's usage writer outlives tests: after a test that made a write fail (it then
    spools everything for a few seconds, without a word) or closed it (it then spools for good),
    the next test's events would silently miss the database. Events an earlier test left in
    the spool (on SQLite's shared in-memory test database a write can meet a table lock) are
    discarded too: replayed during this test, they would count as this test's events."""
    from django.conf import settings

    from usage import recording

    recording.usage_writer_back_in_service()
    for leftover in (Path(settings.GATEWAY_DATA_DIR) / "spool").glob("usage-*"):
        leftover.unlink(missing_ok=True)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Each test's event loop leaves the upstream client it made (one per loop, see
    proxy.http_client) to be collected at exit, when aiohttp reports it unclosed through the
    asyncio logger, whose stream pytest has closed by then: noise after the results, never
    a finding of a test. Quiet that logger for the interpreter's last moments."""
    logging.getLogger("asyncio").disabled = True
