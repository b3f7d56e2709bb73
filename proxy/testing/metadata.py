"""Builders of `accounts.metadata` values for unit tests of planning and routing, which need what
the key cache would hand the proxy without a database behind it."""

from __future__ import annotations

from typing import Any

from accounts.metadata import KeyMetadata, ResolvedCredential


def resolved_credential(
    provider: str, *, name: str = "", error: str = "", **fields: Any
) -> ResolvedCredential:
    """A usable credential of `provider` (a generic one when `name` is set); `fields` override
    the defaults, `error` makes it unusable."""
    values: dict[str, Any] = {
        # Distinct per provider and name, as database ids would be.
        "id": abs(hash((provider, name))) % 10_000,
        "provider": provider,
        "scope": "global",
        "region": "us-east-1",
        "api_mode": "invoke",
        "endpoint_url": "",
        "fallback_model": "",
        "secret": f"secret-{provider}-{name}",
        "error": error,
        "name": name,
    }
    values.update(fields)
    return ResolvedCredential(**values)


def key_metadata(
    *credentials: ResolvedCredential, key_id: int = 1, user_id: int = 1, prefix: str = "gw_test"
) -> KeyMetadata:
    """An active access key that has these credentials (each under its provider key)."""
    return KeyMetadata(
        key_id=key_id,
        user_id=user_id,
        prefix=prefix,
        key_hash="x",
        status="active",
        expires_at=None,
        grace_ends_at=None,
        deleted=False,
        credentials={credential.provider_key: credential for credential in credentials},
    )
