"""Re-enable quota-disabled credentials that the provider accepts again.

The gateway disables a credential whose quota or credit ran out (``flow``); a beat task asks the
provider for its model list with each such credential (``proxy.catalog.credential_check``, the
admin's "Test" action) and enables the ones that get an answer. Keys the provider refused (401,
403) are never probed: they wait for an admin.

A model list is a cheap check, not proof that credit is back: some providers list models for an
account out of credit (OpenAI does). Such a key is enabled, fails its first request with the
same quota error and is disabled again, once per probe period, without the client noticing (the
pool's next member answers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from asgiref.sync import async_to_sync

from accounts.selectors import resolve_credential
from accounts.services import provider_credential_set_enabled, quota_disabled_credentials
from proxy.catalog import credential_check

logger = logging.getLogger(__name__)

# Credentials probed per run at most (each check may take seconds).
MAX_PROBES = 20


@dataclass(frozen=True)
class ProbeResult:
    credential_id: int
    enabled: bool
    detail: str


def probe_quota_disabled() -> list[ProbeResult]:
    """Check every quota-disabled credential (the longest disabled first); enable those the
    provider answers."""
    results: list[ProbeResult] = []
    for credential in quota_disabled_credentials().select_related("user", "access_key")[
        :MAX_PROBES
    ]:
        worked, detail = async_to_sync(credential_check)(resolve_credential(credential))
        if worked:
            provider_credential_set_enabled(credential=credential, enabled=True)
            logger.info("credential #%s enabled again after a probe: %s", credential.pk, detail)
        results.append(ProbeResult(credential.pk, worked, detail))
    return results
