"""Writes to accounts: users, access keys (create, rotate, revoke) and provider credentials, and
the rules a credential's fields follow for each provider.

Every function that changes whether a key works or what it may use (the key, its user, a
credential) ends by invalidating the proxy's key cache (accounts.keycache) after the transaction
commits; that one path reaches every gateway process within about a second. Plaintext keys are
returned to the caller once and never stored.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.crypto import (
    SecretDecryptionError,
    encrypt_secret,
    hash_access_key,
    new_access_key,
    rotate_secret,
    secret_hint,
)
from accounts.keycache import invalidate_key_metadata
from accounts.models import (
    MAX_CONCURRENCY,
    MAX_LIMIT,
    MAX_WEIGHT,
    AccessKey,
    BedrockApiMode,
    CredentialPool,
    PoolStrategy,
    Provider,
    ProviderCredential,
    User,
)
from accounts.selectors import pool_members, user_get_by_email


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


def user_save(*, user: User) -> None:
    """Save a user edited as a whole (the admin's change form). Whether the user is active
    decides whether their keys work, so running gateways drop what they cached about them."""
    user.save()
    _invalidate_on_commit()


def user_set_active(*, user: User, active: bool) -> bool:
    """Activate or deactivate a user, and with them all their keys. Returns whether it changed."""
    changed = User.objects.filter(pk=user.pk).exclude(is_active=active).update(is_active=active)
    user.is_active = active
    if changed:
        _invalidate_on_commit()
    return bool(changed)


def user_delete(*, user: User) -> None:
    """Delete a user (one without keys: keys protect their owner, for the usage history)."""
    user.delete()
    _invalidate_on_commit()


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

# Whether a provider takes a secret (generic servers: optional). Every field a provider does not
# take is refused rather than ignored, so that a mistake (a region on an OpenAI credential) shows
# when it is made.
_SECRET_REQUIRED = frozenset(
    {Provider.ANTHROPIC, Provider.BEDROCK, Provider.OPENAI, Provider.GEMINI}
)
_NO_SECRET = frozenset({Provider.OLLAMA})
# At most 16 characters: the name is the provider of the usage it records.
_GENERIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")
# AWS region names: us-east-1, eu-central-2, us-gov-west-1, ap-southeast-3. The region is put
# into the endpoint's host name, so nothing else may pass (``x@evil.example/#`` would be a host).
_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
REDIRECT_PERMISSION = "accounts.redirect_providercredential"


def provider_secret_rule(provider: str) -> str:
    """Whether ``provider`` takes a secret: ``required``, ``optional`` or ``none``."""
    if provider in _SECRET_REQUIRED:
        return "required"
    return "none" if provider in _NO_SECRET else "optional"


class CredentialInvalid(AccountsError):
    """Credential input refused; ``errors`` maps each offending field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(" ".join(errors.values()))


@dataclass(frozen=True)
class CredentialFields:
    """A credential's fields once checked for its provider. ``secret`` None keeps the stored
    one; an empty ``secret`` means the credential has none."""

    provider: str
    name: str
    secret: str | None
    region: str
    api_mode: str
    endpoint_url: str
    fallback_model: str
    label: str


def provider_secret_validate(secret: str) -> str:
    """The secret as it will be stored (surrounding whitespace removed), or AccountsError."""
    secret = secret.strip()
    if not secret:
        raise AccountsError("The secret is empty.")
    if any(ch in secret for ch in "\r\n\x00"):
        raise AccountsError("The secret contains line breaks or NUL characters.")
    return secret


def provider_endpoint_validate(endpoint_url: str) -> str:
    """An endpoint must be a plain http(s) URL: a host, an optional port and path, and no user
    name, password, query or fragment (each a way to send a request somewhere other than it
    looks). Empty means the provider's default."""
    endpoint_url = endpoint_url.strip()
    if not endpoint_url:
        return ""
    shown = repr(endpoint_url[:80])
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in endpoint_url):
        raise AccountsError(f"{shown} is not an http(s) URL (it has spaces or backslashes).")
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AccountsError(
            f"{shown} is not an http(s) URL; write it in full, e.g. https://host:8443/path."
        )
    if "@" in parts.netloc:
        raise AccountsError(
            f"{shown}: an endpoint URL takes no user name or password (the secret goes in the "
            "secret field)."
        )
    if "#" in endpoint_url or "?" in endpoint_url:
        raise AccountsError(f"{shown}: an endpoint URL takes no query (?…) or fragment (#…).")
    host = parts.hostname or ""
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise AccountsError(f"{shown} has an invalid port.") from exc
    if not _valid_host(host):
        raise AccountsError(f"{shown} is not an http(s) URL (invalid host {host!r}).")
    return endpoint_url


