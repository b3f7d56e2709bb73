"""Events the rollup cannot add (sums beyond 64 bits) are set aside; every other event counts.

An upstream once reported 10^26 output tokens, stored as 2^63 - 1: every rollup after it failed
on the overflow of its sums, and the queue grew behind it. These tests store such events
directly (usage.recording bounds counts now) and check that the rollup isolates them, counts the
rest exactly, and leaves the set-aside events visible and requeueable. Run on SQLite and on
PostgreSQL (the overflow is an error of a different kind on each).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError, OperationalError, connection
from django.test import Client

from accounts.models import User
from usage.models import (
    DeadLetterUsageEvent,
    PendingUsageEvent,
    UsageAggregate,
    UsageEvent,
)
from usage.rollup import sql as rollup_sql
from usage.rollup import (
    usage_aggregates_rebuild,
    usage_dead_letters_requeue,
    usage_events_prune,
    usage_rollup,
)
from usage.tests.factories import (
    DEFAULT_TIME,
    expected_aggregates,
    make_event,
    make_events,
    stored_aggregates,
)

# Transactions of their own: the rollup's batches commit, and a failed one rolls back.
pytestmark = pytest.mark.django_db(transaction=True)

ABSURD = 2**63 - 1


def counted_events() -> list[UsageEvent]:
    """The events that must be in the aggregates: all but the dead letters."""
    dead = set(DeadLetterUsageEvent.objects.values_list("event_id", flat=True))
    return [event for event in UsageEvent.objects.all() if event.pk not in dead]


def assert_exact_without_dead_letters() -> None:
    assert stored_aggregates() == expected_aggregates(counted_events())


def test_an_event_whose_sums_overflow_is_set_aside_and_the_rest_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = make_event(output_tokens=100)
    poison = make_event(output_tokens=ABSURD, request_id="gwreq_absurd")
    after = make_event(output_tokens=50)
    other_user = make_event(user_id=7, output_tokens=10)

    with caplog.at_level(logging.ERROR, logger="usage.rollup"):
        report = usage_rollup()

    assert report.set_aside == [poison.pk]
    assert report.events == 3
    assert not PendingUsageEvent.objects.exists()
    letter = DeadLetterUsageEvent.objects.get()
    assert letter.event_id == poison.pk
    assert letter.reason  # the database's error, for the admin
    assert_exact_without_dead_letters()
    month = UsageAggregate.objects.get(bucket="month", user_id=1)
    assert month.output_tokens == before.output_tokens + after.output_tokens
    assert month.requests == 2
    assert UsageAggregate.objects.get(bucket="month", user_id=other_user.user_id).requests == 1
    # Logged loudly, with the request id that leads to the upstream's answer.
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("gwreq_absurd" in message and "set aside" in message for message in errors)

    # The next run has nothing to do and does not fail.
    again = usage_rollup()
    assert (again.events, again.set_aside) == (0, [])


def test_an_event_that_overflows_an_existing_aggregate_is_set_aside() -> None:
    make_event(output_tokens=1000)
    usage_rollup()
    rows_before = stored_aggregates()
    poison = make_event(output_tokens=ABSURD, occurred_at=DEFAULT_TIME + timedelta(days=3))

    report = usage_rollup()

    assert report.set_aside == [poison.pk]
    assert stored_aggregates() == rows_before
    assert not PendingUsageEvent.objects.exists()


def test_a_large_batch_with_scattered_poison_counts_every_good_event() -> None:
    rows: list[dict[str, Any]] = []
    poison_at = {13, 14, 77, 150}
    for number in range(160):
        rows.append(
            {
                "user_id": number % 3,
                "occurred_at": DEFAULT_TIME + timedelta(minutes=number % 7),
                "output_tokens": ABSURD if number in poison_at else number,
                "input_tokens": ABSURD if number == 77 else 10,
            }
        )
    events = make_events(rows)
    poison_ids = sorted(events[number].pk for number in poison_at)

    report = usage_rollup(batch_size=1000)

    assert sorted(report.set_aside) == poison_ids
    assert report.events == 160 - len(poison_at)
    assert sorted(DeadLetterUsageEvent.objects.values_list("event_id", flat=True)) == poison_ids
    assert not PendingUsageEvent.objects.exists()
    assert_exact_without_dead_letters()


def test_batches_after_a_poisoned_one_are_rolled_up_in_the_same_run() -> None:
    make_events([{"output_tokens": 5}] * 3)
    poison = make_event(output_tokens=ABSURD)
    make_events([{"output_tokens": 5}] * 6)

    report = usage_rollup(batch_size=4)

    assert report.set_aside == [poison.pk]
    assert report.events == 9
    assert_exact_without_dead_letters()


def test_a_batch_failing_on_its_data_is_split_until_the_failing_events_are_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever data error a batch hits (not only counts beyond the bound), the events that
    cause it are found by splitting, and only they are set aside."""
    events = make_events([{"user_id": number % 4, "output_tokens": number} for number in range(40)])
    poison_ids = {events[3].pk, events[4].pk, events[31].pk}
    original = rollup_sql.fill_delta_from_queue
    attempts: list[tuple[int | None, int]] = []

    def failing(dialect: Any, cursor: Any, after: int | None, upper: int) -> None:
        attempts.append((after, upper))
        in_range = [pk for pk in poison_ids if (after is None or after < pk) and pk <= upper]
        if PendingUsageEvent.objects.filter(event_id__in=in_range).exists():
            raise DataError("bigint out of range")
        original(dialect, cursor, after, upper)

    monkeypatch.setattr(rollup_sql, "fill_delta_from_queue", failing)
    report = usage_rollup(batch_size=25)

    assert sorted(report.set_aside) == sorted(poison_ids)
    assert report.events == 37
    assert report.batches == 2
    assert not PendingUsageEvent.objects.exists()
    reasons = set(DeadLetterUsageEvent.objects.values_list("reason", flat=True))
    assert reasons == {"DataError: bigint out of range"}
    assert_exact_without_dead_letters()
    # Splitting, not one event at a time: far fewer attempts than events.
    assert len(attempts) < 30


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite turns an overflowing addition into a float instead of failing",
)
def test_an_aggregate_that_would_overflow_sets_the_event_aside_on_postgresql() -> None:
    near_full = 2**63 - 10
    good = make_event(output_tokens=5, user_id=2)
    event = make_event(output_tokens=10**6)
    UsageAggregate.objects.create(
        bucket="month",
        bucket_start=DEFAULT_TIME.replace(day=1, hour=0),
        user_id=1,
        access_key_id=1,
        provider="anthropic",
        model="claude-sonnet-4-5",
        output_tokens=near_full,
    )

    report = usage_rollup()

    assert report.set_aside == [event.pk]
    assert report.events == 1
    assert UsageAggregate.objects.get(bucket="month", user_id=1).output_tokens == near_full
    assert UsageAggregate.objects.get(bucket="month", user_id=good.user_id).output_tokens == 5


