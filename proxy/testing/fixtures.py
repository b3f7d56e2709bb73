"""Pytest fixtures around the fake upstream, for app conftests to import.

    # <app>/tests/conftest.py
    from proxy.testing.fixtures import fake_upstream, fake_upstream_server  # noqa: F401

The fixtures carry explicit names, so they register under those names however they are imported.
`fake_upstream_server` starts one server for the whole session; `fake_upstream` hands it to a test
with scripts, faults and history reset before and after, so tests do not pay for a server start
each. `fake_upstream_settings` also points the gateway's upstream URLs at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from proxy.testing.fake_upstream import FakeUpstream


@pytest.fixture(scope="session", name="fake_upstream_server")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(name="fake_upstream")
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()


@pytest.fixture(name="fake_upstream_settings")
def fake_upstream_settings(fake_upstream: FakeUpstream, settings: Any) -> FakeUpstream:
    """`fake_upstream`, with GATEWAY_ANTHROPIC_BASE_URL and GATEWAY_BEDROCK_ENDPOINT_URL on it."""
    settings.GATEWAY_ANTHROPIC_BASE_URL = fake_upstream.base_url
    settings.GATEWAY_BEDROCK_ENDPOINT_URL = fake_upstream.base_url
    return fake_upstream