def _valid_host(host: str) -> bool:
    if not host:
        return False
    if ":" in host:  # an IPv6 literal, given in brackets
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    # Single labels pass on purpose: servers on a private network (http://vllm:8000).
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


def _too_long(model: type[models.Model], **values: str) -> dict[str, str]:
    # PostgreSQL refuses over-long strings with a bare DataError; say which field instead.
    errors: dict[str, str] = {}
    for name, value in values.items():
        limit = getattr(model._meta.get_field(name), "max_length", None)
        if limit is not None and len(value) > limit:
            errors[name] = f"The {name.replace('_', ' ')} is over {limit} characters."
    return errors


def _check_lengths(model: type[models.Model], **values: str) -> None:
    errors = _too_long(model, **values)
    if errors:
        raise AccountsError(" ".join(errors.values()))


def provider_credential_clean(
    *,
    provider: str,
    name: str = "",
    secret: str | None = None,
    region: str = "",
    api_mode: str = "",
    endpoint_url: str = "",
    fallback_model: str = "",
    label: str = "",
    stored: ProviderCredential | None = None,
    may_redirect: bool = False,
) -> CredentialFields:
    """Check a credential's fields against what its provider takes; the one set of rules for
    the admin form, the command and the services. Raises CredentialInvalid naming each field.

    ``secret`` None or empty means none was entered. ``stored`` is the credential being edited,
    if any: its secret is kept when none is entered, but only as long as the secret keeps going
    where it went (same provider, same endpoint), unless ``may_redirect`` (a permission only
    superusers have by default): otherwise whoever may edit credentials could point a stored
    secret at a server of their own.
    """
    errors: dict[str, str] = {}
    name, region, api_mode = name.strip(), region.strip(), (api_mode or "").strip()
    fallback_model, label = fallback_model.strip(), label.strip()
    if provider not in Provider.values:
        raise CredentialInvalid(
            {
                "provider": f"Unknown provider {provider!r}; choose one of "
                f"{', '.join(Provider.values)}."
            }
        )
    too_long = _too_long(
        ProviderCredential,
        name=name,
        label=label,
        region=region,
        endpoint_url=endpoint_url.strip(),
        fallback_model=fallback_model,
    )
    if too_long:
        raise CredentialInvalid(too_long)
    display = Provider(provider).label

    if provider == Provider.GENERIC:
        if not name:
            errors["name"] = "A generic server needs a name (clients write <name>/<model>)."
        elif not _GENERIC_NAME.fullmatch(name):
            errors["name"] = (
                f"{name!r} is not a valid name: lowercase letters, digits, - and _, starting "
                "with a letter or digit, at most 16 characters."
            )
        elif name in Provider.values:
            errors["name"] = f"{name!r} is a built-in provider's name; choose another."
    elif name:
        errors["name"] = "Only generic servers have a name; leave it empty."

    try:
        endpoint_url = provider_endpoint_validate(endpoint_url)
    except AccountsError as exc:
        errors["endpoint_url"] = str(exc)
    else:
        if provider == Provider.GENERIC and not endpoint_url:
            errors["endpoint_url"] = (
                "A generic server needs its base URL, e.g. https://api.groq.com/openai."
            )

    new_secret: str | None = None
    if secret and secret.strip():
        if provider in _NO_SECRET:
            errors["secret"] = f"{display} takes no secret; leave it empty."
        else:
            try:
                new_secret = provider_secret_validate(secret)
            except AccountsError as exc:
                errors["secret"] = str(exc)
    has_stored_secret = stored is not None and bool(stored.secret_ciphertext)
    if provider in _NO_SECRET:
        new_secret = ""  # a secret stored for another provider before goes
    elif new_secret is None and "secret" not in errors:
        if provider in _SECRET_REQUIRED and not has_stored_secret:
            errors["secret"] = f"{display} needs a secret."
        elif stored is None:
            new_secret = ""
        elif has_stored_secret and not may_redirect:
            assert stored is not None
            moved = []
            if stored.provider != provider:
                moved.append("provider")
            if stored.endpoint_url != endpoint_url:
                moved.append("endpoint")
            if moved:
                errors["secret"] = (
                    f"Changing the {' and '.join(moved)} changes where the stored secret is "
                    "sent: enter the secret again to confirm (or ask a superuser)."
                )

    if provider == Provider.BEDROCK:
        if region and not _AWS_REGION.fullmatch(region):
            errors["region"] = f"{region!r} is not an AWS region name, e.g. us-east-1."
        api_mode = api_mode or BedrockApiMode.INVOKE
        if api_mode not in BedrockApiMode.values:
            errors["api_mode"] = f"Unknown mode {api_mode!r}; choose converse or invoke."
    else:
        for field_name, value in (
            ("region", region),
            ("api_mode", api_mode),
            ("fallback_model", fallback_model),
        ):
            if value:
                errors[field_name] = (
                    f"Only Bedrock credentials have a {field_name.replace('_', ' ')}; leave it "
                    "empty."
                )
    if errors:
        raise CredentialInvalid(errors)
    return CredentialFields(
        provider=provider,
        name=name,
        secret=new_secret,
        region=region,
        api_mode=api_mode,
        endpoint_url=endpoint_url,
        fallback_model=fallback_model,
        label=label,
    )


