"""The proxy's per-process cache of access-key metadata, and its invalidation.

A warm lookup costs one HMAC and a dict access: no database query. Entries live for
GATEWAY_KEY_CACHE_TTL seconds. ``invalidate_key_metadata`` (called by accounts.services, after
the commit, on every change that affects whether a key works or what it may use: the key, its
user, its credentials) clears this process's cache and bumps a shared generation counter: a row
in the database always, and a Redis key when Redis is configured. Every process compares both
with what it saw last, at most once a second in a background task, so a change made anywhere (a
command, another worker, the admin) takes effect everywhere within about a second, with or
without Redis.

Database reads run on a small thread pool of their own, not on the event loop's single
thread-sensitive thread: a hanging database must not queue every cold lookup behind one another.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from accounts import selectors
from accounts.crypto import access_key_prefix, hash_access_key
from accounts.metadata import KeyMetadata, ResolvedCredential
from accounts.models import KeyCacheGeneration
from gateway_project import redis as shared_redis

__all__ = [
    "GENERATION_KEY",
    "KeyMetadata",
    "KeyMetadataCache",
    "KeyStoreUnavailable",
    "ResolvedCredential",
    "invalidate_key_metadata",
    "key_cache",
]

logger = logging.getLogger(__name__)

GENERATION_KEY = "gateway:keycache:generation"
_GENERATION_CHECK_INTERVAL = 1.0
# A change to a key reaches every process within this bound: past it since the last check (a
# process that served nothing for a while), a request waits for the check instead of being
# answered from what the cache held before.
_GENERATION_STALE_AFTER = 2.0
_STALE_CHECK_WAIT = 1.0
_MAX_ENTRIES = 50_000
_NEVER_READ = b"<never read>"
# Cold lookups that may wait on the database at the same time, per process. Each holds a
# connection (from the pool on PostgreSQL) only while it runs.
_DATABASE_THREADS = 8

_database_executor = ThreadPoolExecutor(
    max_workers=_DATABASE_THREADS, thread_name_prefix="keycache-db"
)

T = TypeVar("T")


def _closing_connection(func: Callable[..., T]) -> Callable[..., T]:
    """``func``, then this thread's connection closed: connections belong to threads, and a pool
    thread may sit idle for long (on PostgreSQL the connection goes back to Django's pool)."""

    def run(*args: Any) -> T:
        try:
            return func(*args)
        finally:
            connection.close()

    return run


async def _in_database_thread(func: Callable[..., T], *args: Any) -> T:
    """Run a database read off the event loop, side by side with the others."""
    return await sync_to_async(
        _closing_connection(func), thread_sensitive=False, executor=_database_executor
    )(*args)


def _load_key_metadata(prefix: str) -> KeyMetadata | None:
    # Looked up at call time: tests stand in for the selector to simulate the database away.
    return selectors.key_metadata_load(prefix)


class KeyStoreUnavailable(Exception):
    """Neither the cache nor the database can say whether a key is valid."""


class KeyMetadataCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, KeyMetadata | None]] = OrderedDict()
        self._lock = threading.Lock()
        # What Redis and the database held at the last check: _NEVER_READ until read once.
        # Redis holds bytes, or None while nobody has invalidated since it started.
        self._generation: bytes | str | None = _NEVER_READ
        self._database_generation: int | bytes = _NEVER_READ
        self._generation_checked_at: float | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_awaited = False  # requests wait for the check under way
        self._database_check_failing = False
        self._clear_listeners: list[Callable[[], None]] = []

    def on_clear(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the cache is cleared, here or by another process's
        invalidation: how other per-process tables (routing rules) ride the same generation
        counter and take effect everywhere within about a second."""
        if listener not in self._clear_listeners:
            self._clear_listeners.append(listener)

    def clear(self) -> None:
        """Make every entry stale: the next lookup of each key asks the database again. The
        entries stay as a fallback for while the database cannot answer (a Redis restart that
        looks like an invalidation must not leave running sessions without their keys)."""
        with self._lock:
            for prefix, (_, metadata) in self._entries.items():
                self._entries[prefix] = (0.0, metadata)
        for listener in self._clear_listeners:
            listener()

    def reset(self) -> None:
        """Back to a fresh process's state (tests)."""
        with self._lock:
            self._entries.clear()
        self._generation = _NEVER_READ
        self._database_generation = _NEVER_READ
        self._generation_checked_at = None
        self._sync_task = None
        self._sync_awaited = False
        self._database_check_failing = False

    def adopt_generation(self, generation: bytes) -> None:
        self._generation = generation

    def adopt_database_generation(self, generation: int) -> None:
        """This process has just bumped the counter from ``generation - 1`` itself (and cleared):
        no need to clear again on seeing it. A jump of more than one is another process's
        change, which the next check acts on."""
        if self._database_generation == generation - 1:
            self._database_generation = generation

    def _get(self, prefix: str, now: float) -> tuple[bool, KeyMetadata | None]:
        with self._lock:
            entry = self._entries.get(prefix)
            if entry is None or entry[0] <= now:
                return False, None
            return True, entry[1]

    def _stale(self, prefix: str) -> tuple[float, KeyMetadata | None] | None:
        with self._lock:
            return self._entries.get(prefix)

    def _put(self, prefix: str, metadata: KeyMetadata | None, now: float) -> None:
        with self._lock:
            self._entries[prefix] = (now + settings.GATEWAY_KEY_CACHE_TTL, metadata)
            self._entries.move_to_end(prefix)
            while len(self._entries) > _MAX_ENTRIES:
                self._entries.popitem(last=False)

    async def _sync_generation(self, now: float) -> None:
        """Drop everything when another process has invalidated (checked once a second).

        Under traffic the checks run as background tasks, a second apart, so a request never
        waits on Redis or the database for them (nor behind their work: they start
        shared_redis.BACKGROUND_READ_DELAY after the request that sets them off). A check is
        awaited when the last one started more than _GENERATION_STALE_AFTER ago (the process's
        first request, or the first after a quiet spell: what the cache holds may predate any
        number of changes), by that request and by every request that arrives while it runs,
        for at most _STALE_CHECK_WAIT: with Redis or the database hanging, requests go on from
        the cache as they do under traffic.
        """
        if self._sync_awaited and self._sync_running():
            await self._wait_for_sync()
            return
        last = self._generation_checked_at
        if last is not None and now - last < _GENERATION_CHECK_INTERVAL:
            return
        self._generation_checked_at = now
        if self._sync_running():
            return  # a check that started a second ago is still running: it is slow, go on
        self._sync_awaited = last is None or now - last >= _GENERATION_STALE_AFTER
        delay = 0.0 if self._sync_awaited else shared_redis.BACKGROUND_READ_DELAY
        self._sync_task = asyncio.get_running_loop().create_task(self._read_generation(delay))
        if self._sync_awaited:
            await self._wait_for_sync()

    async def _wait_for_sync(self) -> None:
        task = self._sync_task
        assert task is not None  # noqa: S101 - only called while a check runs
        try:
            # Shielded: a request cancelled or timed out while it waits does not cancel the
            # check that others wait on.
            await asyncio.wait_for(asyncio.shield(task), _STALE_CHECK_WAIT)
        except TimeoutError:
            self._sync_awaited = False

    def _sync_running(self) -> bool:
        """A check is under way in this event loop (a task of a loop that has ended never
        finishes, and must not block checks forever)."""
        task = self._sync_task
        return (
            task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()
        )

    async def _read_generation(self, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        redis_generation = self._generation
        client = shared_redis.async_client()
        if client is not None:
            try:
                redis_generation = await client.get(GENERATION_KEY)
            except Exception as exc:  # Redis away: the database's counter still works.
                logger.warning("key cache: cannot read invalidation generation: %s", exc)
        database_generation = self._database_generation
        try:
            database_generation = await _in_database_thread(selectors.key_cache_generation)
        except Exception as exc:  # The database away: keep serving from the cache.
            if not self._database_check_failing:
                logger.warning("key cache: cannot read the database's generation: %s", exc)
            self._database_check_failing = True
        else:
            self._database_check_failing = False
        if redis_generation != self._generation or database_generation != self._database_generation:
            self.clear()
            self._generation = redis_generation
            self._database_generation = database_generation

    async def wait_synced(self) -> None:
        """Wait for a background invalidation check (tests use it to be deterministic)."""
        if self._sync_running():
            assert self._sync_task is not None
            await asyncio.gather(self._sync_task, return_exceptions=True)

    def _verify(self, metadata: KeyMetadata | None, plaintext: str) -> KeyMetadata | None:
        from django.utils import timezone

        if metadata is None:
            return None
        if not hmac.compare_digest(metadata.key_hash, hash_access_key(plaintext)):
            return None
        if not metadata.usable_at(timezone.now()):
            return None
        return metadata

    async def lookup_cached(self, plaintext: str) -> tuple[bool, KeyMetadata | None]:
        """(answered, metadata) from the cache alone: ``answered`` is False when only the
        database can tell."""
        prefix = access_key_prefix(plaintext)
        if prefix is None:
            return True, None
        now = time.monotonic()
        await self._sync_generation(now)
        found, metadata = self._get(prefix, now)
        if not found:
            return False, None
        return True, self._verify(metadata, plaintext)

    async def lookup(self, plaintext: str) -> KeyMetadata | None:
        """The metadata of a usable key, or None for an unknown or unusable one."""
        answered, metadata = await self.lookup_cached(plaintext)
        if answered:
            return metadata
        prefix = access_key_prefix(plaintext)
        assert prefix is not None  # lookup_cached answers malformed keys itself
        try:
            loaded = await _in_database_thread(_load_key_metadata, prefix)
        except DatabaseError as exc:
            # The database is away: a key known before keeps working on its last known state
            # (kept for another TTL) rather than failing every request of a running session.
            stale = self._stale(prefix)
            if stale is None:
                raise KeyStoreUnavailable(str(exc)) from exc
            logger.warning("key cache: database unavailable, serving %s from stale entry", prefix)
            loaded = stale[1]
        self._put(prefix, loaded, time.monotonic())
        return self._verify(loaded, plaintext)


key_cache = KeyMetadataCache()


def _bump_database_generation() -> int:
    """Add one to the database's counter; returns the new value."""
    with transaction.atomic():
        updated = KeyCacheGeneration.objects.filter(pk=1).update(value=F("value") + 1)
        if not updated:
            KeyCacheGeneration.objects.get_or_create(pk=1)
            KeyCacheGeneration.objects.filter(pk=1).update(value=F("value") + 1)
        # Read under the row lock the update took: the value is this bump's, nobody else's.
        return selectors.key_cache_generation()


def invalidate_key_metadata() -> None:
    """Forget cached key metadata here and, through the database and Redis, in every other
    process.

    Called after any change to an access key, its user or a provider credential (accounts.services
    registers it with ``transaction.on_commit``). Invalidation clears the whole cache: such
    changes are rare, and a credential change touches many keys at once.
    """
    key_cache.clear()
    try:
        key_cache.adopt_database_generation(_bump_database_generation())
    except Exception as exc:  # runs after a commit: the change is made, whatever happens here
        logger.warning("key cache: could not bump the database's generation: %s", exc)
    client = shared_redis.sync_client()
    if client is None:
        return
    try:
        generation = client.incr(GENERATION_KEY)
    except Exception as exc:
        logger.warning("key cache: could not publish invalidation through Redis: %s", exc)
        return
    # This process has just cleared everything: it need not clear again on seeing the new value.
    key_cache.adopt_generation(str(generation).encode())
