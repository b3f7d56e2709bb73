"""accounts.keycache: warm lookups make no query; invalidation, locally, through the database and
through Redis; users deactivated or deleted anywhere; Redis or the database away does not stop
lookups; database reads side by side on the cache's own threads.

Lookups run through ``async_to_sync`` from the test's thread, so the cache's database loads run on
that thread's connection, inside the test transaction, where query counting sees them. Time is a
fake monotonic clock: the tests say "a second later" without waiting for one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import keycache, selectors
from accounts.keycache import KeyMetadata, KeyMetadataCache, invalidate_key_metadata, key_cache
from accounts.models import AccessKey, KeyCacheGeneration, ProviderCredential, User
from accounts.selectors import key_cache_generation, key_metadata_load
from accounts.services import (
    access_key_revoke,
    access_key_rotate,
    provider_credential_delete,
    provider_credential_set,
    user_set_active,
)

pytestmark = pytest.mark.django_db

MakeKey = Callable[..., tuple[AccessKey, str]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    # Only the cache's view of time: the event loops keep the real clock.
    monkeypatch.setattr(keycache, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def lookup(cache: KeyMetadataCache, plaintext: str) -> KeyMetadata | None:
    return async_to_sync(cache.lookup)(plaintext)


def counted_lookup(cache: KeyMetadataCache, plaintext: str) -> tuple[int, KeyMetadata | None]:
    """A lookup and its queries, not counting the reads of the invalidation generation (which
    run in the background once a second, and may or may not fall within the lookup)."""
    with CaptureQueriesContext(connection) as queries:
        result = lookup(cache, plaintext)
    loads = [query for query in queries if "keycachegeneration" not in query["sql"]]
    return len(loads), result


def test_cold_lookup_loads_and_warm_lookup_makes_no_query(
    make_key: MakeKey, django_assert_num_queries: Any
) -> None:
    key, plaintext = make_key()
    cache = KeyMetadataCache()
    count, metadata = counted_lookup(cache, plaintext)
    assert count > 0  # the load is visible to the counter, so the zero below means something
    assert metadata is not None
    assert (metadata.key_id, metadata.user_id, metadata.prefix) == (key.pk, key.user_id, key.prefix)

    with django_assert_num_queries(0):
        assert lookup(cache, plaintext) == metadata


def test_unknown_and_wrong_keys_are_refused_and_cached(
    make_key: MakeKey, django_assert_num_queries: Any
) -> None:
    key, plaintext = make_key()
    cache = KeyMetadataCache()
    unknown = "gw_zzzzzzzz_" + "x" * 43
    wrong_secret = key.prefix + "_" + "y" * 43
    assert counted_lookup(cache, unknown) == (1, None)
    assert lookup(cache, plaintext) is not None
    with django_assert_num_queries(0):
        assert lookup(cache, unknown) is None
        assert lookup(cache, wrong_secret) is None
        assert lookup(cache, "not-a-key") is None
        assert lookup(cache, "") is None


def test_entries_live_for_the_configured_ttl(
    settings: Any, clock: FakeClock, make_key: MakeKey
) -> None:
    settings.GATEWAY_KEY_CACHE_TTL = 30
    _key, plaintext = make_key()
    cache = KeyMetadataCache()
    assert counted_lookup(cache, plaintext)[0] > 0
    clock.now += 29.9
    assert counted_lookup(cache, plaintext)[0] == 0
    clock.now += 0.2
    assert counted_lookup(cache, plaintext)[0] > 0


def test_invalidation_clears_the_cache(make_key: MakeKey, django_assert_num_queries: Any) -> None:
    _key, plaintext = make_key()
    assert lookup(key_cache, plaintext) is not None
    with django_assert_num_queries(0):
        lookup(key_cache, plaintext)
    invalidate_key_metadata()
    assert counted_lookup(key_cache, plaintext)[0] > 0


def test_revoke_takes_effect_on_the_next_lookup(
    make_key: MakeKey, django_capture_on_commit_callbacks: Any
) -> None:
    key, plaintext = make_key()
    assert lookup(key_cache, plaintext) is not None
    with django_capture_on_commit_callbacks(execute=True):
        access_key_revoke(access_key=key)
    assert lookup(key_cache, plaintext) is None


def test_rotation_keeps_the_old_key_in_grace_and_adds_the_new_one(
    make_key: MakeKey, django_capture_on_commit_callbacks: Any
) -> None:
    old, old_plaintext = make_key()
    assert lookup(key_cache, old_plaintext) is not None
    with django_capture_on_commit_callbacks(execute=True):
        new, new_plaintext = access_key_rotate(access_key=old, grace=timedelta(hours=1))
    old_metadata = lookup(key_cache, old_plaintext)
    assert old_metadata is not None
    assert old_metadata.status == "rotated"
    new_metadata = lookup(key_cache, new_plaintext)
    assert new_metadata is not None
    assert new_metadata.key_id == new.pk
    with django_capture_on_commit_callbacks(execute=True):
        new2, _ = access_key_rotate(access_key=new, grace=timedelta(0))
    assert lookup(key_cache, new_plaintext) is None  # no grace: stopped at once
    assert new2.pk != new.pk


def test_metadata_is_usable_within_status_expiry_and_grace() -> None:
    now = timezone.now()
    hour = timedelta(hours=1)

    def metadata(**changes: Any) -> KeyMetadata:
        fields: dict[str, Any] = {
            "key_id": 1,
            "user_id": 1,
            "prefix": "gw_x",
            "key_hash": "0" * 64,
            "status": "active",
            "expires_at": None,
            "grace_ends_at": None,
            "deleted": False,
        }
        fields.update(changes)
        return KeyMetadata(**fields)

    assert metadata().usable_at(now)
    assert not metadata(deleted=True).usable_at(now)
    assert not metadata(status="revoked").usable_at(now)
    assert not metadata(expires_at=now).usable_at(now)
    assert metadata(status="rotated", grace_ends_at=now + hour).usable_at(now)
    assert not metadata(status="rotated", grace_ends_at=now).usable_at(now)
    assert not metadata(status="rotated").usable_at(now)


def test_an_expired_key_is_refused(make_key: MakeKey) -> None:
    key, plaintext = make_key(expires_at=timezone.now() + timedelta(hours=1))
    AccessKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lookup(key_cache, plaintext) is None


def test_a_deactivated_users_keys_are_refused(make_key: MakeKey, user: User) -> None:
    _key, plaintext = make_key(user=user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert lookup(key_cache, plaintext) is None


def test_credential_changes_reach_cached_metadata(
    make_key: MakeKey, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    key, plaintext = make_key(user=user)
    metadata = lookup(key_cache, plaintext)
    assert metadata is not None
    assert metadata.credentials == {}
    with django_capture_on_commit_callbacks(execute=True):
        credential, _ = provider_credential_set(
            provider="bedrock", secret="user-secret-000001", user=user, region="us-west-2"
        )
    metadata = lookup(key_cache, plaintext)
    assert metadata is not None
    assert metadata.credentials["bedrock"].secret == "user-secret-000001"
    with django_capture_on_commit_callbacks(execute=True):
        provider_credential_delete(credential=credential)
    metadata = lookup(key_cache, plaintext)
    assert metadata is not None
    assert metadata.credentials == {}


def test_an_undecryptable_credential_does_not_break_the_lookup(
    settings: Any, fernet_keys: list[str], make_key: MakeKey, user: User
) -> None:
    _key, plaintext = make_key(user=user)
    provider_credential_set(provider="bedrock", secret="lost-secret-000001", user=user)
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    metadata = lookup(key_cache, plaintext)
    assert metadata is not None
    credential = metadata.credentials["bedrock"]
    pk = ProviderCredential.objects.get().pk
    assert credential.secret == ""
    assert f"provider credential #{pk} (AWS Bedrock (user alice@example.com))" in credential.error


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")
def test_an_invalidation_reaches_another_process_within_a_second(
    clock: FakeClock,
    make_key: MakeKey,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    key, plaintext = make_key()
    # The cache of another worker process: only Redis can tell it about the revocation.
    other = KeyMetadataCache()
    assert lookup(other, plaintext) is not None
    clock.now += 1.0
    with django_assert_num_queries(0):  # nothing published: the entry stays
        assert lookup(other, plaintext) is not None

    with django_capture_on_commit_callbacks(execute=True):
        access_key_revoke(access_key=key)
    clock.now += 1.0

    async def lookup_after_check() -> KeyMetadata | None:
        # The check runs in the background, so no request waits on Redis: the request that
        # starts it may still be served from the cache, the ones after it are not.
        await other.lookup_cached(plaintext)
        await other.wait_synced()
        return await other.lookup(plaintext)

    assert async_to_sync(lookup_after_check)() is None


def test_lookups_keep_working_when_redis_is_down(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    make_key: MakeKey,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/6"  # nothing listens there
    key, plaintext = make_key()

    assert lookup(key_cache, plaintext) is not None
    clock.now += 5  # time for another generation check, which fails

    async def lookup_and_check() -> KeyMetadata | None:
        found = await key_cache.lookup(plaintext)
        await key_cache.wait_synced()
        return found

    assert async_to_sync(lookup_and_check)() is not None
    assert "cannot read invalidation generation" in caplog.text

    with django_capture_on_commit_callbacks(execute=True):
        access_key_revoke(access_key=key)  # publishing fails; this process still forgets
    assert "could not publish invalidation" in caplog.text
    assert lookup(key_cache, plaintext) is None


# --- Invalidation through the database, users, the cache's database threads --------------------


def test_an_invalidation_reaches_another_process_through_the_database_without_redis(
    settings: Any,
    clock: FakeClock,
    make_key: MakeKey,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.REDIS_URL = None
    key, plaintext = make_key()
    other = KeyMetadataCache()  # another worker's cache: only the database can tell it
    assert lookup(other, plaintext) is not None
    clock.now += 1.0

    async def lookup_after_check() -> KeyMetadata | None:
        await other.lookup_cached(plaintext)
        await other.wait_synced()
        return await other.lookup(plaintext)

    with django_assert_num_queries(1):  # the generation, unchanged: the entry stays
        assert async_to_sync(lookup_after_check)() is not None

    with django_capture_on_commit_callbacks(execute=True):
        access_key_revoke(access_key=key)
    clock.now += 1.0
    assert async_to_sync(lookup_after_check)() is None


def test_each_invalidation_bumps_the_database_generation(
    settings: Any, clock: FakeClock, make_key: MakeKey, django_assert_num_queries: Any
) -> None:
    settings.REDIS_URL = None
    KeyCacheGeneration.objects.all().delete()  # a missing row is created again
    assert key_cache_generation() == 0
    invalidate_key_metadata()
    invalidate_key_metadata()
    assert key_cache_generation() == 2

    # The process that bumped has cleared already: seeing its own bump clears nothing more.
    _key, plaintext = make_key()
    assert lookup(key_cache, plaintext) is not None  # reads the generation (2), then loads
    invalidate_key_metadata()
    assert lookup(key_cache, plaintext) is not None  # reloaded after the clear
    clock.now += 1.0

    async def check_then_lookup() -> KeyMetadata | None:
        await key_cache.lookup_cached(plaintext)
        await key_cache.wait_synced()
        return await key_cache.lookup(plaintext)

    with django_assert_num_queries(1):  # the generation read; the entry stays fresh
        assert async_to_sync(check_then_lookup)() is not None


def test_a_generation_check_that_fails_keeps_the_cache(
    settings: Any,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_key: MakeKey,
) -> None:
    settings.REDIS_URL = None
    _key, plaintext = make_key()
    assert lookup(key_cache, plaintext) is not None

    def database_down() -> int:
        raise OperationalError("connection refused (simulated)")

    monkeypatch.setattr(selectors, "key_cache_generation", database_down)
    monkeypatch.setattr(selectors, "key_metadata_load", database_down)
    for _ in range(3):
        clock.now += 1.0

        async def lookup_and_check() -> KeyMetadata | None:
            found = await key_cache.lookup(plaintext)
            await key_cache.wait_synced()
            return found

        assert async_to_sync(lookup_and_check)() is not None
    assert caplog.text.count("cannot read the database's generation") == 1  # once per outage


def test_a_check_under_traffic_starts_after_the_request_that_sets_it_off(
    settings: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, make_key: MakeKey
) -> None:
    """Within a second or two of the last check, the next one runs in the background and
    starts BACKGROUND_READ_DELAY after the request that set it off, which is answered first."""
    from gateway_project import redis as shared_redis

    settings.REDIS_URL = None
    _key, plaintext = make_key()
    assert lookup(key_cache, plaintext) is not None
    reads: list[int] = []
    read = selectors.key_cache_generation

    def counted_read() -> int:
        reads.append(1)
        return read()

    monkeypatch.setattr(selectors, "key_cache_generation", counted_read)
    # Long enough that a loaded machine cannot reach it between the two looks below.
    monkeypatch.setattr(shared_redis, "BACKGROUND_READ_DELAY", 0.5)
    clock.now += 1.5

    async def request_then_wait() -> tuple[int, int]:
        assert await key_cache.lookup(plaintext) is not None
        await asyncio.sleep(0.1)  # time enough for an undelayed read on its thread
        soon_after = len(reads)
        await key_cache.wait_synced()
        return soon_after, len(reads)

    assert async_to_sync(request_then_wait)() == (0, 1)


@pytest.mark.parametrize("redis", [False, True], ids=["database", "redis"])
def test_after_a_quiet_spell_the_next_request_waits_for_the_check(
    redis: bool,
    settings: Any,
    clock: FakeClock,
    make_key: MakeKey,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A process that served nothing for a while holds a cache a change may have outdated:
    its next request waits for the generation check (within a second of the last check, the
    check runs in the background: see the tests above)."""
    if redis and not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    if not redis:
        settings.REDIS_URL = None
    key, plaintext = make_key()
    other = KeyMetadataCache()  # another worker's cache
    assert lookup(other, plaintext) is not None
    clock.now += 3.0  # a quiet spell: longer than the checks allow, shorter than the TTL
    with django_capture_on_commit_callbacks(execute=True):
        access_key_revoke(access_key=key)
    assert lookup(other, plaintext) is None  # one request, no wait_synced


