"""The Celery application; tasks live in each app's tasks.py and the beat schedule in code.

Every beat entry expires before its next run is due, so a backlog (worker down, beat running)
never turns into a burst of stale copies of the same periodic task.
"""

import os
from datetime import timedelta

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

app = Celery("gateway_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

app.conf.beat_schedule = {
    "usage-rollup": {
        "task": "usage.tasks.rollup_usage",
        "schedule": MINUTE,
        "options": {"expires": 50},
    },
    "accounts-revoke-expired-rotated-keys": {
        "task": "accounts.tasks.revoke_expired_rotated_keys",
        "schedule": HOUR,
        "options": {"expires": 50 * 60},
    },
    "usage-prune-events": {
        "task": "usage.tasks.prune_usage_events",
        "schedule": DAY,
        "options": {"expires": 23 * 60 * 60},
    },
    "proxy-probe-quota-disabled-credentials": {
        "task": "proxy.tasks.probe_quota_disabled_credentials",
        "schedule": 15 * MINUTE,
        "options": {"expires": 14 * 60},
    },
    "requestlog-prune": {
        "task": "requestlog.tasks.prune_request_logs",
        "schedule": HOUR,
        "options": {"expires": 50 * 60},
    },
}
