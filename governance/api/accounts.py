"""Users, access keys and provider credentials, changed through accounts.services (the same
path as the admin and the commands, with its one invalidation of the proxy's caches).

A new or rotated key's plaintext is in the creating response only. Credential secrets are
write-only: lists show a fingerprint (the last characters) and whether a secret is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import StringConstraints

from accounts.models import (
    MAX_CONCURRENCY,
    MAX_LIMIT,
    MAX_WEIGHT,
    AccessKey,
    ProviderCredential,
    User,
)
from accounts.services import (
    AccountsError,
    access_key_create,
    access_key_revoke,
    access_key_rotate,
    provider_credential_delete,
    provider_credential_save,
    provider_credential_set,
    provider_credential_set_enabled,
    provider_credential_update_pool,
    user_get_or_create,
    user_save,
    user_set_active,
)
from governance.api.auth import AUTH, require_write
from governance.api.errors import MAX_ID, ApiError, ErrorOut, get_or_404

# Text without NUL (PostgreSQL refuses it in text columns) and of bounded length.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=200)]
Secret = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=10_000)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]

users_router = Router(auth=AUTH, tags=["users"])
keys_router = Router(auth=AUTH, tags=["access keys"])
credentials_router = Router(auth=AUTH, tags=["credentials"])

ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut}


class Page(Schema):
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10**9)


# --- Users --------------------------------------------------------------------------------------


class UserOut(Schema):
    id: int
    email: str
    full_name: str
    is_active: bool
    is_staff: bool
    date_joined: datetime


class UserIn(Schema):
    email: Text
    full_name: Text = ""


class UserFilter(Page):
    active: bool | None = None


def _user(user: User) -> dict[str, Any]:
    return {
        "id": user.pk,
        "email": user.email,
        "full_name": user.full_name,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "date_joined": user.date_joined,
    }


@users_router.get("", response={200: list[UserOut], **ERRORS}, summary="List users")
def users_list(request: HttpRequest, params: Query[UserFilter]) -> Any:
    users = User.objects.order_by("id")
    if params.active is not None:
        users = users.filter(is_active=params.active)
    return [_user(user) for user in users[params.offset : params.offset + params.limit]]


@users_router.post("", response={201: UserOut, **ERRORS}, summary="Create a user")
def users_create(request: HttpRequest, payload: UserIn) -> Any:
    require_write(request, "accounts.add_user")
    try:
        user, created = user_get_or_create(email=payload.email, create=True)
    except AccountsError as exc:
        raise ApiError(400, str(exc), "email") from exc
    if not created:
        raise ApiError(400, f"A user with email {payload.email!r} exists already.", "email")
    if payload.full_name:
        user.full_name = payload.full_name
        user_save(user=user)
    return Status(201, _user(user))


@users_router.get("/{user_id}", response={200: UserOut, **ERRORS}, summary="One user")
def users_get(request: HttpRequest, user_id: int) -> Any:
    return _user(get_or_404(User, user_id, "user"))


@users_router.post(
    "/{user_id}/deactivate", response={200: UserOut, **ERRORS}, summary="Deactivate a user"
)
def users_deactivate(request: HttpRequest, user_id: int) -> Any:
    """The user's keys stop working with them, in every gateway process within a second."""
    require_write(request, "accounts.change_user")
    user = get_or_404(User, user_id, "user")
    user_set_active(user=user, active=False)
    return _user(user)


@users_router.post(
    "/{user_id}/activate", response={200: UserOut, **ERRORS}, summary="Activate a user"
)
def users_activate(request: HttpRequest, user_id: int) -> Any:
    require_write(request, "accounts.change_user")
    user = get_or_404(User, user_id, "user")
    user_set_active(user=user, active=True)
    return _user(user)


# --- Access keys --------------------------------------------------------------------------------


class KeyOut(Schema):
    id: int
    user_id: int
    prefix: str
    label: str
    status: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    grace_ends_at: datetime | None
    revoked_at: datetime | None


class KeyCreatedOut(Schema):
    key: KeyOut
    plaintext: str = Field(description="The whole key; shown in this response only.")


class KeyIn(Schema):
    user_id: Id
    label: Text = ""
    expires_at: datetime | None = None


class KeyFilter(Page):
    user_id: int | None = Field(None, ge=1, le=MAX_ID)
    status: str | None = Field(None, description="active, rotated or revoked")


def _key(key: AccessKey) -> dict[str, Any]:
    return {
        "id": key.pk,
        "user_id": key.user_id,
        "prefix": key.prefix,
        "label": key.label,
        "status": key.status,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "grace_ends_at": key.grace_ends_at,
        "revoked_at": key.revoked_at,
    }


@keys_router.get("", response={200: list[KeyOut], **ERRORS}, summary="List access keys")
def keys_list(request: HttpRequest, params: Query[KeyFilter]) -> Any:
    keys = AccessKey.objects.filter(deleted_at__isnull=True).order_by("id")
    if params.user_id is not None:
        keys = keys.filter(user_id=params.user_id)
    if params.status is not None:
        if params.status not in AccessKey.Status.values:
            raise ApiError(400, "status: one of active, rotated, revoked.", "status")
        keys = keys.filter(status=params.status)
    return [_key(key) for key in keys[params.offset : params.offset + params.limit]]


