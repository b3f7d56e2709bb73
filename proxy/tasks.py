"""Celery tasks of the proxy app (scheduled in gateway_project.celery). Thin: the work is in
proxy.pools.probe."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

import gateway_project.celery  # noqa: F401 - the app these tasks are sent through
from proxy.pools.probe import probe_quota_disabled


@shared_task(
    name="proxy.tasks.probe_quota_disabled_credentials",
    soft_time_limit=240,
    time_limit=300,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    default_retry_delay=60,
)
def probe_quota_disabled_credentials() -> list[int]:
    """Enable the quota-disabled credentials whose provider answers again; their ids."""
    return [result.credential_id for result in probe_quota_disabled() if result.enabled]