def _secret_values(secret: str) -> dict[str, str]:
    if not secret:
        return {"secret_ciphertext": "", "secret_hint": ""}
    return {"secret_ciphertext": encrypt_secret(secret), "secret_hint": secret_hint(secret)}


@dataclass(frozen=True)
class PoolFields:
    """A pool member's settings: its weight and its own limits (None: no limit)."""

    weight: int = 1
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_concurrency: int | None = None

    def values(self) -> dict[str, int | None]:
        return {
            "weight": self.weight,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "max_concurrency": self.max_concurrency,
        }


def pool_fields_clean(
    *,
    weight: int,
    rpm_limit: int | None,
    tpm_limit: int | None,
    max_concurrency: int | None,
    others: list[ProviderCredential],
    enabled: bool = True,
) -> PoolFields:
    """Check a pool member's settings; ``others`` are the other members of its pool. Raises
    CredentialInvalid naming each field. A pool must keep one enabled member with a weight
    above 0: a pool of standbys only would never be used in turn."""
    errors: dict[str, str] = {}
    if not 0 <= weight <= MAX_WEIGHT:
        errors["weight"] = f"The weight must be between 0 and {MAX_WEIGHT}."
    for field_name, value, limit in (
        ("rpm_limit", rpm_limit, MAX_LIMIT),
        ("tpm_limit", tpm_limit, MAX_LIMIT),
        ("max_concurrency", max_concurrency, MAX_CONCURRENCY),
    ):
        if value is not None and not 1 <= value <= limit:
            errors[field_name] = (
                f"The {field_name.replace('_', ' ')} must be between 1 and {limit} "
                "(leave it empty for no limit)."
            )
    if "weight" not in errors and weight == 0:
        weighted = [other for other in others if other.enabled and other.weight > 0]
        if not weighted and (enabled or not any(other.enabled for other in others)):
            errors["weight"] = (
                "A weight of 0 makes a standby, used only when a weighted member is unavailable; "
                + (
                    "this pool has no other member, so the credential would never be used."
                    if not others
                    else "no other enabled member of this pool has a weight above 0."
                )
            )
    if errors:
        raise CredentialInvalid(errors)
    return PoolFields(
        weight=weight,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        max_concurrency=max_concurrency,
    )


