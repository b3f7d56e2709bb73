"""Connections to Redis, when REDIS_URL is set: one sync client per process and one asyncio
client per event loop. Callers treat Redis as optional and survive it being down."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import redis
import redis.asyncio as aredis
from django.conf import settings

# Short timeouts: Redis holds shared state for speed; when it is away the gateway goes on with
# its in-process state rather than wait.
_TIMEOUT_SECONDS = 0.5

# Background reads of shared state that a request sets off (the key cache's invalidation
# generation, a circuit's shared state: each at most once a second) start this long after it,
# so the request's own first byte does not wait behind their round trips and CPU
# (bench/README.md, "A stream's first byte at concurrency 1").
BACKGROUND_READ_DELAY = 0.02


def _options() -> dict[str, Any]:
    # No retries either: redis-py's default retries with backoff turn one unreachable Redis
    # into seconds of waiting per call.
    return {
        "socket_connect_timeout": _TIMEOUT_SECONDS,
        "socket_timeout": _TIMEOUT_SECONDS,
        "retry": None,
    }


_sync_clients: dict[str, redis.Redis] = {}
_sync_lock = threading.Lock()
# (url, loop) → client; the identity check guards against a finished loop's id being reused.
_async_clients: dict[int, tuple[str, asyncio.AbstractEventLoop, aredis.Redis]] = {}


def sync_client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    with _sync_lock:
        client = _sync_clients.get(url)
        if client is None:
            client = _sync_clients[url] = redis.Redis.from_url(url, **_options())
        return client


def async_client() -> aredis.Redis | None:
    """The asyncio client of the running event loop (clients cannot cross loops)."""
    url = settings.REDIS_URL
    if not url:
        return None
    loop = asyncio.get_running_loop()
    entry = _async_clients.get(id(loop))
    if entry is None or entry[0] != url or entry[1] is not loop:
        entry = (
            url,
            loop,
            aredis.Redis.from_url(url, **_options()),
        )
        _async_clients.clear()  # one loop per worker process; drop clients of finished loops
        _async_clients[id(loop)] = entry
    return entry[2]
