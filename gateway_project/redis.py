"""Connections to Redis, when REDIS_URL is set: one sync client per process and one asyncio
client per event loop. Callers treat Redis as optional and survive it being down."""

from __future__ import annotations

import asyncio
import threading

import redis
import redis.asyncio as aredis
from django.conf import settings

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
_async_clients: dict[int, tuple[asyncio.AbstractEventLoop, aredis.Redis]] = {}

# Short timeouts: Redis holds shared state for speed; when it is away the gateway goes on with
# its in-process state rather than wait.
_TIMEOUTS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def sync_client() -> redis.Redis | None:
    global _sync_client
    if not settings.REDIS_URL:
        return None
    with _sync_lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(settings.REDIS_URL, **_TIMEOUTS)
        return _sync_client


def async_client() -> aredis.Redis | None:
    """The asyncio client of the running event loop (clients cannot cross loops)."""
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    entry = _async_clients.get(id(loop))
    # The identity check guards against a finished loop's id being reused by a new one.
    if entry is None or entry[0] is not loop:
        entry = (loop, aredis.Redis.from_url(settings.REDIS_URL, **_TIMEOUTS))
        _async_clients.clear()  # one loop per worker process; drop clients of finished loops
        _async_clients[id(loop)] = entry
    return entry[1]
