"""Reads of accounts data: key lookups, credential resolution (most specific scope wins) and the
key cache's generation counter."""

from __future__ import annotations

import logging
import time

from django.db import connection
from django.db.models import Q, QuerySet

from accounts.crypto import SecretDecryptionError, decrypt_secret
from accounts.metadata import KeyMetadata, ResolvedCredential
from accounts.models import (
    AccessKey,
    CredentialPool,
    KeyCacheGeneration,
    ProviderCredential,
    User,
)

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


def pools_for_key(*, user_id: int, access_key_id: int) -> dict[str, list[ProviderCredential]]:
    """For each provider key (the provider, or a generic server's name), every enabled
    credential of the most specific scope that has one for this key: the key's pool for that
    provider, in id order (one query)."""
    candidates = (
        ProviderCredential.objects.select_related("user", "access_key")
        .filter(
            Q(access_key_id=access_key_id)
            | Q(user_id=user_id)
            | Q(user__isnull=True, access_key__isnull=True),
            enabled=True,
        )
        .order_by("id")
    )
    pools: dict[str, list[ProviderCredential]] = {}
    for credential in candidates:
        members = pools.get(credential.provider_key)
        if members is None or _scope_rank(credential) > _scope_rank(members[0]):
            pools[credential.provider_key] = [credential]
        elif _scope_rank(credential) == _scope_rank(members[0]):
            members.append(credential)
    return pools


def credentials_for_key(*, user_id: int, access_key_id: int) -> dict[str, ProviderCredential]:
    """For each provider key (the provider, or a generic server's name), the most specific
    credential that applies to this key (one query); of a pool, its first member."""
    pools = pools_for_key(user_id=user_id, access_key_id=access_key_id)
    return {provider_key: members[0] for provider_key, members in pools.items()}


def pool_strategies() -> dict[str, str]:
    """The strategy of every pool that has one set (the others are round robin)."""
    return {
        pool.provider_key: pool.strategy
        for pool in CredentialPool.objects.only("provider", "name", "strategy")
    }


def credential_pools(
    *, provider: str | None = None
) -> list[tuple[tuple[str, str, int | None, int | None], list[ProviderCredential]]]:
    """Every pool: ``((provider, name, user id, access key id), members in id order)``, one
    per provider (and name) and scope, members enabled or not (one query)."""
    credentials = ProviderCredential.objects.select_related("user", "access_key").order_by(
        "provider", "name", "user_id", "access_key_id", "id"
    )
    if provider is not None:
        credentials = credentials.filter(provider=provider)
    pools: dict[tuple[str, str, int | None, int | None], list[ProviderCredential]] = {}
    for credential in credentials:
        key = (credential.provider, credential.name, credential.user_id, credential.access_key_id)
        pools.setdefault(key, []).append(credential)
    return list(pools.items())


def pool_members(credential: ProviderCredential) -> QuerySet[ProviderCredential]:
    """The credentials in the same pool as ``credential``: same provider (and name) and scope,
    itself included, enabled or not."""
    user = Q(user__isnull=True) if credential.user_id is None else Q(user_id=credential.user_id)
    key = (
        Q(access_key__isnull=True)
        if credential.access_key_id is None
        else Q(access_key_id=credential.access_key_id)
    )
    return ProviderCredential.objects.filter(
        user, key, provider=credential.provider, name=credential.name
    ).order_by("id")


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
        weight=credential.weight,
        rpm_limit=credential.rpm_limit,
        tpm_limit=credential.tpm_limit,
        max_concurrency=credential.max_concurrency,
        label=credential.label,
    )


def key_metadata_load(prefix: str) -> KeyMetadata | None:
    """Everything the proxy needs about a key, in three queries; None when no such key.

    A pool keeps its members that decrypt; ``credentials`` has the first member of each (or,
    when none decrypts, the first with its error, so that the plan can say why)."""
    # Taken before reading: a credential disabled while this runs counts as disabled after it.
    loaded_at = time.time()
    key = AccessKey.objects.select_related("user").filter(prefix=prefix).first()
    if key is None:
        return None
    pools = {
        provider_key: [resolve_credential(credential) for credential in members]
        for provider_key, members in pools_for_key(
            user_id=key.user_id, access_key_id=key.id
        ).items()
    }
    usable = {
        provider_key: tuple(member for member in members if not member.error)
        for provider_key, members in pools.items()
    }
    strategies = pool_strategies() if any(len(members) > 1 for members in usable.values()) else {}
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
            provider_key: (usable[provider_key] or members)[0]
            for provider_key, members in pools.items()
        },
        pools={provider_key: members for provider_key, members in usable.items() if members},
        pool_strategies=strategies,
        loaded_at=loaded_at,
    )


def configured_provider_keys(metadata: KeyMetadata) -> list[str]:
    """The provider keys this key has a usable credential for, sorted (built-in providers by
    name, generic servers by theirs)."""
    return sorted(key for key, credential in metadata.credentials.items() if not credential.error)


def key_cache_generation() -> int:
    """The key cache's generation in the database (0 before the first invalidation).

    One plain query, not a queryset: every worker runs this once a second on a thread that
    shares the event loop's GIL, and the ORM's query building held it for longer than the
    database took to answer (bench/proxy/stream_start.py)."""
    table = connection.ops.quote_name(KeyCacheGeneration._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value FROM {table} WHERE id = 1")  # noqa: S608 - the model's table
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0
