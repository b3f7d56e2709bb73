"""accounts.services and accounts.selectors: keys (create, verify, rotate, grace expiry, revoke,
soft delete), users, credentials (scope resolution, encryption, key rotation)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from accounts.crypto import decrypt_secret, hash_access_key
from accounts.keycache import invalidate_key_metadata
from accounts.models import AccessKey, ProviderCredential, User
from accounts.selectors import (
    access_key_get_by_prefix,
    credentials_for_key,
    key_metadata_load,
    provider_credential_decrypts,
    resolve_credential,
    user_get_by_email,
)
from accounts.services import (
    AccountsError,
    access_key_create,
    access_key_revoke,
    access_key_rotate,
    access_key_soft_delete,
    access_key_update,
    access_keys_expire_rotated,
    access_keys_touch,
    encryption_keys_rotate,
    provider_credential_delete,
    provider_credential_save,
    provider_credential_set,
    user_get_or_create,
)
from accounts.tests.helpers import verified_key

pytestmark = pytest.mark.django_db

MakeKey = Callable[..., tuple[AccessKey, str]]
MakeCredential = Callable[..., ProviderCredential]


# --- Users ------------------------------------------------------------------------------------


def test_user_get_or_create_finds_existing_user_case_insensitively(user: User) -> None:
    found, created = user_get_or_create(email="  ALICE@example.com ", create=False)
    assert (found, created) == (user, False)


def test_unknown_user_without_create_names_the_user() -> None:
    with pytest.raises(AccountsError, match=r"nobody@example\.com.*--create-user"):
        user_get_or_create(email="nobody@example.com", create=False)
    assert not User.objects.exists()


def test_user_is_created_without_usable_password() -> None:
    new, created = user_get_or_create(email="new@example.com", create=True)
    assert created
    assert new.email == "new@example.com"
    assert not new.has_usable_password()


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@b.com", "two words@example.com"])
def test_user_create_refuses_bad_email(email: str) -> None:
    with pytest.raises(AccountsError, match="not an email address"):
        user_get_or_create(email=email, create=True)
    assert not User.objects.exists()


# --- Access keys ------------------------------------------------------------------------------


def test_create_stores_only_prefix_and_hmac(
    user: User, db_scan: Callable[[str], list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        key, plaintext = access_key_create(user=user, label="laptop")
    key.refresh_from_db()
    assert plaintext.startswith(key.prefix + "_")
    assert key.key_hash == hash_access_key(plaintext)
    assert key.status == AccessKey.Status.ACTIVE
    assert key.label == "laptop"
    assert key.user == user
    assert db_scan(plaintext) == []
    assert db_scan(plaintext.removeprefix(key.prefix + "_")) == []
    assert invalidate_key_metadata in callbacks


def test_create_refuses_past_expiry_and_long_label(user: User) -> None:
    with pytest.raises(AccountsError, match="future"):
        access_key_create(user=user, expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(AccountsError, match="label is over 100"):
        access_key_create(user=user, label="x" * 101)
    assert not AccessKey.objects.exists()


def test_verify_accepts_the_key_and_nothing_else(make_key: MakeKey) -> None:
    key, plaintext = make_key()
    other, _ = make_key()
    assert verified_key(plaintext=plaintext) == key
    assert verified_key(plaintext=plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    # The right secret under another key's prefix.
    assert verified_key(plaintext=other.prefix + plaintext[len(key.prefix) :]) is None
    assert verified_key(plaintext="gw_zzzzzzzz_" + "x" * 43) is None
    assert verified_key(plaintext="not a key") is None


def test_verify_refuses_expired_keys_and_deactivated_users(make_key: MakeKey, user: User) -> None:
    soon = timezone.now() + timedelta(hours=1)
    key, plaintext = make_key(user=user, expires_at=soon)
    assert verified_key(plaintext=plaintext) == key
    assert verified_key(plaintext=plaintext, now=soon) is None
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert verified_key(plaintext=plaintext) is None


def test_rotate_gives_a_new_key_and_keeps_the_old_one_during_grace(
    make_key: MakeKey, django_capture_on_commit_callbacks: Any
) -> None:
    old, old_plaintext = make_key(label="ci")
    with django_capture_on_commit_callbacks() as callbacks:
        new, new_plaintext = access_key_rotate(access_key=old, grace=timedelta(hours=2))
    assert invalidate_key_metadata in callbacks
    assert new.pk != old.pk
    assert new_plaintext != old_plaintext
    assert (new.label, new.user_id, new.status) == ("ci", old.user_id, AccessKey.Status.ACTIVE)
    # The caller's instance is refreshed.
    assert old.status == AccessKey.Status.ROTATED
    assert old.replaced_by == new
    assert old.grace_ends_at is not None
    assert timedelta(hours=1, minutes=59) < old.grace_ends_at - timezone.now() <= timedelta(hours=2)
    assert verified_key(plaintext=new_plaintext) == new
    assert verified_key(plaintext=old_plaintext) == old
    # Grace over: the old key stops, the new one goes on.
    assert verified_key(plaintext=old_plaintext, now=old.grace_ends_at) is None
    assert verified_key(plaintext=new_plaintext, now=old.grace_ends_at) == new


def test_rotate_uses_the_configured_grace_and_keeps_the_expiry(
    settings: Any, make_key: MakeKey
) -> None:
    settings.GATEWAY_KEY_ROTATION_GRACE_HOURS = 48
    expires = timezone.now() + timedelta(days=10)
    old, _ = make_key(expires_at=expires)
    new, _ = access_key_rotate(access_key=old)
    assert new.expires_at == expires
    assert old.grace_ends_at is not None
    assert old.grace_ends_at - timezone.now() > timedelta(hours=47)


def test_only_active_keys_rotate(make_key: MakeKey) -> None:
    rotated, _ = make_key()
    access_key_rotate(access_key=rotated)
    revoked, _ = make_key()
    access_key_revoke(access_key=revoked)
    for key in (rotated, revoked):
        with pytest.raises(AccountsError, match=rf"{key.prefix} is {key.status}"):
            access_key_rotate(access_key=key)
    assert AccessKey.objects.count() == 3


def test_rotated_keys_are_revoked_when_their_grace_ends(make_key: MakeKey) -> None:
    old, old_plaintext = make_key()
    access_key_rotate(access_key=old, grace=timedelta(hours=1))
    assert old.grace_ends_at is not None
    assert access_keys_expire_rotated(now=old.grace_ends_at - timedelta(seconds=1)) == []

    assert access_keys_expire_rotated(now=old.grace_ends_at, dry_run=True) == [old.prefix]
    old.refresh_from_db()
    assert old.status == AccessKey.Status.ROTATED

    assert access_keys_expire_rotated(now=old.grace_ends_at) == [old.prefix]
    old.refresh_from_db()
    assert old.status == AccessKey.Status.REVOKED
    assert old.revoked_at == old.grace_ends_at
    assert verified_key(plaintext=old_plaintext) is None


def test_revoke_stops_the_key_at_once(
    make_key: MakeKey, django_capture_on_commit_callbacks: Any
) -> None:
    key, plaintext = make_key()
    with django_capture_on_commit_callbacks() as callbacks:
        assert access_key_revoke(access_key=key) is True
    assert invalidate_key_metadata in callbacks
    assert key.status == AccessKey.Status.REVOKED
    assert key.revoked_at is not None
    assert verified_key(plaintext=plaintext) is None
    assert access_key_revoke(access_key=key) is False


def test_revoking_a_rotated_key_ends_its_grace(make_key: MakeKey) -> None:
    old, old_plaintext = make_key()
    access_key_rotate(access_key=old)
    assert access_key_revoke(access_key=old) is True
    assert verified_key(plaintext=old_plaintext) is None


def test_soft_delete_keeps_the_row_but_hides_and_stops_the_key(
    make_key: MakeKey, django_capture_on_commit_callbacks: Any
) -> None:
    key, plaintext = make_key()
    with django_capture_on_commit_callbacks() as callbacks:
        access_key_soft_delete(access_key=key)
    assert invalidate_key_metadata in callbacks
    assert AccessKey.objects.filter(pk=key.pk).exists()
    assert key.deleted_at is not None
    assert key.status == AccessKey.Status.REVOKED
    assert key.revoked_at is not None
    assert verified_key(plaintext=plaintext) is None
    assert access_key_get_by_prefix(key.prefix) is None
    metadata = key_metadata_load(key.prefix)
    assert metadata is not None
    assert metadata.deleted


def test_soft_delete_keeps_an_earlier_revocation_time(make_key: MakeKey) -> None:
    key, _ = make_key()
    access_key_revoke(access_key=key)
    revoked_at = key.revoked_at
    access_key_soft_delete(access_key=key)
    assert key.revoked_at == revoked_at


def test_update_changes_label_and_expiry(
    make_key: MakeKey, django_capture_on_commit_callbacks: Any
) -> None:
    key, _ = make_key(label="old")
    later = timezone.now() + timedelta(days=3)
    with django_capture_on_commit_callbacks() as callbacks:
        access_key_update(access_key=key, label="new", expires_at=later)
    assert invalidate_key_metadata in callbacks
    key.refresh_from_db()
    assert (key.label, key.expires_at) == ("new", later)
    with pytest.raises(AccountsError, match="future"):
        access_key_update(access_key=key, label="new", expires_at=timezone.now())
    with pytest.raises(AccountsError, match="label"):
        access_key_update(access_key=key, label="x" * 101, expires_at=later)


def test_update_keeps_an_expiry_already_past(make_key: MakeKey) -> None:
    key, _ = make_key()
    past = timezone.now() - timedelta(days=1)
    AccessKey.objects.filter(pk=key.pk).update(expires_at=past)
    key.refresh_from_db()
    access_key_update(access_key=key, label="relabelled", expires_at=past)
    key.refresh_from_db()
    assert key.label == "relabelled"


def test_touch_only_moves_last_used_forward(make_key: MakeKey) -> None:
    key, _ = make_key()
    now = timezone.now()
    access_keys_touch(last_used={key.pk: now})
    access_keys_touch(last_used={key.pk: now - timedelta(minutes=5)})
    key.refresh_from_db()
    assert key.last_used_at == now


def test_get_by_prefix_tolerates_whitespace(make_key: MakeKey) -> None:
    key, _ = make_key()
    assert access_key_get_by_prefix(f" {key.prefix}\n") == key
    assert access_key_get_by_prefix("gw_unknown0") is None


# --- Provider credentials -------------------------------------------------------------------


def test_scope_resolution_access_key_then_user_then_global(
    make_key: MakeKey, make_credential: MakeCredential, make_user: Callable[..., User]
) -> None:
    owner, stranger = make_user(), make_user()
    key, _ = make_key(user=owner)
    sibling, _ = make_key(user=owner)
    strangers_key, _ = make_key(user=stranger)

    def chosen() -> ProviderCredential:
        return credentials_for_key(user_id=owner.pk, access_key_id=key.pk)["bedrock"]

    assert credentials_for_key(user_id=owner.pk, access_key_id=key.pk) == {}
    global_one = make_credential()
    make_credential(user=stranger)
    make_credential(access_key=sibling)
    make_credential(access_key=strangers_key)
    assert chosen() == global_one
    user_one = make_credential(user=owner)
    assert chosen() == user_one
    key_one = make_credential(access_key=key)
    assert chosen() == key_one
    # Providers resolve independently.
    anthropic = make_credential(provider="anthropic", secret="sk-ant-0123456789")
    resolved = credentials_for_key(user_id=owner.pk, access_key_id=key.pk)
    assert resolved == {"bedrock": key_one, "anthropic": anthropic}


def test_key_metadata_carries_the_resolved_credentials(
    make_key: MakeKey, make_credential: MakeCredential, user: User
) -> None:
    key, _ = make_key(user=user)
    make_credential(secret="global-secret-000000")
    make_credential(user=user, secret="user-secret-0000000", region="eu-west-1")
    metadata = key_metadata_load(key.prefix)
    assert metadata is not None
    bedrock = metadata.credentials["bedrock"]
    assert (bedrock.secret, bedrock.region, bedrock.scope, bedrock.error) == (
        "user-secret-0000000",
        "eu-west-1",
        "user alice@example.com",
        "",
    )
    assert "user-secret" not in repr(bedrock)
    assert key_metadata_load("gw_unknown0") is None


def test_set_encrypts_the_secret(
    make_credential: MakeCredential, db_scan: Callable[[str], list[str]]
) -> None:
    credential = make_credential(secret="  bedrock-secret-abcd\n")
    credential.refresh_from_db()
    assert credential.secret_ciphertext.startswith("fernet:")
    assert decrypt_secret(credential.secret_ciphertext) == "bedrock-secret-abcd"
    assert credential.secret_hint == "abcd"
    assert db_scan("bedrock-secret") == []


def test_set_replaces_the_credential_of_the_same_provider_and_scope(
    user: User, django_capture_on_commit_callbacks: Any
) -> None:
    first, created = provider_credential_set(
        provider="bedrock", secret="first-secret-0001", user=user, region="us-east-1"
    )
    assert created
    with django_capture_on_commit_callbacks() as callbacks:
        second, created = provider_credential_set(
            provider="bedrock",
            secret="second-secret-0002",
            user=user,
            region="eu-central-1",
            api_mode="converse",
            endpoint_url="https://bedrock.internal.example:8443",
            label="team",
            fallback_model="global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        )
    assert invalidate_key_metadata in callbacks
    assert not created
    assert second.pk == first.pk
    assert ProviderCredential.objects.count() == 1
    second.refresh_from_db()
    assert decrypt_secret(second.secret_ciphertext) == "second-secret-0002"
    assert (second.region, second.api_mode, second.label) == ("eu-central-1", "converse", "team")
    assert second.endpoint_url == "https://bedrock.internal.example:8443"
    # Another scope is another credential.
    provider_credential_set(provider="bedrock", secret="global-secret-0003")
    assert ProviderCredential.objects.count() == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider": "azure"}, "Unknown provider 'azure'"),
        ({"api_mode": "stream"}, "Unknown mode 'stream'"),
        ({"secret": ""}, "AWS Bedrock needs a secret"),
        ({"secret": " \n\t "}, "AWS Bedrock needs a secret"),
        ({"secret": "two\nlines"}, "line breaks"),
        ({"secret": "nul\x00byte"}, "NUL"),
        ({"endpoint_url": "ftp://example.com"}, "not an http"),
        ({"endpoint_url": "not a url"}, "not an http"),
        ({"label": "x" * 101}, "label is over 100"),
        ({"region": "r" * 33}, "region is over 32"),
        ({"endpoint_url": "https://example.com/" + "p" * 200}, "endpoint url is over 200"),
    ],
)
def test_set_refuses_bad_input(changes: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"provider": "bedrock", "secret": "a-good-secret-1234"}
    arguments.update(changes)
    with pytest.raises(AccountsError, match=message):
        provider_credential_set(**arguments)
    assert not ProviderCredential.objects.exists()


def test_set_refuses_two_scopes(make_key: MakeKey, user: User) -> None:
    key, _ = make_key(user=user)
    with pytest.raises(AccountsError, match="not both"):
        provider_credential_set(
            provider="bedrock", secret="a-good-secret-1234", user=user, access_key=key
        )


def test_save_keeps_the_secret_when_none_is_given(make_credential: MakeCredential) -> None:
    credential = make_credential(secret="kept-secret-0000")
    credential.label = "renamed"
    provider_credential_save(credential=credential, secret=None)
    credential.refresh_from_db()
    assert credential.label == "renamed"
    assert decrypt_secret(credential.secret_ciphertext) == "kept-secret-0000"

    provider_credential_save(credential=credential, secret="replaced-secret-1111")
    credential.refresh_from_db()
    assert decrypt_secret(credential.secret_ciphertext) == "replaced-secret-1111"
    assert credential.secret_hint == "1111"


def test_save_refuses_a_new_credential_without_secret_and_bad_input(
    make_key: MakeKey, user: User
) -> None:
    with pytest.raises(AccountsError, match="needs a secret"):
        provider_credential_save(credential=ProviderCredential(provider="bedrock"), secret=None)
    key, _ = make_key(user=user)
    with pytest.raises(AccountsError, match="not both"):
        provider_credential_save(
            credential=ProviderCredential(provider="bedrock", user=user, access_key=key),
            secret="a-good-secret-1234",
        )
    with pytest.raises(AccountsError, match="not an http"):
        provider_credential_save(
            credential=ProviderCredential(provider="bedrock", endpoint_url="javascript:x"),
            secret="a-good-secret-1234",
        )
    assert not ProviderCredential.objects.exists()


def test_delete_removes_the_credential(
    make_credential: MakeCredential, django_capture_on_commit_callbacks: Any
) -> None:
    credential = make_credential()
    with django_capture_on_commit_callbacks() as callbacks:
        provider_credential_delete(credential=credential)
    assert invalidate_key_metadata in callbacks
    assert not ProviderCredential.objects.exists()


def test_undecryptable_secret_error_names_the_credential(
    settings: Any, fernet_keys: list[str], make_credential: MakeCredential, user: User
) -> None:
    credential = make_credential(user=user)
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    credential.refresh_from_db()
    assert not provider_credential_decrypts(credential)
    resolved = resolve_credential(credential)
    assert resolved.secret == ""
    assert f"provider credential #{credential.pk}" in resolved.error
    assert "user alice@example.com" in resolved.error
    assert "cannot be decrypted" in resolved.error


def test_encryption_key_rotation_with_a_new_first_key(
    settings: Any, fernet_keys: list[str], make_credential: MakeCredential, user: User
) -> None:
    old_key = fernet_keys[0]
    first = make_credential(secret="first-secret-0001")
    second = make_credential(user=user, secret="second-secret-0002")
    new_key = Fernet.generate_key().decode()
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key, old_key]

    report = encryption_keys_rotate()

    assert (report.rotated, report.failed) == (2, [])
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key]  # the old key can go now
    for credential, secret in ((first, "first-secret-0001"), (second, "second-secret-0002")):
        credential.refresh_from_db()
        assert decrypt_secret(credential.secret_ciphertext) == secret


def test_encryption_key_rotation_reports_what_it_cannot_decrypt(
    settings: Any, fernet_keys: list[str], make_credential: MakeCredential, user: User
) -> None:
    lost = make_credential(user=user, secret="lost-secret-0001")
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    fine = make_credential(secret="fine-secret-0002")
    lost_ciphertext = ProviderCredential.objects.get(pk=lost.pk).secret_ciphertext

    report = encryption_keys_rotate()

    assert report.rotated == 1
    assert len(report.failed) == 1
    assert f"#{lost.pk}" in report.failed[0]
    assert "user alice@example.com" in report.failed[0]
    # The unreadable row is left as it was; the readable one still decrypts.
    assert ProviderCredential.objects.get(pk=lost.pk).secret_ciphertext == lost_ciphertext
    fine.refresh_from_db()
    assert decrypt_secret(fine.secret_ciphertext) == "fine-secret-0002"


def test_user_get_by_email_is_case_insensitive(user: User) -> None:
    assert user_get_by_email("Alice@Example.COM") == user
    assert user_get_by_email("bob@example.com") is None
