"""Writes to accounts: users, access keys (create, verify, rotate, revoke) and provider credentials.

Every function that changes a key or a credential ends by invalidating the proxy's key cache
(accounts.keycache), after the transaction commits. Plaintext keys are returned to the caller
once and never stored.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.crypto import (
    SecretDecryptionError,
    access_key_prefix,
    encrypt_secret,
    hash_access_key,
    new_access_key,
    rotate_secret,
    secret_hint,
)
from accounts.keycache import invalidate_key_metadata
from accounts.models import AccessKey, BedrockApiMode, Provider, ProviderCredential, User
from accounts.selectors import user_get_by_email


class AccountsError(Exception):
    """A request the accounts services refuse, with a message fit for the operator."""


def _invalidate_on_commit() -> None:
    transaction.on_commit(invalidate_key_metadata)


# --- Users ------------------------------------------------------------------------------------


def user_get_or_create(*, email: str, create: bool) -> tuple[User, bool]:
    """The user with this email; created (without a usable password) only when ``create``."""
    email = email.strip()
    user = user_get_by_email(email)
    if user is not None:
        return user, False
    if not create:
        raise AccountsError(f"No user with email {email!r} (use --create-user to create one).")
    try:
        validate_email(email)
    except ValidationError as exc:
        raise AccountsError(f"{email!r} is not an email address.") from exc
    return User.objects.create_user(email=email), True


# --- Access keys ----------------------------------------------------------------------------


def access_key_create(
    *, user: User, label: str = "", expires_at: datetime | None = None
) -> tuple[AccessKey, str]:
    """Create a key for ``user``; returns it with its plaintext, which is never shown again."""
    if expires_at is not None and expires_at <= timezone.now():
        raise AccountsError("The expiry must be in the future.")
    _check_lengths(AccessKey, label=label)
    for _attempt in range(5):
        prefix, plaintext = new_access_key()
        try:
            with transaction.atomic():
                key = AccessKey.objects.create(
                    user=user,
                    label=label,
                    prefix=prefix,
                    key_hash=hash_access_key(plaintext),
                    expires_at=expires_at,
                )
        except IntegrityError:  # a prefix collision (about 1 in 10^12): draw again
            continue
        _invalidate_on_commit()
        return key, plaintext
    raise AccountsError("Could not allocate a unique key prefix.")


def access_key_verify(*, plaintext: str, now: datetime | None = None) -> AccessKey | None:
    """The key a plaintext belongs to, if it is usable now. Constant-time hash comparison."""
    prefix = access_key_prefix(plaintext)
    if prefix is None:
        return None
    key = AccessKey.objects.select_related("user").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.key_hash, hash_access_key(plaintext)):
        return None
    # A deactivated user's keys stop working with the user (as in the proxy's key cache).
    if not key.user.is_active:
        return None
    return key if key.usable_at(now or timezone.now()) else None


def access_key_update(*, access_key: AccessKey, label: str, expires_at: datetime | None) -> None:
    """Change the label and expiry of a key (the admin's change form)."""
    # An unchanged expiry may lie in the past (relabelling an expired key).
    changed = expires_at != access_key.expires_at
    if changed and expires_at is not None and expires_at <= timezone.now():
        raise AccountsError("The expiry must be in the future.")
    _check_lengths(AccessKey, label=label)
    AccessKey.objects.filter(pk=access_key.pk).update(label=label, expires_at=expires_at)
    _invalidate_on_commit()
    access_key.label = label
    access_key.expires_at = expires_at


def access_key_rotate(
    *, access_key: AccessKey, grace: timedelta | None = None
) -> tuple[AccessKey, str]:
    """Replace an active key by a new one; the old one keeps working until its grace ends."""
    if grace is None:
        grace = timedelta(hours=settings.GATEWAY_KEY_ROTATION_GRACE_HOURS)
    with transaction.atomic():
        old = AccessKey.objects.select_for_update().get(pk=access_key.pk)
        if old.deleted_at is not None or old.status != AccessKey.Status.ACTIVE:
            raise AccountsError(f"Key {old.prefix} is {old.status}; only active keys rotate.")
        new, plaintext = access_key_create(
            user=old.user, label=old.label, expires_at=_future_or_none(old.expires_at)
        )
        now = timezone.now()
        old.status = AccessKey.Status.ROTATED
        old.grace_ends_at = now + grace
        old.replaced_by = new
        old.save(update_fields=["status", "grace_ends_at", "replaced_by"])
    _invalidate_on_commit()
    access_key.refresh_from_db()
    return new, plaintext


def _future_or_none(moment: datetime | None) -> datetime | None:
    return moment if moment is not None and moment > timezone.now() else None


def access_key_revoke(*, access_key: AccessKey) -> bool:
    """Revoke a key at once. Returns False when it was already revoked."""
    updated = (
        AccessKey.objects.filter(pk=access_key.pk)
        .exclude(status=AccessKey.Status.REVOKED)
        .update(status=AccessKey.Status.REVOKED, revoked_at=timezone.now())
    )
    _invalidate_on_commit()
    access_key.refresh_from_db()
    return bool(updated)


def access_key_soft_delete(*, access_key: AccessKey) -> None:
    """Hide a key from use and lists while keeping its usage history."""
    now = timezone.now()
    AccessKey.objects.filter(pk=access_key.pk, deleted_at__isnull=True).update(
        deleted_at=now,
        status=AccessKey.Status.REVOKED,
        revoked_at=Coalesce("revoked_at", now),
    )
    _invalidate_on_commit()
    access_key.refresh_from_db()


def access_keys_expire_rotated(*, now: datetime | None = None, dry_run: bool = False) -> list[str]:
    """Revoke rotated keys whose grace period has ended; returns their prefixes."""
    now = now or timezone.now()
    due = AccessKey.objects.filter(status=AccessKey.Status.ROTATED, grace_ends_at__lte=now)
    prefixes = list(due.values_list("prefix", flat=True))
    if prefixes and not dry_run:
        due.filter(prefix__in=prefixes).update(status=AccessKey.Status.REVOKED, revoked_at=now)
        _invalidate_on_commit()
    return prefixes


def access_keys_touch(*, last_used: dict[int, datetime]) -> None:
    """Record when keys were last used; the proxy batches these so a key costs one write a
    minute at most, whatever its request rate."""
    for key_id, moment in last_used.items():
        AccessKey.objects.filter(pk=key_id).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment)
        ).update(last_used_at=moment)