def provider_credential_set(
    *,
    provider: str,
    secret: str = "",
    user: User | None = None,
    access_key: AccessKey | None = None,
    name: str = "",
    region: str = "",
    api_mode: str = "",
    endpoint_url: str = "",
    label: str = "",
    fallback_model: str = "",
    weight: int = 1,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrency: int | None = None,
    add: bool = False,
) -> tuple[ProviderCredential, bool]:
    """Create or replace a credential of ``provider`` (and ``name``, for a generic server) for
    one scope. Returns (it, created).

    ``add``: always create one more, which joins that scope's pool. Otherwise the scope's only
    credential of this provider is replaced (everything, the secret included: a credential set
    without a secret has none afterwards), or one is created when there is none; a scope with a
    pool of several is refused, since which one to replace would be a guess."""
    if user is not None and access_key is not None:
        raise AccountsError("A credential is scoped to a user or to an access key, not both.")
    fields = provider_credential_clean(
        provider=provider,
        name=name,
        secret=secret,
        region=region,
        api_mode=api_mode,
        endpoint_url=endpoint_url,
        fallback_model=fallback_model,
        label=label,
    )
    values = {
        "region": fields.region,
        "api_mode": fields.api_mode,
        "endpoint_url": fields.endpoint_url,
        "label": fields.label,
        "fallback_model": fields.fallback_model,
        **_secret_values(fields.secret or ""),
        "updated_at": timezone.now(),
    }
    with transaction.atomic():
        same_scope = list(
            ProviderCredential.objects.select_for_update()
            .filter(provider=fields.provider, name=fields.name, user=user, access_key=access_key)
            .order_by("id")
        )
        if not add and len(same_scope) > 1:
            raise AccountsError(
                f"This scope has a pool of {len(same_scope)} {fields.provider} credentials "
                f"(#{', #'.join(str(c.pk) for c in same_scope)}): add another, or change one "
                "of them by its id."
            )
        replaced = None if add or not same_scope else same_scope[0]
        others = [c for c in same_scope if replaced is None or c.pk != replaced.pk]
        pool = pool_fields_clean(
            weight=weight,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            max_concurrency=max_concurrency,
            others=others,
        )
        values.update(pool.values())
        if replaced is None:
            credential = ProviderCredential.objects.create(
                provider=fields.provider,
                name=fields.name,
                user=user,
                access_key=access_key,
                **values,
            )
        else:
            for field_name, value in values.items():
                setattr(replaced, field_name, value)
            replaced.save(update_fields=list(values))
            credential = replaced
    _invalidate_on_commit()
    return credential, replaced is None


def provider_credential_update_pool(
    *,
    credential: ProviderCredential,
    weight: int | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrency: int | None = None,
    label: str | None = None,
    clear: frozenset[str] = frozenset(),
) -> None:
    """Change a pool member's settings (the management API). Arguments left None keep their
    value; a limit named in ``clear`` is removed."""
    with transaction.atomic():
        stored = ProviderCredential.objects.select_for_update().get(pk=credential.pk)
        current = {
            "rpm_limit": stored.rpm_limit,
            "tpm_limit": stored.tpm_limit,
            "max_concurrency": stored.max_concurrency,
        }
        given = {"rpm_limit": rpm_limit, "tpm_limit": tpm_limit, "max_concurrency": max_concurrency}
        limits = {
            name: None if name in clear else (value if value is not None else current[name])
            for name, value in given.items()
        }
        others = list(pool_members(stored).exclude(pk=stored.pk))
        pool = pool_fields_clean(
            weight=stored.weight if weight is None else weight,
            others=others,
            enabled=stored.enabled,
            **limits,
        )
        values: dict[str, object] = {**pool.values(), "updated_at": timezone.now()}
        if label is not None:
            _check_lengths(ProviderCredential, label=label.strip())
            values["label"] = label.strip()
        for field_name, value in values.items():
            setattr(stored, field_name, value)
            setattr(credential, field_name, value)
        stored.save(update_fields=list(values))
    _invalidate_on_commit()


