"""Fixtures shared by every app's tests."""

from __future__ import annotations

from collections.abc import Iterator

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
