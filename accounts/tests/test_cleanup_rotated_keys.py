"""Rotated keys past their grace period: the cleanup_rotated_keys command and the hourly task."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from accounts import services
from accounts.models import AccessKey
from accounts.services import access_key_rotate
from accounts.tasks import revoke_expired_rotated_keys
from accounts.tests.helpers import verified_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def invalidations(monkeypatch) -> list[None]:
    calls: list[None] = []
    monkeypatch.setattr(services, "invalidate_key_metadata", lambda: calls.append(None))
    return calls


@pytest.fixture
def keys(make_key):
    """An expired rotation, one still in grace, and an active key."""
    expired, expired_plaintext = make_key(label="expired")
    in_grace, _ = make_key(label="in grace")
    active, _ = make_key(label="active")
    access_key_rotate(access_key=expired, grace=timedelta(0))
    access_key_rotate(access_key=in_grace, grace=timedelta(hours=1))
    return {"expired": expired, "in_grace": in_grace, "active": active, "plain": expired_plaintext}


def run(*args: str) -> str:
    out = StringIO()
    call_command("cleanup_rotated_keys", *args, stdout=out)
    return out.getvalue()


def status(key: AccessKey) -> str:
    key.refresh_from_db()
    return key.status


def test_command_revokes_only_keys_past_their_grace_and_drops_cached_metadata(
    keys, invalidations, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        output = run()
    assert f"Revoked {keys['expired'].prefix}" in output
    assert "Revoked 1 rotated keys past their grace period." in output
    assert status(keys["expired"]) == AccessKey.Status.REVOKED
    assert keys["expired"].revoked_at is not None
    assert status(keys["in_grace"]) == AccessKey.Status.ROTATED
    assert status(keys["active"]) == AccessKey.Status.ACTIVE
    assert verified_key(plaintext=keys["plain"]) is None
    assert invalidations == [None]


def test_dry_run_lists_without_changing_anything(
    keys, invalidations, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        output = run("--dry-run")
    assert f"Would revoke {keys['expired'].prefix}" in output
    assert "Would revoke 1 rotated keys" in output
    assert status(keys["expired"]) == AccessKey.Status.ROTATED
    assert invalidations == []


def test_nothing_to_do(db, invalidations):
    assert "Revoked 0 rotated keys" in run()
    assert invalidations == []


def test_task_revokes_once_and_is_idempotent(
    keys, invalidations, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert revoke_expired_rotated_keys() == [keys["expired"].prefix]
        assert revoke_expired_rotated_keys() == []
    assert status(keys["expired"]) == AccessKey.Status.REVOKED
    assert invalidations == [None]


def test_task_declares_its_limits_and_retries():
    assert revoke_expired_rotated_keys.name == "accounts.tasks.revoke_expired_rotated_keys"
    assert revoke_expired_rotated_keys.soft_time_limit < revoke_expired_rotated_keys.time_limit
    assert revoke_expired_rotated_keys.max_retries == 3
    assert revoke_expired_rotated_keys.autoretry_for
