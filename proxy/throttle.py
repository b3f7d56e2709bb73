"""Slowing down key guessing: unusable keys counted per client address.

After GATEWAY_AUTH_FAILURE_LIMIT failures within GATEWAY_AUTH_FAILURE_WINDOW_SECONDS, an address
gets 429 instead of 401 for bad keys, with a retry-after. Keys that work are never affected: the
throttle is consulted only once a key has failed. Counts live in Redis when configured (shared by
all workers; fixed windows via INCR + EXPIRE), else in process.

The address is ``client_address`` (gateway_project.access): behind reverse proxies, the entry the
trusted proxies appended, so that rotating the forwarded header does not reset the count.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from django.conf import settings

from gateway_project import redis as shared_redis
from gateway_project.access import client_address

__all__ = ("AuthFailureThrottle", "auth_throttle", "client_address")

logger = logging.getLogger(__name__)

_REDIS_PREFIX = "gateway:authfail:"
_MAX_ADDRESSES = 100_000


class AuthFailureThrottle:
    def __init__(self) -> None:
        # address -> (window start, failures in that window)
        self._local: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _window(self) -> float:
        return float(settings.GATEWAY_AUTH_FAILURE_WINDOW_SECONDS)

    def _local_count(self, address: str, now: float) -> int:
        entry = self._local.get(address)
        if entry is None or now - entry[0] >= self._window():
            return 0
        return entry[1]

    async def blocked(self, address: str) -> bool:
        limit = settings.GATEWAY_AUTH_FAILURE_LIMIT
        client = shared_redis.async_client()
        if client is not None:
            try:
                count = await client.get(_REDIS_PREFIX + address)
                return count is not None and int(count) >= limit
            except Exception as exc:
                logger.warning("auth throttle: Redis unavailable, counting locally: %s", exc)
        return self._local_count(address, time.monotonic()) >= limit

    async def record_failure(self, address: str) -> None:
        now = time.monotonic()
        count = self._local_count(address, now)
        start = now if count == 0 else self._local[address][0]
        self._local[address] = (start, count + 1)
        self._local.move_to_end(address)
        while len(self._local) > _MAX_ADDRESSES:
            self._local.popitem(last=False)
        client = shared_redis.async_client()
        if client is None:
            return
        try:
            key = _REDIS_PREFIX + address
            async with client.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, int(self._window()), nx=True)
                await pipe.execute()
        except Exception as exc:
            logger.warning("auth throttle: cannot share failure count: %s", exc)

    def reset(self) -> None:
        """Forget all counts, here and in Redis (tests; an operator unblocking addresses)."""
        self._local.clear()
        client = shared_redis.sync_client()
        if client is None:
            return
        keys = list(client.scan_iter(match=_REDIS_PREFIX + "*", count=500))
        if keys:
            client.delete(*keys)


auth_throttle = AuthFailureThrottle()
