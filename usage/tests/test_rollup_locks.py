"""The maintenance locks: Redis when configured, a database lease otherwise or when Redis is
away; expiry, extension and loss."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from usage import locks
from usage.locks import LockBusy, LockLost, maintenance_lock
from usage.models import MaintenanceLease

pytestmark = pytest.mark.django_db


@pytest.fixture
def database_only(monkeypatch):
    """Force the database lease, whatever REDIS_URL says."""
    monkeypatch.setattr(locks.shared_redis, "sync_client", lambda: None)


def test_a_held_lock_refuses_a_second_holder_until_released():
    with maintenance_lock("test-lock", ttl=60) as lease:
        assert lease.backend == ("redis" if settings.REDIS_URL else "database")
        with pytest.raises(LockBusy), maintenance_lock("test-lock", ttl=60):
            pass
        with maintenance_lock("other-lock", ttl=60):
            pass
        lease.extend()
    with maintenance_lock("test-lock", ttl=60):
        pass


def test_the_lock_is_released_when_the_block_fails():
    with pytest.raises(RuntimeError), maintenance_lock("test-lock", ttl=60):
        raise RuntimeError("boom")
    with maintenance_lock("test-lock", ttl=60):
        pass


def test_an_expired_database_lease_can_be_taken_and_its_old_holder_learns_it(database_only):
    with maintenance_lock("test-lock", ttl=60) as stale:
        assert stale.backend == "database"
        MaintenanceLease.objects.filter(name="test-lock").update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        with maintenance_lock("test-lock", ttl=60) as fresh:
            with pytest.raises(LockLost):
                stale.extend()
            fresh.extend()
    lease = MaintenanceLease.objects.get(name="test-lock")
    assert (lease.owner, lease.expires_at) == ("", None)


def test_releasing_does_not_free_a_lease_taken_over_by_another_holder(database_only):
    with maintenance_lock("test-lock", ttl=60) as stale:
        MaintenanceLease.objects.filter(name="test-lock").update(
            owner="someone-else", expires_at=timezone.now() + timedelta(minutes=5)
        )
        del stale
    assert MaintenanceLease.objects.get(name="test-lock").owner == "someone-else"
    with pytest.raises(LockBusy), maintenance_lock("test-lock", ttl=60):
        pass


def test_an_unreachable_redis_falls_back_to_the_database(monkeypatch):
    # Nothing listens on port 1; no retries, so the refusal is immediate.
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(locks.shared_redis, "sync_client", lambda: dead)
    with maintenance_lock("test-lock", ttl=60) as lease:
        assert lease.backend == "database"
        assert MaintenanceLease.objects.get(name="test-lock").owner == lease.owner
        with pytest.raises(LockBusy), maintenance_lock("test-lock", ttl=60):
            pass


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_redis_lock_expires_and_extension_after_loss_fails():
    client = locks.shared_redis.sync_client()
    with maintenance_lock("test-lock", ttl=60) as stale:
        key = "gateway:lock:test-lock"
        assert client.get(key) == stale.owner.encode()
        assert 0 < client.pttl(key) <= 60_000
        client.delete(key)  # as if it had expired
        with maintenance_lock("test-lock", ttl=60) as fresh:
            with pytest.raises(LockLost):
                stale.extend()
            fresh.extend()
    assert client.get("gateway:lock:test-lock") is None
