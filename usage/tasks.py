"""Celery tasks of the usage app: the minutely rollup and the daily prune (scheduled in
gateway_project.celery). Thin: the work is in usage.rollup."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

import gateway_project.celery  # noqa: F401 - the app these tasks are sent through
from usage.locks import LockBusy
from usage.rollup import usage_events_prune, usage_rollup

logger = logging.getLogger(__name__)

# Beat sends the rollup every minute: it stops taking new batches after this many seconds so
# it ends well within its time limit, and the next run goes on from there.
ROLLUP_TIME_BUDGET_SECONDS = 30.0


@shared_task(
    name="usage.tasks.rollup_usage",
    soft_time_limit=50,
    time_limit=55,
    # A database blip: try again shortly; the next minute's run would catch up anyway.
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=2,
    default_retry_delay=10,
)
def rollup_usage() -> dict[str, Any]:
    """Add new usage events to the aggregates. Idempotent; skips if another rollup runs."""
    try:
        report = usage_rollup(time_budget=ROLLUP_TIME_BUDGET_SECONDS)
    except LockBusy:
        logger.info("usage rollup: another rollup or a rebuild is running; skipped")
        return {"skipped": "busy"}
    return {
        "events": report.events,
        "batches": report.batches,
        "complete": report.complete,
        "set_aside": len(report.set_aside),
    }


@shared_task(
    bind=True,
    name="usage.tasks.prune_usage_events",
    soft_time_limit=1800,
    time_limit=1860,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    default_retry_delay=300,
)
def prune_usage_events(self: Task) -> dict[str, Any]:
    """Delete rolled-up events older than GATEWAY_USAGE_RETENTION_DAYS."""
    retention_days = settings.GATEWAY_USAGE_RETENTION_DAYS
    try:
        report = usage_events_prune(retention_days=retention_days)
    except LockBusy as exc:  # a rebuild is running: come back later
        raise self.retry(exc=exc, countdown=600) from exc
    return {
        "deleted": report.deleted,
        "kept_pending": report.kept_pending,
        "cutoff": report.cutoff.isoformat(),
    }
