"""Celery tasks of the request log: the hourly prune (scheduled in gateway_project.celery).
Thin: the work is in requestlog.services."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

import gateway_project.celery  # noqa: F401 - the app these tasks are sent through
from requestlog.services import request_logs_maintain
from usage.locks import LockBusy

logger = logging.getLogger(__name__)


@shared_task(
    name="requestlog.tasks.prune_request_logs",
    soft_time_limit=1800,
    time_limit=1860,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    default_retry_delay=300,
)
def prune_request_logs() -> dict[str, Any]:
    """Delete bodies and media past their retention, and logs past usage's."""
    try:
        report = request_logs_maintain()
    except LockBusy:
        logger.info("request log prune: another prune is running; skipped")
        return {"skipped": "busy"}
    return {"bodies": report.bodies, "media": report.media, "logs": report.logs}
