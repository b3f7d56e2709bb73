"""Usage recording: queued writes, the spool when the database is away, idempotent replays."""

from __future__ import annotations

import ast
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import RequestFactory

from accounts.models import AccessKey, User
from accounts.services import access_key_create
from gateway_project import observability
from usage import recording
from usage.models import MAX_TOKENS_PER_COUNT, UsageEvent
from usage.pricing import PRICE_SCALE
from usage.recording import Spool, UsageRecord, UsageWriter
from usage.rollup import usage_rollup


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

    # The database is back and the writer's pause after the failure is over: the next flush
    # replays the spool, then writes the new event.
    writer._last_spool_attempt = 0.0
    writer._failed_at = None
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


@pytest.mark.django_db(transaction=True)
def test_a_drain_writes_what_was_queued_as_the_thread_stopped(writer: UsageWriter) -> None:
    writer.submit(_record(request_id="gwreq_first"))
    writer.flush_now()
    assert writer._thread is None
    # The state a race leaves: ``submit`` found the thread running, a drain stopped it, and
    # only then was the record put in the queue (no thread is left to take it).
    writer._queue.put(_record(request_id="gwreq_orphan"))
    writer.flush_now()
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == [
        "gwreq_first",
        "gwreq_orphan",
    ]


def test_record_usage_event_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> UsageWriter:
        raise RuntimeError("boom")

    monkeypatch.setattr(recording, "usage_writer", broken)
    recording.record_usage_event(_record())  # logged, not raised


# --- bounds on incoming counts ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_absurd_token_counts_are_bounded_and_logged_once_with_the_request_id(
    writer: UsageWriter, caplog: pytest.LogCaptureFixture
) -> None:
    record = _record(
        input_tokens=12,
        output_tokens=10**26,
        cache_read_tokens=MAX_TOKENS_PER_COUNT + 1,
        request_id="gwreq_absurd",
    )
    with caplog.at_level(logging.WARNING, logger="usage.recording"):
        writer.submit(record)
        writer.submit(_record(output_tokens=MAX_TOKENS_PER_COUNT, request_id="gwreq_at_bound"))
        writer.flush_now()

    absurd = UsageEvent.objects.get(request_id="gwreq_absurd")
    assert absurd.output_tokens == MAX_TOKENS_PER_COUNT
    assert absurd.cache_read_tokens == MAX_TOKENS_PER_COUNT
    assert (absurd.input_tokens, absurd.cache_write_tokens) == (12, 4)
    at_bound = UsageEvent.objects.get(request_id="gwreq_at_bound")
    assert at_bound.output_tokens == MAX_TOKENS_PER_COUNT
    warnings = [r.getMessage() for r in caplog.records if r.name == "usage.recording"]
    assert len(warnings) == 1
    assert "gwreq_absurd" in warnings[0] and str(10**26) in warnings[0]
    # The rollup takes the bounded event without setting anything aside.
    report = usage_rollup()
    assert (report.events, report.set_aside) == (2, [])


def test_the_bound_keeps_the_rollup_arithmetic_within_64_bits() -> None:
    # Four counts at the bound times a price of $2,000 per million tokens, in the rollup's
    # units (usage.pricing), still fit a signed 64-bit integer.
    two_thousand_dollars = 2000 * PRICE_SCALE
    assert 4 * MAX_TOKENS_PER_COUNT * two_thousand_dollars < 2**63
    assert MAX_TOKENS_PER_COUNT >= 10**8  # far above any real request


# --- a database that is away or hangs ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failed_write_spools_the_whole_queue_not_just_the_batch(writer: UsageWriter) -> None:
    writer._spool_has_data = False
    records = [_record(input_tokens=i) for i in range(1234)]
    for record in records:
        writer._queue.put(record)  # queued faster than the thread drains them
    with mock.patch.object(
        recording, "_write_batch", side_effect=OperationalError("db away")
    ) as write:
        writer._flush(writer._collect(0))
    assert write.call_count == 1
    assert writer._queue.empty()
    assert writer.spool.depth() == 1234
    assert writer.spooled == 1234


@pytest.mark.django_db(transaction=True)
def test_after_a_failure_batches_go_to_the_spool_without_waiting_on_the_database(
    writer: UsageWriter,
) -> None:
    writer._spool_has_data = False
    with mock.patch.object(
        recording, "_write_batch", side_effect=OperationalError("db away")
    ) as write:
        writer._flush([_record()])
        for number in range(5):
            writer._flush([_record(input_tokens=number)])
    assert write.call_count == 1  # one attempt, then the database is left alone a while
    assert writer.spool.depth() == 6

    # Once the pause is over the writer tries the database again.
    writer._failed_at = time.monotonic() - 60
    with (
        mock.patch.object(recording, "_write_batch") as write,
        mock.patch.object(writer.spool, "replay", return_value=6),
    ):
        writer._flush([_record()])
    assert write.call_count == 1
    assert writer._failed_at is None


class _FakePool:
    def __init__(self, *, available: bool) -> None:
        self.available = available
        self.timeouts: list[float | None] = []
        self.returned: list[object] = []

    def open(self) -> None:
        pass

    def getconn(self, timeout: float | None = None) -> object:
        self.timeouts.append(timeout)
        if not self.available:
            raise TimeoutError("couldn't get a connection after 2.00 sec")
        return "connection"

    def putconn(self, conn: object) -> None:
        self.returned.append(conn)