# --- Provider credentials -------------------------------------------------------------------


def provider_secret_validate(secret: str) -> str:
    """The secret as it will be stored (surrounding whitespace removed), or AccountsError."""
    secret = secret.strip()
    if not secret:
        raise AccountsError("The secret is empty.")
    if any(ch in secret for ch in "\r\n\x00"):
        raise AccountsError("The secret contains line breaks or NUL characters.")
    return secret


_endpoint_validator = URLValidator(schemes=["http", "https"])


def provider_endpoint_validate(endpoint_url: str) -> str:
    """An endpoint override must be an http(s) URL; empty means the provider's default."""
    endpoint_url = endpoint_url.strip()
    if endpoint_url:
        try:
            _endpoint_validator(endpoint_url)
        except ValidationError as exc:
            raise AccountsError(f"{endpoint_url!r} is not an http(s) URL.") from exc
    return endpoint_url


def _check_lengths(model: type[models.Model], **values: str) -> None:
    # PostgreSQL refuses over-long strings with a bare DataError; say which field instead.
    for name, value in values.items():
        limit = getattr(model._meta.get_field(name), "max_length", None)
        if limit is not None and len(value) > limit:
            raise AccountsError(f"The {name.replace('_', ' ')} is over {limit} characters.")


def provider_credential_set(
    *,
    provider: str,
    secret: str,
    user: User | None = None,
    access_key: AccessKey | None = None,
    region: str = "",
    api_mode: str = BedrockApiMode.INVOKE,
    endpoint_url: str = "",
    label: str = "",
    fallback_model: str = "",
) -> tuple[ProviderCredential, bool]:
    """Create, or replace, the credential of ``provider`` for one scope. Returns (it, created)."""
    if provider not in Provider.values:
        raise AccountsError(
            f"Unknown provider {provider!r}; choose one of {', '.join(Provider.values)}."
        )
    if api_mode not in BedrockApiMode.values:
        raise AccountsError(f"Unknown mode {api_mode!r}; choose converse or invoke.")
    if user is not None and access_key is not None:
        raise AccountsError("A credential is scoped to a user or to an access key, not both.")
    secret = provider_secret_validate(secret)
    endpoint_url = provider_endpoint_validate(endpoint_url)
    _check_lengths(
        ProviderCredential,
        label=label,
        region=region,
        endpoint_url=endpoint_url,
        fallback_model=fallback_model,
    )
    now = timezone.now()
    values = {
        "region": region,
        "api_mode": api_mode,
        "endpoint_url": endpoint_url,
        "label": label,
        "fallback_model": fallback_model,
        "secret_ciphertext": encrypt_secret(secret),
        "secret_hint": secret_hint(secret),
        "updated_at": now,
    }
    with transaction.atomic():
        credential, created = ProviderCredential.objects.select_for_update().update_or_create(
            provider=provider, user=user, access_key=access_key, defaults=values
        )
    _invalidate_on_commit()
    return credential, created


def provider_credential_save(*, credential: ProviderCredential, secret: str | None) -> None:
    """Save an edited credential (admin form); a new ``secret`` replaces the stored one."""
    if credential.user_id is not None and credential.access_key_id is not None:
        raise AccountsError("A credential is scoped to a user or to an access key, not both.")
    credential.endpoint_url = provider_endpoint_validate(credential.endpoint_url)
    if secret:
        secret = provider_secret_validate(secret)
        credential.secret_ciphertext = encrypt_secret(secret)
        credential.secret_hint = secret_hint(secret)
    elif not credential.secret_ciphertext:
        raise AccountsError("A new credential needs a secret.")
    credential.updated_at = timezone.now()
    credential.save()
    _invalidate_on_commit()


def provider_credential_delete(*, credential: ProviderCredential) -> None:
    credential.delete()
    _invalidate_on_commit()


@dataclass
class EncryptionRotationReport:
    rotated: int = 0
    failed: list[str] = field(default_factory=list)


def encryption_keys_rotate() -> EncryptionRotationReport:
    """Re-encrypt every stored secret under the first GATEWAY_ENCRYPTION_KEYS key."""
    report = EncryptionRotationReport()
    for credential_id in ProviderCredential.objects.values_list("pk", flat=True).order_by("pk"):
        with transaction.atomic():
            credential = ProviderCredential.objects.select_for_update().get(pk=credential_id)
            try:
                credential.secret_ciphertext = rotate_secret(credential.secret_ciphertext)
            except SecretDecryptionError as exc:
                report.failed.append(f"#{credential.pk} {credential}: {exc}")
                continue
            credential.save(update_fields=["secret_ciphertext"])
            report.rotated += 1
    _invalidate_on_commit()
    return report
