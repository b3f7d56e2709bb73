"""Fixtures of the governance tests: a clean slate of counters and cached policies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from governance.counters import counters
from governance.enforcement import reset_caches
from proxy.testing.fixtures import (  # noqa: F401 (fixtures)
    fake_upstream,
    fake_upstream_server,
    fake_upstream_settings,
)
from proxy.tests.conftest import (  # noqa: F401 (fixtures)
    _fresh_proxy_state,
    gateway_server,
    key_holder,
    recorded_events,
)


@pytest.fixture(autouse=True)
def _fresh_governance_state() -> Iterator[None]:
    counters.reset()
    reset_caches()
    yield
    counters.reset()
    reset_caches()