def test_the_writer_asks_the_pool_with_a_short_timeout_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = _FakePool(available=True)
    monkeypatch.setattr(recording, "connection", SimpleNamespace(connection=None, pool=pool))
    recording._database_check(recording.WRITER_POOL_TIMEOUT_SECONDS)
    assert pool.timeouts == [recording.WRITER_POOL_TIMEOUT_SECONDS]
    assert pool.returned == ["connection"]
    assert recording.WRITER_POOL_TIMEOUT_SECONDS <= 3

    hanging = _FakePool(available=False)
    monkeypatch.setattr(recording, "connection", SimpleNamespace(connection=None, pool=hanging))
    with pytest.raises(TimeoutError):
        recording._database_check(recording.WRITER_POOL_TIMEOUT_SECONDS)

    # A thread that holds a connection already, or a database without a pool, is not probed.
    monkeypatch.setattr(recording, "connection", SimpleNamespace(connection=object(), pool=hanging))
    recording._database_check(1.0)
    monkeypatch.setattr(recording, "connection", SimpleNamespace(connection=None))
    recording._database_check(1.0)
    assert hanging.timeouts == [recording.WRITER_POOL_TIMEOUT_SECONDS]


@pytest.mark.django_db(transaction=True)
def test_a_pool_timeout_spools_the_batch(
    writer: UsageWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hanging(timeout: float) -> None:
        raise TimeoutError(f"couldn't get a connection after {timeout:.2f} sec")

    monkeypatch.setattr(recording, "_database_check", hanging)
    writer._spool_has_data = False
    writer._flush([_record(), _record()])
    assert writer.spool.depth() == 2
    assert UsageEvent.objects.count() == 0


# --- the drain at exit ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_exit_drain_is_bounded_and_spools_what_a_hanging_database_holds(
    writer: UsageWriter,
) -> None:
    entered = threading.Event()
    release = threading.Event()
    real_write = recording._write_batch

    def hanging_write(records: list[UsageRecord]) -> None:
        entered.set()
        release.wait(30)
        real_write(records)

    writer._spool_has_data = False
    with mock.patch.object(recording, "_write_batch", side_effect=hanging_write):
        writer.submit(_record(request_id="gwreq_in_flight"))
        assert entered.wait(10)
        for number in range(3):
            writer.submit(_record(request_id=f"gwreq_queued_{number}"))
        thread = writer._thread
        assert thread is not None
        started = time.monotonic()
        writer.flush_now(timeout=0.5)
        assert time.monotonic() - started < 3
        # The batch being written and everything queued behind it are on disk.
        assert writer.spool.depth() == 4
        release.set()
        # Waiting on the thread, not polling the table: the test database on SQLite is an
        # in-memory shared cache, where a read beside the thread's write fails it with "table
        # is locked" (a file database in WAL mode, the embedded default, has no such lock).
        thread.join(10)
        assert not thread.is_alive()

    # The hung write did land after all; replaying the spool does not count it twice.
    assert writer.spool.replay() == 4
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == [
        "gwreq_in_flight",
        "gwreq_queued_0",
        "gwreq_queued_1",
        "gwreq_queued_2",
    ]


# --- metrics ----------------------------------------------------------------------------------


def test_observability_imports_no_app_module() -> None:
    """gateway_project.observability is imported by the apps for their metrics; an import of
    an app from it (even inside a function) would make a cycle."""
    source = Path(observability.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert not imported & {"usage", "proxy", "accounts"}


def test_metrics_report_the_spool_depth_through_a_scrape_hook(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(recording.usage_writer().spool, "directory", tmp_path / "spool")
    monkeypatch.setattr(settings, "GATEWAY_METRICS_TOKEN", "")
    recording.usage_writer().spool.append([_record(), _record(), _record()])
    request = RequestFactory().get("/metrics", REMOTE_ADDR="127.0.0.1")
    body = observability.metrics_view(request).content.decode()
    assert "gateway_usage_spool_depth 3.0" in body

    def broken() -> None:
        raise RuntimeError("gauge source away")

    monkeypatch.setattr(observability, "_scrape_hooks", [broken, recording.report_spool_depth])
    recording.usage_writer().spool.append([_record()])
    body = observability.metrics_view(request).content.decode()
    assert "gateway_usage_spool_depth 4.0" in body


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_write_does_not_spool_the_written_batch(
    writer: UsageWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_touch() -> None:
        raise OperationalError("accounts table locked")

    monkeypatch.setattr(writer, "_touch_keys", broken_touch)
    writer._spool_has_data = False
    writer._flush([_record(), _record()])
    assert UsageEvent.objects.count() == 2
    assert writer.spool.depth() == 0


def test_spool_depth_ignores_a_file_claimed_while_it_counts(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from usage import recording as recording_module

    spool = recording_module.Spool(tmp_path)
    spool.append([recording_module.UsageRecord(provider="anthropic")])
    (tmp_path / "usage-1.jsonl.replaying-1-gone").write_text("{}\n")
    real_glob = Path.glob

    def glob_with_a_vanished_file(self: Path, pattern: str) -> Any:
        found = list(real_glob(self, pattern))
        (tmp_path / "usage-1.jsonl.replaying-1-gone").unlink(missing_ok=True)
        return iter(found)

    monkeypatch.setattr(Path, "glob", glob_with_a_vanished_file)
    assert spool.depth() == 1