@keys_router.post("", response={201: KeyCreatedOut, **ERRORS}, summary="Create an access key")
def keys_create(request: HttpRequest, payload: KeyIn) -> Any:
    require_write(request, "accounts.add_accesskey")
    user = User.objects.filter(pk=payload.user_id).first()
    if user is None:
        raise ApiError(400, f"No user {payload.user_id}.", "user_id")
    try:
        key, plaintext = access_key_create(
            user=user, label=payload.label, expires_at=payload.expires_at
        )
    except AccountsError as exc:
        param = "expires_at" if "expiry" in str(exc) else "label"
        raise ApiError(400, str(exc), param) from exc
    return Status(201, {"key": _key(key), "plaintext": plaintext})


@keys_router.get("/{key_id}", response={200: KeyOut, **ERRORS}, summary="One access key")
def keys_get(request: HttpRequest, key_id: int) -> Any:
    return _key(get_or_404(AccessKey, key_id, "access key"))


@keys_router.post(
    "/{key_id}/rotate", response={201: KeyCreatedOut, **ERRORS}, summary="Rotate an access key"
)
def keys_rotate(request: HttpRequest, key_id: int) -> Any:
    """A new key replaces this one, which keeps working for the rotation grace period."""
    require_write(request, "accounts.change_accesskey")
    key = get_or_404(AccessKey, key_id, "access key")
    try:
        new, plaintext = access_key_rotate(access_key=key)
    except AccountsError as exc:
        raise ApiError(400, str(exc), "id") from exc
    return Status(201, {"key": _key(new), "plaintext": plaintext})


@keys_router.post(
    "/{key_id}/revoke", response={200: KeyOut, **ERRORS}, summary="Revoke an access key"
)
def keys_revoke(request: HttpRequest, key_id: int) -> Any:
    require_write(request, "accounts.change_accesskey")
    key = get_or_404(AccessKey, key_id, "access key")
    access_key_revoke(access_key=key)
    return _key(key)


# --- Provider credentials -----------------------------------------------------------------------


class CredentialOut(Schema):
    id: int
    provider: str
    name: str
    scope: str = Field(description="global, user or access_key")
    user_id: int | None
    access_key_id: int | None
    label: str
    region: str
    api_mode: str
    endpoint_url: str
    fallback_model: str
    has_secret: bool
    enabled: bool
    fingerprint: str = Field(description="The secret's last characters; never the secret.")
    weight: int = Field(description="Share of its pool's requests (0: a standby).")
    rpm_limit: int | None
    tpm_limit: int | None
    max_concurrency: int | None
    disabled_reason: str = Field(
        description="Why the gateway disabled it (quota exhausted, key refused); empty otherwise."
    )
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CredentialIn(Schema):
    provider: Text
    secret: Secret = Field("", description="Write-only.")
    user_id: int | None = Field(None, ge=1, le=MAX_ID)
    access_key_id: int | None = Field(None, ge=1, le=MAX_ID)
    name: Text = ""
    region: Text = ""
    api_mode: Text = ""
    endpoint_url: Text = ""
    label: Text = ""
    fallback_model: Text = ""
    weight: int = Field(1, ge=0, le=MAX_WEIGHT)
    rpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    tpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    max_concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY)


class CredentialPatch(Schema):
    """A pool member's settings; a field left out keeps its value, a limit set to null is
    removed."""

    label: Text | None = None
    weight: int | None = Field(None, ge=0, le=MAX_WEIGHT)
    rpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    tpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    max_concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY)


class SecretIn(Schema):
    secret: Secret


class CredentialFilter(Page):
    provider: str | None = None


def _credential(credential: ProviderCredential) -> dict[str, Any]:
    scope = (
        "access_key"
        if credential.access_key_id is not None
        else "user"
        if credential.user_id is not None
        else "global"
    )
    return {
        "id": credential.pk,
        "provider": credential.provider,
        "name": credential.name,
        "scope": scope,
        "user_id": credential.user_id,
        "access_key_id": credential.access_key_id,
        "label": credential.label,
        "region": credential.region,
        "api_mode": credential.api_mode,
        "endpoint_url": credential.endpoint_url,
        "fallback_model": credential.fallback_model,
        "has_secret": bool(credential.secret_ciphertext),
        "enabled": credential.enabled,
        "fingerprint": credential.fingerprint,
        "weight": credential.weight,
        "rpm_limit": credential.rpm_limit,
        "tpm_limit": credential.tpm_limit,
        "max_concurrency": credential.max_concurrency,
        "disabled_reason": credential.disabled_reason,
        "disabled_at": credential.disabled_at,
        "created_at": credential.created_at,
        "updated_at": credential.updated_at,
    }


