"""Usage recording: queued writes, the spool when the database is away, idempotent replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.db import OperationalError

from accounts.models import AccessKey, User
from accounts.services import access_key_create
from usage import recording
from usage.models import UsageEvent
from usage.recording import Spool, UsageRecord, UsageWriter


@pytest.fixture
def writer(tmp_path: Path) -> UsageWriter:
    return UsageWriter(Spool(tmp_path / "spool"))


def _record(**overrides: object) -> UsageRecord:
    values: dict[str, object] = {
        "provider": "anthropic",
        "requested_model": "claude-sonnet-4-5",
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_tokens": 3,
        "cache_write_tokens": 4,
    }
    values.update(overrides)
    return UsageRecord(**values)  # type: ignore[arg-type]


@pytest.mark.django_db(transaction=True)
def test_queued_events_are_written_with_every_field(writer: UsageWriter) -> None:
    record = _record(
        status_code=429,
        streamed=True,
        client_disconnected=True,
        latency_ms=1234,
        time_to_first_byte_ms=56,
        fallback_reason="anthropic_529",
        session_id="sess-1",
        request_id="gwreq_1",
        upstream_model="global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    )
    writer.submit(record)
    writer.flush_now()
    event = UsageEvent.objects.get()
    assert str(event.event_id) == record.event_id
    assert (event.input_tokens, event.output_tokens) == (10, 20)
    assert (event.cache_read_tokens, event.cache_write_tokens) == (3, 4)
    assert event.status_code == 429 and event.is_error
    assert event.streamed and event.client_disconnected
    assert (event.latency_ms, event.time_to_first_byte_ms) == (1234, 56)
    assert event.fallback_reason == "anthropic_529"
    assert (event.session_id, event.request_id) == ("sess-1", "gwreq_1")
    assert event.upstream_model.startswith("global.anthropic")
    assert writer.written == 1


@pytest.mark.django_db(transaction=True)
def test_database_failure_spools_then_replays_exactly_once(writer: UsageWriter) -> None:
    records = [_record(input_tokens=i) for i in range(7)]
    with mock.patch.object(recording, "_write_batch", side_effect=OperationalError("db away")):
        for record in records:
            writer.submit(record)
        writer.flush_now()
    assert UsageEvent.objects.count() == 0
    assert writer.spool.depth() == 7
    assert writer.spooled == 7

    # The database is back: the next flush replays the spool, then writes the new event.
    writer._last_spool_attempt = 0.0
    writer.submit(_record(input_tokens=100))
    writer.flush_now()
    assert UsageEvent.objects.count() == 8
    assert writer.spool.depth() == 0
    assert sorted(UsageEvent.objects.values_list("input_tokens", flat=True)) == [
        *range(7),
        100,
    ]


@pytest.mark.django_db(transaction=True)
def test_replaying_an_already_written_event_does_not_double_count(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    record = _record()
    recording._write_batch([record])
    spool.append([record, record])
    assert spool.replay() == 2
    assert UsageEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_torn_spool_line_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([_record(input_tokens=1), _record(input_tokens=2)])
    path = next((tmp_path / "spool").glob("usage-*.jsonl"))
    with path.open("a") as handle:
        handle.write('{"provider": "anthr')  # a crash in the middle of an append
    assert spool.replay() == 2
    assert UsageEvent.objects.count() == 2
    assert not list((tmp_path / "spool").iterdir())


@pytest.mark.django_db(transaction=True)
def test_files_left_by_a_dead_process_are_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([_record()])
    path = next((tmp_path / "spool").glob("usage-*.jsonl"))
    path.rename(path.with_name(path.name + ".replaying-999999999"))  # no such process
    assert spool.replay() == 1
    assert UsageEvent.objects.count() == 1


def test_record_round_trips_through_json() -> None:
    record = _record(occurred_at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC), session_id="s")
    assert UsageRecord.from_json(record.to_json()) == record


@pytest.mark.django_db(transaction=True)
def test_last_used_is_coalesced_to_one_update_per_key_a_minute(writer: UsageWriter) -> None:
    user = User.objects.create_user(email="u@example.com")
    key, _ = access_key_create(user=user)
    first = datetime.now(UTC) - timedelta(seconds=30)
    writer.submit(_record(access_key_id=key.id, occurred_at=first))
    writer.flush_now()
    key.refresh_from_db()
    assert key.last_used_at == first

    later = first + timedelta(seconds=20)
    with mock.patch("accounts.services.AccessKey.objects.filter") as filtered:
        writer.submit(_record(access_key_id=key.id, occurred_at=later))
        writer.flush_now()
    filtered.assert_not_called()  # within the minute: no write at all
    assert AccessKey.objects.get(pk=key.pk).last_used_at == first


def test_record_usage_event_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> UsageWriter:
        raise RuntimeError("boom")

    monkeypatch.setattr(recording, "usage_writer", broken)
    recording.record_usage_event(_record())  # logged, not raised
