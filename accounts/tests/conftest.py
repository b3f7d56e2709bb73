"""Fixtures of the accounts tests: users, keys and credentials made through the services, a
clean key cache around every test, its database reads on the test's own thread, and a scan of
every table for leaked plaintext."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from cryptography.fernet import Fernet
from django.db import connection

from accounts import keycache
from accounts.keycache import key_cache
from accounts.models import AccessKey, ProviderCredential, User
from accounts.services import access_key_create, provider_credential_set


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The admin tests log in as a superuser per test; the production hasher is slow by design.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_key_cache() -> Iterator[None]:
    # reset, not clear: tests run the cache on a fake clock, whose times must not stay behind.
    key_cache.reset()
    yield
    key_cache.reset()


_in_database_threads = keycache._in_database_thread


async def _on_the_test_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await sync_to_async(func)(*args)


@pytest.fixture(autouse=True)
def _key_cache_reads_on_the_test_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache reads the database on a pool of its own threads, whose connections cannot see
    a test's uncommitted transaction; through async_to_sync from the test, thread-sensitive
    reads run on the test's thread and connection instead. Tests of the pool itself opt out
    with the ``database_threads`` fixture."""
    monkeypatch.setattr(keycache, "_in_database_thread", _on_the_test_thread)


@pytest.fixture
def database_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's own database threads, as in production (for tests that need no database
    rows, or a transactional database)."""
    monkeypatch.setattr(keycache, "_in_database_thread", _in_database_threads)


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    counter = iter(range(1, 1_000_000))

    def make(email: str | None = None, **extra: Any) -> User:
        return User.objects.create_user(email=email or f"user{next(counter)}@example.com", **extra)

    return make


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user("alice@example.com")


@pytest.fixture
def make_key(make_user: Callable[..., User]) -> Callable[..., tuple[AccessKey, str]]:
    def make(
        user: User | None = None, label: str = "", expires_at: datetime | None = None
    ) -> tuple[AccessKey, str]:
        return access_key_create(user=user or make_user(), label=label, expires_at=expires_at)

    return make


@pytest.fixture
def make_credential(db: None) -> Callable[..., ProviderCredential]:
    def make(
        provider: str = "bedrock",
        secret: str = "bedrock-api-key-0123456789",  # noqa: S107
        **scope: Any,
    ) -> ProviderCredential:
        if provider == "bedrock":
            scope.setdefault("region", "us-east-1")
        credential, _created = provider_credential_set(provider=provider, secret=secret, **scope)
        return credential

    return make


@pytest.fixture
def fernet_keys(settings: Any) -> list[str]:
    """Two fresh encryption keys, the first one encrypting."""
    keys = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
    settings.GATEWAY_ENCRYPTION_KEYS = keys
    return keys


def database_contains(needle: str) -> list[str]:
    """Every ``table.column`` of the database whose value contains ``needle``."""
    found: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            columns = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("utf-8", "replace")
                    if value is not None and needle in str(value):
                        found.append(f"{table}.{column}")
    return found


@pytest.fixture
def db_scan() -> Callable[[str], list[str]]:
    return database_contains
