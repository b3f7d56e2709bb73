"""accounts.models: the user model, key state predicates and credential scope constraints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.models import AccessKey, CredentialPool, ProviderCredential, User

pytestmark = pytest.mark.django_db


def test_users_log_in_by_email_without_username() -> None:
    user = User.objects.create_user(email="Bob@EXAMPLE.com", password="pw-123456789")
    assert User.USERNAME_FIELD == "email"
    assert not hasattr(user, "username")
    assert user.email == "Bob@example.com"  # the domain is normalised
    assert user.check_password("pw-123456789")
    assert str(user) == "Bob@example.com"


def test_user_without_email_is_refused() -> None:
    with pytest.raises(ValueError, match="email"):
        User.objects.create_user(email="")


def test_superuser_is_staff() -> None:
    admin = User.objects.create_superuser(email="root@example.com", password="pw")
    assert admin.is_staff
    assert admin.is_superuser


def test_a_user_without_password_cannot_log_in_with_one() -> None:
    user = User.objects.create_user(email="key-holder@example.com")
    assert not user.has_usable_password()


def test_email_is_unique() -> None:
    User.objects.create_user(email="same@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(email="same@example.com")


def _key(**fields: object) -> AccessKey:
    return AccessKey(prefix="gw_x", key_hash="0" * 64, **fields)


def test_usable_at_follows_status_expiry_grace_and_deletion() -> None:
    now = timezone.now()
    hour = timedelta(hours=1)
    assert _key().usable_at(now)
    assert not _key(status=AccessKey.Status.REVOKED).usable_at(now)
    assert not _key(deleted_at=now).usable_at(now)
    assert _key(expires_at=now + hour).usable_at(now)
    assert not _key(expires_at=now).usable_at(now)
    rotated = _key(status=AccessKey.Status.ROTATED, grace_ends_at=now + hour)
    assert rotated.usable_at(now)
    assert not rotated.usable_at(now + hour)
    assert not _key(status=AccessKey.Status.ROTATED).usable_at(now)


def test_key_str_shows_prefix_and_label() -> None:
    assert str(_key()) == "gw_x"
    assert str(_key(label="laptop")) == "gw_x (laptop)"


def test_credential_scope_description_and_fingerprint(
    make_credential: Callable[..., ProviderCredential],
    make_key: Callable[..., tuple[AccessKey, str]],
    user: User,
) -> None:
    key, _ = make_key(user=user)
    assert make_credential().scope_description == "global"
    assert make_credential(user=user).scope_description == "user alice@example.com"
    by_key = make_credential(access_key=key, secret="sk-0123456789-wxyz")
    assert by_key.scope_description == f"key {key.prefix}"
    assert by_key.fingerprint == "…wxyz"
    assert str(by_key) == f"AWS Bedrock (key {key.prefix})"


def test_several_credentials_per_provider_and_scope_make_a_pool(
    make_credential: Callable[..., ProviderCredential], user: User
) -> None:
    make_credential()
    make_credential(user=user)
    for scope in ({}, {"user": user}):
        ProviderCredential.objects.create(provider="bedrock", secret_ciphertext="fernet:x", **scope)
    assert ProviderCredential.objects.filter(provider="bedrock").count() == 4
    assert ProviderCredential.objects.filter(user=None, weight=1, rpm_limit=None).count() == 2


def test_one_strategy_row_per_pool() -> None:
    CredentialPool.objects.create(provider="openai", strategy="weighted")
    CredentialPool.objects.create(provider="generic", name="vllm")
    with pytest.raises(IntegrityError), transaction.atomic():
        CredentialPool.objects.create(provider="openai", strategy="round_robin")
    assert CredentialPool.objects.get(name="vllm").strategy == "round_robin"


def test_a_credential_has_one_scope_at_most(
    make_key: Callable[..., tuple[AccessKey, str]], user: User
) -> None:
    key, _ = make_key(user=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        ProviderCredential.objects.create(
            provider="bedrock", user=user, access_key=key, secret_ciphertext="fernet:x"
        )


@pytest.mark.django_db(transaction=True)
def test_the_provider_migration_keeps_bedrock_modes_and_clears_the_others() -> None:
    before = [("accounts", "0001_initial")]
    after = [("accounts", "0002_provider_names_and_key_cache_generation")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model("accounts", "ProviderCredential")
        old.objects.create(provider="bedrock", api_mode="converse", secret_ciphertext="fernet:a")
        old.objects.create(provider="anthropic", api_mode="invoke", secret_ciphertext="fernet:b")

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new_apps = executor.loader.project_state(after).apps
        migrated = new_apps.get_model("accounts", "ProviderCredential")
        modes = dict(migrated.objects.values_list("provider", "api_mode"))
        assert modes == {"bedrock": "converse", "anthropic": ""}
        assert list(migrated.objects.values_list("name", flat=True)) == ["", ""]
        generation = new_apps.get_model("accounts", "KeyCacheGeneration")
        assert list(generation.objects.values_list("pk", "value")) == [(1, 0)]

        executor = MigrationExecutor(connection)
        executor.migrate(before)  # and back
        modes = dict(old.objects.values_list("provider", "api_mode"))
        assert modes == {"bedrock": "converse", "anthropic": "invoke"}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