def test_a_database_outage_is_not_taken_for_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    make_events([{}] * 3)

    def away(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(rollup_sql, "fill_delta", away)
    with pytest.raises(OperationalError):
        usage_rollup()
    assert not DeadLetterUsageEvent.objects.exists()
    assert PendingUsageEvent.objects.count() == 3
    assert not UsageAggregate.objects.exists()


def test_a_dead_letter_can_be_queued_again_once_fixed() -> None:
    make_event(output_tokens=100)
    poison = make_event(output_tokens=ABSURD)
    usage_rollup()

    # Queued again as it is, it is set aside again.
    assert usage_dead_letters_requeue(event_ids=[poison.pk]) == 1
    assert not DeadLetterUsageEvent.objects.exists()
    assert usage_rollup().set_aside == [poison.pk]

    # An operator corrects the count; queued again, it is counted.
    UsageEvent.objects.filter(pk=poison.pk).update(output_tokens=7)
    assert usage_dead_letters_requeue(event_ids=[poison.pk, 999_999]) == 1
    report = usage_rollup()
    assert (report.events, report.set_aside) == (1, [])
    assert not DeadLetterUsageEvent.objects.exists()
    assert UsageAggregate.objects.get(bucket="month").output_tokens == 107
    assert stored_aggregates() == expected_aggregates(UsageEvent.objects.all())


def test_rebuild_and_prune_leave_dead_letters_out() -> None:
    make_events([{"output_tokens": 3}] * 2)
    poison = make_event(output_tokens=ABSURD)
    usage_rollup()
    assert DeadLetterUsageEvent.objects.filter(event_id=poison.pk).exists()

    report = usage_aggregates_rebuild()  # would overflow on the dead letter
    assert report.events == 2
    assert_exact_without_dead_letters()

    pruned = usage_events_prune(retention_days=1, now=DEFAULT_TIME + timedelta(days=30))
    assert pruned.deleted == 2
    # Kept until an admin deals with it: no aggregate holds it.
    assert list(UsageEvent.objects.values_list("pk", flat=True)) == [poison.pk]


def test_dead_letters_are_listed_and_requeued_in_the_admin() -> None:
    make_event(output_tokens=1)
    poison = make_event(output_tokens=ABSURD, request_id="gwreq_admin_absurd")
    usage_rollup()
    staff = User.objects.create_user(email="admin@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)

    listing = client.get("/admin/usage/deadletterusageevent/")
    assert listing.status_code == 200
    assert b"gwreq_admin_absurd" in listing.content
    assert str(ABSURD).encode() in listing.content

    response = client.post(
        "/admin/usage/deadletterusageevent/",
        {"action": "requeue", "_selected_action": [str(poison.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"1 event queued" in response.content
    assert not DeadLetterUsageEvent.objects.exists()
    assert PendingUsageEvent.objects.filter(event_id=poison.pk).exists()