def test_a_check_that_hangs_holds_requests_after_a_quiet_spell_only_briefly(
    settings: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, make_key: MakeKey
) -> None:
    settings.REDIS_URL = None
    _key, plaintext = make_key()
    assert lookup(key_cache, plaintext) is not None
    hanging = asyncio.Event()

    async def never_answers(delay: float = 0.0) -> None:
        await hanging.wait()

    monkeypatch.setattr(keycache, "_STALE_CHECK_WAIT", 0.05)
    monkeypatch.setattr(key_cache, "_read_generation", never_answers)
    clock.now += 3.0

    async def two_requests() -> tuple[float, bool, KeyMetadata | None, KeyMetadata | None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await key_cache.lookup(plaintext)  # waits for the check, then goes on
        waited = loop.time() - started
        still_waiting = key_cache._sync_awaited
        second = await key_cache.lookup(plaintext)  # the check still hangs: nobody waits now
        return waited, still_waiting, first, second

    waited, still_waiting, first, second = async_to_sync(two_requests)()
    assert waited >= 0.05  # it did wait for the check, and then went on from the cache
    assert not still_waiting
    assert first is not None and second is not None


def test_keys_of_an_inactive_user_are_refused_by_the_metadata() -> None:
    metadata = KeyMetadata(
        key_id=1,
        user_id=1,
        prefix="gw_x",
        key_hash="0" * 64,
        status="active",
        expires_at=None,
        grace_ends_at=None,
        deleted=False,
        user_active=False,
    )
    assert not metadata.usable_at(timezone.now())


def test_the_loaded_metadata_says_whether_the_user_is_active(make_key: MakeKey, user: User) -> None:
    key, _ = make_key(user=user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    metadata = key_metadata_load(key.prefix)
    assert metadata is not None
    assert (metadata.user_active, metadata.deleted) == (False, False)
    assert not metadata.usable_at(timezone.now())


def test_deactivating_a_user_through_the_service_stops_their_cached_keys(
    make_key: MakeKey,
    user: User,
    make_user: Callable[..., User],
    django_capture_on_commit_callbacks: Any,
) -> None:
    _key, plaintext = make_key(user=user)
    _other_key, other_plaintext = make_key(user=make_user())
    assert lookup(key_cache, plaintext) is not None
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert user_set_active(user=user, active=False)
    assert invalidate_key_metadata in callbacks
    assert lookup(key_cache, plaintext) is None
    assert lookup(key_cache, other_plaintext) is not None
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert not user_set_active(user=user, active=False)  # no change, nothing to drop
    assert callbacks == []
    with django_capture_on_commit_callbacks(execute=True):
        assert user_set_active(user=user, active=True)
    assert lookup(key_cache, plaintext) is not None


def test_deactivating_a_user_in_the_admin_stops_their_cached_keys(
    admin_client: Client, make_key: MakeKey, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    _key, plaintext = make_key(user=user)
    assert lookup(key_cache, plaintext) is not None
    page = admin_client.get(reverse("admin:accounts_user_change", args=[user.pk]))
    form = page.context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in {"is_active", "groups", "user_permissions"}
    }
    data.update(
        {
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            "access_keys-TOTAL_FORMS": "1",
            "access_keys-INITIAL_FORMS": "1",
            "access_keys-MIN_NUM_FORMS": "0",
            "access_keys-MAX_NUM_FORMS": "1000",
        }
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(reverse("admin:accounts_user_change", args=[user.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert not user.is_active
    assert invalidate_key_metadata in callbacks
    assert lookup(key_cache, plaintext) is None


def test_deleting_users_in_the_admin_goes_through_the_invalidation(
    admin_client: Client, make_user: Callable[..., User], django_capture_on_commit_callbacks: Any
) -> None:
    one, two = make_user(), make_user()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        admin_client.post(reverse("admin:accounts_user_delete", args=[one.pk]), {"post": "yes"})
    assert invalidate_key_metadata in callbacks
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        admin_client.post(
            reverse("admin:accounts_user_changelist"),
            {"action": "delete_selected", ACTION_CHECKBOX_NAME: [two.pk], "post": "yes"},
        )
    assert invalidate_key_metadata in callbacks
    assert not User.objects.filter(pk__in=[one.pk, two.pk]).exists()


class _RecordingConnection:
    def __init__(self) -> None:
        self.closed_on: list[str] = []

    def close(self) -> None:
        self.closed_on.append(threading.current_thread().name)


def test_database_reads_run_side_by_side_on_their_own_threads_and_close_their_connection(
    database_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = _RecordingConnection()
    monkeypatch.setattr(keycache, "connection", recording)
    together = threading.Barrier(3, timeout=5)

    def read(n: int) -> tuple[int, str]:
        together.wait()  # returns only once all three wait at the same time
        return n, threading.current_thread().name

    async def three_reads() -> list[tuple[int, str]]:
        return list(
            await asyncio.gather(*(keycache._in_database_thread(read, n) for n in range(3)))
        )

    results = async_to_sync(three_reads)()
    assert [n for n, _ in results] == [0, 1, 2]
    threads = {name for _, name in results}
    assert len(threads) == 3
    assert all(name.startswith("keycache-db") for name in threads)
    assert sorted(recording.closed_on) == sorted(threads)


def test_an_invalidation_that_cannot_reach_the_database_still_clears_this_process(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_key: MakeKey,
) -> None:
    settings.REDIS_URL = None
    _key, plaintext = make_key()
    assert lookup(key_cache, plaintext) is not None

    def database_down() -> int:
        raise OperationalError("connection refused (simulated)")

    monkeypatch.setattr(keycache, "_bump_database_generation", database_down)
    invalidate_key_metadata()  # runs after a commit: must not raise
    assert "could not bump the database's generation" in caplog.text
    assert counted_lookup(key_cache, plaintext)[0] > 0