def provider_credential_save(
    *, credential: ProviderCredential, secret: str | None, may_redirect: bool = False
) -> None:
    """Save an edited or new credential (admin form); a new ``secret`` replaces the stored one.
    A new credential in a scope that has one of its provider already joins that pool.

    ``may_redirect``: the editor may change where a stored secret is sent without entering it
    again (REDIRECT_PERMISSION).
    """
    if credential.user_id is not None and credential.access_key_id is not None:
        raise AccountsError("A credential is scoped to a user or to an access key, not both.")
    with transaction.atomic():
        stored = None
        if credential.pk is not None:
            stored = ProviderCredential.objects.select_for_update().filter(pk=credential.pk).first()
        fields = provider_credential_clean(
            provider=credential.provider,
            name=credential.name,
            secret=secret,
            region=credential.region,
            api_mode=credential.api_mode,
            endpoint_url=credential.endpoint_url,
            fallback_model=credential.fallback_model,
            label=credential.label,
            stored=stored,
            may_redirect=may_redirect,
        )
        for field_name in ("name", "region", "api_mode", "endpoint_url", "fallback_model", "label"):
            setattr(credential, field_name, getattr(fields, field_name))
        others = list(pool_members(credential).exclude(pk=credential.pk))
        pool_fields_clean(
            weight=credential.weight,
            rpm_limit=credential.rpm_limit,
            tpm_limit=credential.tpm_limit,
            max_concurrency=credential.max_concurrency,
            others=others,
            enabled=credential.enabled,
        )
        if fields.secret is not None:
            for field_name, value in _secret_values(fields.secret).items():
                setattr(credential, field_name, value)
        elif stored is not None:
            credential.secret_ciphertext = stored.secret_ciphertext
            credential.secret_hint = stored.secret_hint
        credential.updated_at = timezone.now()
        credential.save()
    _invalidate_on_commit()


def provider_credential_set_enabled(*, credential: ProviderCredential, enabled: bool) -> bool:
    """Enable or disable a credential; True when that changed anything. A disabled credential
    is skipped when a key's credentials are resolved (its pool's other members, or the next more
    general scope, apply). Enabling clears why the gateway had disabled it."""
    if credential.enabled == enabled:
        return False
    credential.enabled = enabled
    credential.updated_at = timezone.now()
    credential.disabled_reason = ""
    credential.disabled_at = None
    credential.save(update_fields=["enabled", "updated_at", "disabled_reason", "disabled_at"])
    _invalidate_on_commit()
    return True


# Prefixes of ``disabled_reason`` when the gateway disabled a credential itself: a quota one is
# probed now and then (and enabled again when the provider accepts it); an auth one waits for an
# admin, since a refused key does not come back by itself.
DISABLED_QUOTA = "quota exhausted"
DISABLED_AUTH = "key refused"


def provider_credential_disable_for_fault(*, credential_id: int, kind: str, detail: str) -> bool:
    """The gateway disables a credential the provider refused for good (``kind``: DISABLED_QUOTA
    or DISABLED_AUTH); True when it was enabled until now. The reason is kept for the admin."""
    reason = f"{kind}: {detail}"[: ProviderCredential._meta.get_field("disabled_reason").max_length]
    now = timezone.now()
    changed = ProviderCredential.objects.filter(pk=credential_id, enabled=True).update(
        enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now
    )
    # Even when it was disabled already: the reporting process still had it in a pool, so its
    # cached metadata predates the change.
    _invalidate_on_commit()
    return bool(changed)


def quota_disabled_credentials() -> QuerySet[ProviderCredential]:
    """Credentials the gateway disabled for an exhausted quota (what the probe retries)."""
    return ProviderCredential.objects.filter(
        enabled=False, disabled_reason__startswith=DISABLED_QUOTA + ":"
    ).order_by("disabled_at")


def credential_pool_set_strategy(*, provider: str, name: str = "", strategy: str) -> CredentialPool:
    """Set how the pools of ``provider`` (and ``name``) pick their members, in every scope."""
    errors: dict[str, str] = {}
    if provider not in Provider.values:
        errors["provider"] = f"Unknown provider {provider!r}."
    if strategy not in PoolStrategy.values:
        choices = ", ".join(PoolStrategy.values)
        errors["strategy"] = f"Unknown strategy {strategy!r}; one of {choices}."
    if name and provider != Provider.GENERIC:
        errors["name"] = "Only generic servers have a name; leave it empty."
    if errors:
        raise CredentialInvalid(errors)
    pool, _ = CredentialPool.objects.update_or_create(
        provider=provider,
        name=name,
        defaults={"strategy": strategy, "updated_at": timezone.now()},
    )
    _invalidate_on_commit()
    return pool


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
    # Credentials without a secret (Ollama, keyless generic servers) have nothing to rotate.
    with_secret = ProviderCredential.objects.exclude(secret_ciphertext="")
    for credential_id in with_secret.values_list("pk", flat=True).order_by("pk"):
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
