"""The usage Celery tasks and the beat schedule."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from gateway_project.celery import app
from usage.locks import LockBusy, maintenance_lock
from usage.models import PendingUsageEvent, UsageEvent
from usage.rollup import PRUNE_LOCK, ROLLUP_LOCK, usage_rollup
from usage.tasks import prune_usage_events, rollup_usage
from usage.tests.factories import (
    event_fields,
    expected_aggregates,
    make_event,
    make_events,
    stored_aggregates,
)

pytestmark = pytest.mark.django_db


def test_rollup_task_is_idempotent():
    make_events(event_fields(occurred_at=timezone.now() - timedelta(minutes=m)) for m in range(4))
    assert rollup_usage() == {"events": 4, "batches": 1, "complete": True, "set_aside": 0}
    once = stored_aggregates()
    assert rollup_usage() == {"events": 0, "batches": 0, "complete": True, "set_aside": 0}
    assert stored_aggregates() == once == expected_aggregates(UsageEvent.objects.all())


def test_rollup_task_skips_while_another_rollup_runs():
    make_event()
    with maintenance_lock(ROLLUP_LOCK, ttl=60):
        assert rollup_usage() == {"skipped": "busy"}
    assert PendingUsageEvent.objects.count() == 1
    assert rollup_usage()["events"] == 1


def test_rollup_task_stops_at_its_time_budget(monkeypatch):
    monkeypatch.setattr("usage.tasks.ROLLUP_TIME_BUDGET_SECONDS", 0.0)
    monkeypatch.setattr("usage.tasks.usage_rollup", partial(usage_rollup, batch_size=2))
    make_events(event_fields() for _ in range(5))
    assert rollup_usage() == {"events": 2, "batches": 1, "complete": False, "set_aside": 0}


def test_prune_task_uses_the_retention_setting(settings):
    settings.GATEWAY_USAGE_RETENTION_DAYS = 30
    now = timezone.now()
    old = make_event(occurred_at=now - timedelta(days=40))
    kept = make_event(occurred_at=now - timedelta(days=20))
    usage_rollup()
    result = prune_usage_events()
    assert (result["deleted"], result["kept_pending"]) == (1, 0)
    assert set(UsageEvent.objects.values_list("pk", flat=True)) == {kept.pk}
    assert stored_aggregates() == expected_aggregates([old, kept])


def test_prune_task_keeps_events_not_rolled_up_yet(settings):
    settings.GATEWAY_USAGE_RETENTION_DAYS = 30
    make_event(occurred_at=timezone.now() - timedelta(days=40))
    assert prune_usage_events()["kept_pending"] == 1
    assert UsageEvent.objects.count() == 1


def test_prune_task_retries_later_during_a_rebuild(monkeypatch):
    retries: list[dict] = []

    def retry(**kwargs):
        retries.append(kwargs)
        return Retry("later", when=kwargs["countdown"])

    monkeypatch.setattr(prune_usage_events, "retry", retry)
    with maintenance_lock(PRUNE_LOCK, ttl=60), pytest.raises(Retry):
        prune_usage_events()
    assert retries[0]["countdown"] == 600
    assert isinstance(retries[0]["exc"], LockBusy)


def test_tasks_declare_limits_and_retry_policies():
    for task in (rollup_usage, prune_usage_events):
        assert task.soft_time_limit < task.time_limit
        assert task.max_retries >= 1
        assert task.autoretry_for
    assert rollup_usage.time_limit < 60  # ends before the next minute's run


def test_beat_schedule_entries_expire_before_their_next_run():
    schedule = app.conf.beat_schedule
    assert {entry["task"] for entry in schedule.values()} == {
        "usage.tasks.rollup_usage",
        "usage.tasks.prune_usage_events",
        "accounts.tasks.revoke_expired_rotated_keys",
        "requestlog.tasks.prune_request_logs",
        "proxy.tasks.probe_quota_disabled_credentials",
    }
    periods = {entry["task"]: entry["schedule"] for entry in schedule.values()}
    assert periods["usage.tasks.rollup_usage"] == timedelta(minutes=1)
    assert periods["accounts.tasks.revoke_expired_rotated_keys"] == timedelta(hours=1)
    assert periods["usage.tasks.prune_usage_events"] == timedelta(days=1)
    assert periods["requestlog.tasks.prune_request_logs"] == timedelta(hours=1)
    assert periods["proxy.tasks.probe_quota_disabled_credentials"] == timedelta(minutes=15)
    app.loader.import_default_modules()
    for entry in schedule.values():
        assert entry["task"] in app.tasks
        assert 0 < entry["options"]["expires"] < entry["schedule"].total_seconds()
