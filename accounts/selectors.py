"""Reads of accounts data: key lookups, credential resolution (most specific scope wins) and the
key cache's generation counter."""

from __future__ import annotations

import logging

from django.db.models import Q

from accounts.crypto import SecretDecryptionError, decrypt_secret
from accounts.metadata import KeyMetadata, ResolvedCredential
from accounts.models import AccessKey, KeyCacheGeneration, ProviderCredential, User

logger = logging.getLogger(__name__)


def user_get_by_email(email: str) -> User | None:
    return User.objects.filter(email__iexact=email.strip()).first()


def access_key_get_by_prefix(prefix: str) -> AccessKey | None:
    return (
        AccessKey.objects.select_related("user")
        .filter(prefix=prefix.strip(), deleted_at__isnull=True)
        .first()
    )


def _scope_rank(credential: ProviderCredential) -> int:
    if credential.access_key_id is not None:
        return 2
    if credential.user_id is not None:
        return 1
    return 0


def credentials_for_key(*, user_id: int, access_key_id: int) -> dict[str, ProviderCredential]:
    """For each provider key (the provider, or a generic server's name), the most specific
    credential that applies to this key (one query)."""
    candidates = ProviderCredential.objects.select_related("user", "access_key").filter(
        Q(access_key_id=access_key_id)
        | Q(user_id=user_id)
        | Q(user__isnull=True, access_key__isnull=True),
        enabled=True,
    )
    chosen: dict[str, ProviderCredential] = {}
    for credential in candidates:
        current = chosen.get(credential.provider_key)
        if current is None or _scope_rank(credential) > _scope_rank(current):
            chosen[credential.provider_key] = credential
    return chosen


def provider_credential_decrypts(credential: ProviderCredential) -> bool:
    """Whether the configured encryption keys decrypt this credential's secret (a credential
    without a secret has nothing to decrypt)."""
    if not credential.secret_ciphertext:
        return True
    try:
        decrypt_secret(credential.secret_ciphertext)
    except SecretDecryptionError:
        return False
    return True


def resolve_credential(credential: ProviderCredential) -> ResolvedCredential:
    """Decrypt a credential for use. A secret no configured key decrypts yields ``error``."""
    secret, error = "", ""
    try:
        if credential.secret_ciphertext:
            secret = decrypt_secret(credential.secret_ciphertext)
    except SecretDecryptionError as exc:
        error = f"provider credential #{credential.id} ({credential}) cannot be decrypted: {exc}"
        logger.error("%s", error)
    return ResolvedCredential(
        id=credential.id,
        provider=credential.provider,
        name=credential.name,
        scope=credential.scope_description,
        region=credential.region,
        api_mode=credential.api_mode,
        endpoint_url=credential.endpoint_url,
        fallback_model=credential.fallback_model,
        secret=secret,
        error=error,
    )


def key_metadata_load(prefix: str) -> KeyMetadata | None:
    """Everything the proxy needs about a key, in two queries; None when no such key."""
    key = AccessKey.objects.select_related("user").filter(prefix=prefix).first()
    if key is None:
        return None
    credentials = credentials_for_key(user_id=key.user_id, access_key_id=key.id)
    return KeyMetadata(
        key_id=key.id,
        user_id=key.user_id,
        prefix=key.prefix,
        key_hash=key.key_hash,
        status=key.status,
        expires_at=key.expires_at,
        grace_ends_at=key.grace_ends_at,
        deleted=key.deleted_at is not None,
        # A deactivated user's keys stop working with the user (KeyMetadata.usable_at).
        user_active=key.user.is_active,
        credentials={
            provider_key: resolve_credential(credential)
            for provider_key, credential in credentials.items()
        },
    )


def configured_provider_keys(metadata: KeyMetadata) -> list[str]:
    """The provider keys this key has a usable credential for, sorted (built-in providers by
    name, generic servers by theirs)."""
    return sorted(key for key, credential in metadata.credentials.items() if not credential.error)


def key_cache_generation() -> int:
    """The key cache's generation in the database (0 before the first invalidation)."""
    value = KeyCacheGeneration.objects.filter(pk=1).values_list("value", flat=True).first()
    return value or 0
