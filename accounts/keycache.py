"""The proxy's per-process cache of access-key metadata, and its invalidation.

A warm lookup costs one HMAC and a dict access: no database query. Entries live for
GATEWAY_KEY_CACHE_TTL seconds. ``invalidate_key_metadata`` (called by accounts.services on every
change to a key or credential) clears this process's cache and, with Redis configured, bumps a
shared generation counter that every worker checks at most once a second, so a revoke takes
effect everywhere within about a second. Without Redis, other processes see it within the TTL.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError

from accounts.crypto import access_key_prefix, hash_access_key
from gateway_project import redis as shared_redis

logger = logging.getLogger(__name__)

GENERATION_KEY = "gateway:keycache:generation"
_GENERATION_CHECK_INTERVAL = 1.0
_MAX_ENTRIES = 50_000
_NEVER_READ = b"<never read>"


@dataclass(frozen=True, slots=True)
class ResolvedCredential:
    """A provider credential as the proxy uses it; ``error`` is set when it cannot be used."""

    id: int
    provider: str
    scope: str
    region: str
    api_mode: str
    endpoint_url: str
    fallback_model: str
    secret: str = field(repr=False)
    error: str = ""


@dataclass(frozen=True, slots=True)
class KeyMetadata:
    key_id: int
    user_id: int
    prefix: str
    key_hash: str = field(repr=False)
    status: str
    expires_at: datetime | None
    grace_ends_at: datetime | None
    deleted: bool
    credentials: dict[str, ResolvedCredential] = field(default_factory=dict, repr=False)

    def usable_at(self, moment: datetime) -> bool:
        if self.deleted or (self.expires_at is not None and self.expires_at <= moment):
            return False
        if self.status == "active":
            return True
        if self.status == "rotated":
            return self.grace_ends_at is not None and self.grace_ends_at > moment
        return False


class KeyStoreUnavailable(Exception):
    """Neither the cache nor the database can say whether a key is valid."""


class KeyMetadataCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, KeyMetadata | None]] = OrderedDict()
        self._lock = threading.Lock()
        # What Redis held at the last check: bytes, or None while nobody has invalidated yet.
        self._generation: bytes | str | None = _NEVER_READ
        self._generation_checked_at = 0.0
        self._sync_task: asyncio.Task[None] | None = None

    def clear(self) -> None:
        """Make every entry stale: the next lookup of each key asks the database again. The
        entries stay as a fallback for while the database cannot answer (a Redis restart that
        looks like an invalidation must not leave running sessions without their keys)."""
        with self._lock:
            for prefix, (_, metadata) in self._entries.items():
                self._entries[prefix] = (0.0, metadata)

    def reset(self) -> None:
        """Back to a fresh process's state (tests)."""
        with self._lock:
            self._entries.clear()
        self._generation = _NEVER_READ
        self._generation_checked_at = 0.0
        self._sync_task = None

    def adopt_generation(self, generation: bytes) -> None:
        self._generation = generation

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

        Only a process's first check is awaited (nothing cached can predate it); later checks
        run as background tasks, so a request never waits on Redis and a slow or absent Redis
        costs nothing on the hot path.
        """
        if now - self._generation_checked_at < _GENERATION_CHECK_INTERVAL:
            return
        self._generation_checked_at = now
        client = shared_redis.async_client()
        if client is None or self._sync_running():
            return
        if self._generation == _NEVER_READ:
            await self._read_generation(client)
            return
        self._sync_task = asyncio.get_running_loop().create_task(self._read_generation(client))

    def _sync_running(self) -> bool:
        """A check is under way in this event loop (a task of a loop that has ended never
        finishes, and must not block checks forever)."""
        task = self._sync_task
        return (
            task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()
        )

    async def _read_generation(self, client: Any) -> None:
        try:
            generation = await client.get(GENERATION_KEY)
        except Exception as exc:  # Redis away: keep serving from the TTL-bounded cache.
            logger.warning("key cache: cannot read invalidation generation: %s", exc)
            return
        if generation != self._generation:
            self.clear()
            self._generation = generation

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
        from accounts.selectors import key_metadata_load

        answered, metadata = await self.lookup_cached(plaintext)
        if answered:
            return metadata
        prefix = access_key_prefix(plaintext)
        assert prefix is not None  # lookup_cached answers malformed keys itself
        try:
            loaded = await sync_to_async(key_metadata_load)(prefix)
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


def invalidate_key_metadata() -> None:
    """Forget cached key metadata here and, through Redis, in every other process.

    Called after any change to an access key or provider credential. Invalidation clears the
    whole cache: such changes are rare, and a credential change touches many keys at once.
    """
    key_cache.clear()
    client = shared_redis.sync_client()
    if client is None:
        return
    try:
        generation = client.incr(GENERATION_KEY)
    except Exception as exc:
        logger.warning(
            "key cache: could not publish invalidation (other workers catch up within %ss): %s",
            settings.GATEWAY_KEY_CACHE_TTL,
            exc,
        )
        return
    # This process has just cleared everything: it need not clear again on seeing the new value.
    key_cache.adopt_generation(str(generation).encode())