@credentials_router.get(
    "", response={200: list[CredentialOut], **ERRORS}, summary="List provider credentials"
)
def credentials_list(request: HttpRequest, params: Query[CredentialFilter]) -> Any:
    credentials = ProviderCredential.objects.order_by("id")
    if params.provider is not None:
        credentials = credentials.filter(provider=params.provider[:16])
    return [_credential(c) for c in credentials[params.offset : params.offset + params.limit]]


@credentials_router.post(
    "",
    response={201: CredentialOut, **ERRORS},
    summary="Create a provider credential (a second one of a provider and scope joins its pool)",
)
def credentials_create(request: HttpRequest, payload: CredentialIn) -> Any:
    """Always creates one more credential: several of one provider (and name) and scope form
    that scope's key pool. Replace a credential's secret with ``PUT /{id}/secret`` and change
    its pool settings with ``PATCH /{id}``."""
    require_write(request, "accounts.add_providercredential")
    user = access_key = None
    if payload.user_id is not None:
        user = User.objects.filter(pk=payload.user_id).first()
        if user is None:
            raise ApiError(400, f"No user {payload.user_id}.", "user_id")
    if payload.access_key_id is not None:
        access_key = AccessKey.objects.filter(pk=payload.access_key_id).first()
        if access_key is None:
            raise ApiError(400, f"No access key {payload.access_key_id}.", "access_key_id")
    if user is not None and access_key is not None:
        raise ApiError(400, "A credential is scoped to a user or a key, not both.", "user_id")
    credential, _ = provider_credential_set(
        provider=payload.provider,
        secret=payload.secret,
        user=user,
        access_key=access_key,
        name=payload.name,
        region=payload.region,
        api_mode=payload.api_mode,
        endpoint_url=payload.endpoint_url,
        label=payload.label,
        fallback_model=payload.fallback_model,
        weight=payload.weight,
        rpm_limit=payload.rpm_limit,
        tpm_limit=payload.tpm_limit,
        max_concurrency=payload.max_concurrency,
        add=True,
    )
    return Status(201, _credential(credential))


@credentials_router.patch(
    "/{credential_id}",
    response={200: CredentialOut, **ERRORS},
    summary="Change a credential's label, weight or limits",
)
def credentials_update(request: HttpRequest, credential_id: int, payload: CredentialPatch) -> Any:
    require_write(request, "accounts.change_providercredential")
    credential = get_or_404(ProviderCredential, credential_id, "credential")
    given = payload.model_fields_set
    limits = ("rpm_limit", "tpm_limit", "max_concurrency")
    provider_credential_update_pool(
        credential=credential,
        label=payload.label,
        weight=payload.weight,
        rpm_limit=payload.rpm_limit,
        tpm_limit=payload.tpm_limit,
        max_concurrency=payload.max_concurrency,
        clear=frozenset(
            name for name in limits if name in given and getattr(payload, name) is None
        ),
    )
    return _credential(credential)


@credentials_router.get(
    "/{credential_id}", response={200: CredentialOut, **ERRORS}, summary="One credential"
)
def credentials_get(request: HttpRequest, credential_id: int) -> Any:
    return _credential(get_or_404(ProviderCredential, credential_id, "credential"))


@credentials_router.put(
    "/{credential_id}/secret",
    response={200: CredentialOut, **ERRORS},
    summary="Replace a credential's secret",
)
def credentials_replace_secret(request: HttpRequest, credential_id: int, payload: SecretIn) -> Any:
    require_write(request, "accounts.change_providercredential")
    credential = get_or_404(ProviderCredential, credential_id, "credential")
    if not payload.secret.strip():
        raise ApiError(400, "The secret is empty.", "secret")
    provider_credential_save(credential=credential, secret=payload.secret)
    return _credential(credential)


@credentials_router.post(
    "/{credential_id}/enable", response={200: CredentialOut, **ERRORS}, summary="Enable"
)
def credentials_enable(request: HttpRequest, credential_id: int) -> Any:
    require_write(request, "accounts.change_providercredential")
    credential = get_or_404(ProviderCredential, credential_id, "credential")
    provider_credential_set_enabled(credential=credential, enabled=True)
    return _credential(credential)


@credentials_router.post(
    "/{credential_id}/disable",
    response={200: CredentialOut, **ERRORS},
    summary="Disable (the next more general credential applies, or none)",
)
def credentials_disable(request: HttpRequest, credential_id: int) -> Any:
    require_write(request, "accounts.change_providercredential")
    credential = get_or_404(ProviderCredential, credential_id, "credential")
    provider_credential_set_enabled(credential=credential, enabled=False)
    return _credential(credential)


@credentials_router.delete(
    "/{credential_id}", response={204: None, **ERRORS}, summary="Delete a credential"
)
def credentials_delete(request: HttpRequest, credential_id: int) -> Any:
    require_write(request, "accounts.delete_providercredential")
    provider_credential_delete(
        credential=get_or_404(ProviderCredential, credential_id, "credential")
    )
    return Status(204, None)
