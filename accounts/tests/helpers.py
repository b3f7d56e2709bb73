"""Helpers of the accounts tests."""

from __future__ import annotations

import hmac
from datetime import datetime

from django.utils import timezone

from accounts.crypto import access_key_prefix, hash_access_key
from accounts.models import AccessKey
from accounts.selectors import key_metadata_load


def verified_key(*, plaintext: str, now: datetime | None = None) -> AccessKey | None:
    """The key a plaintext belongs to if the proxy would accept it at ``now``: the proxy's own
    load and checks (accounts.selectors.key_metadata_load, KeyMetadata.usable_at), without its
    cache."""
    prefix = access_key_prefix(plaintext)
    if prefix is None:
        return None
    metadata = key_metadata_load(prefix)
    if metadata is None or not hmac.compare_digest(metadata.key_hash, hash_access_key(plaintext)):
        return None
    if not metadata.usable_at(now or timezone.now()):
        return None
    return AccessKey.objects.get(pk=metadata.key_id)
