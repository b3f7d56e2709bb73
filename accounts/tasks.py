"""Celery tasks of the accounts app (scheduled in gateway_project.celery). Thin: the work is in
accounts.services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

import gateway_project.celery  # noqa: F401 - the app these tasks are sent through
from accounts.services import access_keys_expire_rotated

logger = logging.getLogger(__name__)


@shared_task(
    name="accounts.tasks.revoke_expired_rotated_keys",
    soft_time_limit=60,
    time_limit=90,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    default_retry_delay=60,
)
def revoke_expired_rotated_keys() -> list[str]:
    """Revoke rotated keys whose grace period has ended (their cached metadata is dropped)."""
    prefixes = access_keys_expire_rotated()
    if prefixes:
        logger.info("revoked %d rotated keys after their grace: %s", len(prefixes), prefixes)
    return prefixes
