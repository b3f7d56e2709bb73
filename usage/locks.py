"""Named locks that keep the usage maintenance jobs (rollup, rebuild, prune) from overlapping.

With REDIS_URL set the lock is a Redis key written with NX and a TTL; only its owner (a random
token) may extend or delete it, checked atomically in a Lua script. Without Redis, or when Redis
does not answer, it is a lease row (usage.models.MaintenanceLease) claimed with a conditional
UPDATE. Either way a lock whose holder died expires after its TTL, and long jobs extend it as
they go.

Totals do not depend on the lock (usage.rollup stays exact under concurrent runs); the lock
saves duplicate work and keeps a rebuild or a prune from interleaving with other jobs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.db import IntegrityError
from django.db.models import Q
from django.utils import timezone

from gateway_project import redis as shared_redis
from usage.models import MaintenanceLease

logger = logging.getLogger(__name__)

_REDIS_PREFIX = "gateway:lock:"
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_EXTEND = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)


class LockBusy(Exception):
    """Another holder has the lock."""


class LockLost(Exception):
    """The lock expired and was taken by someone else while its holder was still working."""


@dataclass
class Lease:
    name: str
    owner: str
    ttl: float
    backend: str  # "redis" or "database"

    def extend(self) -> None:
        """Push the expiry ``ttl`` seconds into the future; raises LockLost if it was lost."""
        if self.backend == "redis":
            client = shared_redis.sync_client()
            try:
                kept = client is not None and client.eval(
                    _EXTEND, 1, _REDIS_PREFIX + self.name, self.owner, int(self.ttl * 1000)
                )
            except redis.RedisError as exc:
                # Redis away: the key keeps its TTL; the job goes on, its transactions keep
                # the totals exact even if another holder appears.
                logger.warning("lock %s: cannot extend in Redis: %s", self.name, exc)
                return
        else:
            kept = MaintenanceLease.objects.filter(name=self.name, owner=self.owner).update(
                expires_at=timezone.now() + timedelta(seconds=self.ttl)
            )
        if not kept:
            raise LockLost(f"lock {self.name} expired and was taken over")


def _acquire_redis(name: str, owner: str, ttl: float) -> bool | None:
    """True or False when Redis answered, None when it is not configured or away."""
    client = shared_redis.sync_client()
    if client is None:
        return None
    try:
        return bool(client.set(_REDIS_PREFIX + name, owner, nx=True, px=int(ttl * 1000)))
    except redis.RedisError as exc:
        logger.warning("lock %s: Redis unavailable, using the database lease: %s", name, exc)
        return None


def _release_redis(name: str, owner: str) -> None:
    client = shared_redis.sync_client()
    if client is None:
        return
    try:
        client.eval(_RELEASE, 1, _REDIS_PREFIX + name, owner)
    except redis.RedisError as exc:  # the key expires on its own
        logger.warning("lock %s: cannot release in Redis: %s", name, exc)


def _acquire_database(name: str, owner: str, ttl: float) -> bool:
    with suppress(IntegrityError):  # created concurrently: it exists now
        MaintenanceLease.objects.get_or_create(name=name)
    now = timezone.now()
    claimed = (
        MaintenanceLease.objects.filter(name=name)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lte=now))
        .update(owner=owner, expires_at=now + timedelta(seconds=ttl))
    )
    return claimed == 1


def _release_database(name: str, owner: str) -> None:
    MaintenanceLease.objects.filter(name=name, owner=owner).update(owner="", expires_at=None)


@contextmanager
def maintenance_lock(name: str, *, ttl: float) -> Iterator[Lease]:
    """Hold the lock ``name`` for the block; raises LockBusy at once if someone else holds it."""
    owner = secrets.token_hex(16)
    acquired = _acquire_redis(name, owner, ttl)
    backend = "redis"
    if acquired is None:
        backend = "database"
        acquired = _acquire_database(name, owner, ttl)
    if not acquired:
        raise LockBusy(f"lock {name} is held by another job")
    try:
        yield Lease(name=name, owner=owner, ttl=ttl, backend=backend)
    finally:
        if backend == "redis":
            _release_redis(name, owner)
        else:
            _release_database(name, owner)
