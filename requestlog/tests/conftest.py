"""Fixtures of the request log tests: the proxy's gateway server and keys, secrets to plant."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import pytest
from django.db import connection

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
from requestlog import levels


@pytest.fixture(autouse=True)
def _no_level_policies() -> Iterator[None]:
    """Every test starts from the installation's level, whatever another test set."""
    levels._by_key, levels._by_user = {}, {}
    yield
    levels._by_key, levels._by_user = {}, {}


def database_text() -> str:
    """Every value of every table of the request log and usage apps as text, compressed
    columns decompressed: what a dump of the database would reveal."""
    pieces: list[str] = []
    tables = [
        name
        for name in connection.introspection.table_names()
        if name.startswith(("requestlog_", "usage_usageevent"))
    ]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (table names from the schema)
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        raw = bytes(value)
                        with contextlib.suppress(zlib.error):
                            raw = zlib.decompress(raw)
                        pieces.append(raw.decode("utf-8", "replace"))
                    else:
                        pieces.append(str(value))
    return "\n".join(pieces)
