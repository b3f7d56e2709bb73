"""The writer's plain-row inserts (usage.rows) store exactly what the ORM would: each row is
written once through the ORM and once through the writer, and the stored columns compared as
the database returns them (raw, not through the models)."""

from __future__ import annotations

import base64
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection
from django.db.models import Model

from requestlog.models import RequestBody, RequestLog
from requestlog.services import request_logs_write
from usage import recording
from usage.models import UsageEvent
from usage.recording import UsageRecord

pytestmark = pytest.mark.django_db

# Not UTC and with microseconds: the moment is converted the way the field converts it.
MOMENT = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))


def _stored(model: type[Model]) -> list[dict[str, Any]]:
    """Every row of the model's table as the database returns it, ids and write times aside."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - a model's own table
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    return [
        {
            name: bytes(value) if isinstance(value, memoryview) else value
            for name, value in zip(names, row, strict=True)
            if name not in ("id", "recorded_at")
        }
        for row in rows
    ]


def _record(**overrides: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "provider": "anthropic",
        "user_id": 7,
        "access_key_id": 9,
        "requested_model": "claude-sonnet-4-5 é",
        "upstream_model": "anthropic.claude-sonnet-4-5",
        "input_tokens": 1200,
        "output_tokens": 34,
        "cache_read_tokens": 5,
        "cache_write_tokens": 6,
        "reasoning_tokens": 7,
        "status_code": 529,
        "streamed": True,
        "client_disconnected": True,
        "latency_ms": 812,
        "time_to_first_byte_ms": 40,
        "fallback_reason": "anthropic_529",
        "session_id": "session-ü",
        "request_id": "gwreq_rows",
        "occurred_at": MOMENT,
    }
    values.update(overrides)
    return UsageRecord(**values)


def _orm_event(record: UsageRecord) -> UsageEvent:
    return UsageEvent(
        event_id=record.event_id,
        occurred_at=record.occurred_at,
        user_id=record.user_id,
        access_key_id=record.access_key_id,
        provider=record.provider,
        requested_model=record.requested_model,
        upstream_model=record.upstream_model,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_tokens=record.cache_write_tokens,
        reasoning_tokens=record.reasoning_tokens,
        status_code=record.status_code,
        streamed=record.streamed,
        client_disconnected=record.client_disconnected,
        latency_ms=record.latency_ms,
        time_to_first_byte_ms=record.time_to_first_byte_ms,
        fallback_reason=record.fallback_reason,
        session_id=record.session_id,
        request_id=record.request_id,
    )


@pytest.mark.parametrize("ttfb", [40, None])
def test_an_event_is_stored_as_the_orm_stores_it(ttfb: int | None) -> None:
    record = _record(time_to_first_byte_ms=ttfb)
    UsageEvent.objects.bulk_create([_orm_event(record)], ignore_conflicts=True)
    by_orm = _stored(UsageEvent)
    UsageEvent.objects.all().delete()

    recording._write_batch([record])
    assert _stored(UsageEvent) == by_orm
    assert len(by_orm) == 1


def test_a_written_event_is_queued_for_the_rollup_and_written_once() -> None:
    from usage.models import PendingUsageEvent

    records = [_record(request_id=f"gwreq_{index}") for index in range(3)]
    recording._write_batch(records)
    recording._write_batch(records)  # a replay
    assert UsageEvent.objects.count() == 3
    assert set(PendingUsageEvent.objects.values_list("event_id", flat=True)) == set(
        UsageEvent.objects.values_list("id", flat=True)
    )


def _blob(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 6)).decode()


LOG = {
    "level": "full",
    "surface": "messages",
    "credential_fingerprint": "c0ffee123456",
    "user_agent": "claude-cli/2.1 (é)",
    "attempts": [
        {"provider": "anthropic", "model": "m é", "outcome": "anthropic_529", "status": 529},
        {"provider": "bedrock", "model": "m", "outcome": "answered", "latency_ms": 3.5},
    ],
    "body": {
        "request_headers": {"content-type": "application/json", "x-other": "[REDACTED] ✓"},
        "request": _blob('{"messages": []}'),
        "response": _blob('{"type": "message"}'),
        "stream": _blob("event: message_stop"),
        "notes": ["request_truncated", "ü"],
        "media": [],
    },
}


def test_a_log_and_its_bodies_are_stored_as_the_orm_stores_them() -> None:
    record = _record(log=LOG)
    body = LOG["body"]
    assert isinstance(body, dict)
    log = RequestLog.objects.create(
        event_id=record.event_id,
        occurred_at=record.occurred_at,
        request_id=record.request_id,
        level=LOG["level"],
        surface=LOG["surface"],
        credential_fingerprint=LOG["credential_fingerprint"],
        user_agent=LOG["user_agent"],
        attempts=LOG["attempts"],
        has_body=True,
    )
    RequestBody.objects.create(
        log=log,
        occurred_at=record.occurred_at,
        request_headers=body["request_headers"],
        request=base64.b64decode(body["request"]),
        response=base64.b64decode(body["response"]),
        stream=base64.b64decode(body["stream"]),
        notes=body["notes"],
    )
    by_orm = (_stored(RequestLog), _stored(RequestBody))
    RequestLog.objects.all().delete()

    assert request_logs_write([record]) == 1
    written = (_stored(RequestLog), _stored(RequestBody))
    # The body refers to the log by its id, which differs between the two writes.
    for stored in (written, by_orm):
        for row in stored[1]:
            row.pop("log_id")
    assert written == by_orm
    assert RequestBody.objects.get().log_id == RequestLog.objects.get().id


def test_a_batch_is_stored_row_for_row_as_the_orm_stores_it() -> None:
    # Several rows in one statement; one column NULL in every row (an array of nothing but
    # NULLs must still take the column's type), another NULL in some.
    records = [
        _record(request_id=f"gwreq_{index}", time_to_first_byte_ms=None, latency_ms=index)
        for index in range(4)
    ]
    records.append(_record(request_id="gwreq_last", fallback_reason="", session_id=""))
    UsageEvent.objects.bulk_create([_orm_event(record) for record in records])
    by_orm = sorted(_stored(UsageEvent), key=lambda row: row["request_id"])
    UsageEvent.objects.all().delete()

    recording._write_batch(records)
    assert sorted(_stored(UsageEvent), key=lambda row: row["request_id"]) == by_orm
    assert len(by_orm) == 5


def _log(tag: str, *, with_body: bool) -> dict[str, Any]:
    log: dict[str, Any] = {**LOG, "user_agent": f"agent {tag}", "body": None}
    if with_body:
        log["body"] = {**LOG["body"], "request": _blob(f'{{"tag": "{tag}"}}')}  # type: ignore[dict-item]
    return log


def test_a_batch_of_logs_puts_each_body_with_its_own_log_and_a_replay_adds_nothing() -> None:
    records = [
        _record(request_id=f"gwreq_{index}", log=_log(str(index), with_body=index % 2 == 0))
        for index in range(5)
    ]
    assert request_logs_write(records) == 5
    assert request_logs_write(records) == 5  # a replay: every row is already stored
    logs = {log.request_id: log for log in RequestLog.objects.all()}
    assert len(logs) == 5
    bodies = {body.log_id: body for body in RequestBody.objects.all()}
    assert len(bodies) == 3
    for index in range(5):
        log = logs[f"gwreq_{index}"]
        assert log.user_agent == f"agent {index}"
        assert log.has_body == (index % 2 == 0)
        if log.has_body:
            stored = zlib.decompress(bytes(bodies[log.id].request)).decode()
            assert stored == f'{{"tag": "{index}"}}'
        else:
            assert log.id not in bodies


def test_a_body_whose_log_is_not_stored_is_not_inserted() -> None:
    from usage.rows import Adapter, insert_select_statement, rows_insert

    stored = _record(request_id="gwreq_stored", log=_log("stored", with_body=False))
    request_logs_write([stored])
    adapt = Adapter()
    body = (
        adapt.moment(MOMENT),
        adapt.json({}),
        b"request",
        b"",
        b"",
        adapt.json([]),
    )
    missing = _record(request_id="gwreq_missing")
    columns = ("log", "occurred_at", "request_headers", "request", "response", "stream", "notes")
    rows_insert(
        insert_select_statement(RequestBody, columns, RequestLog, connection.vendor),
        [(*body, adapt.uuid(missing.event_id)), (*body, adapt.uuid(stored.event_id))],
    )
    assert [(body.log.request_id, bytes(body.request)) for body in RequestBody.objects.all()] == [
        ("gwreq_stored", b"request")
    ]


def test_a_batch_larger_than_one_pipeline_is_stored_whole() -> None:
    """On PostgreSQL a batch goes to the driver ROWS_PER_PIPELINE rows (events) and
    ROWS_PER_COPY rows (logs, bodies) at a time: the rows of every slice, the last partial one
    included, are stored, each body with its own log."""
    from usage.rows import ROWS_PER_COPY, ROWS_PER_PIPELINE

    count = 2 * max(ROWS_PER_PIPELINE, ROWS_PER_COPY) + 5
    records = [
        _record(request_id=f"gwreq_{index:03}", log=_log(str(index), with_body=index % 3 == 0))
        for index in range(count)
    ]
    recording._write_batch(records)
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == [
        f"gwreq_{index:03}" for index in range(count)
    ]
    assert RequestLog.objects.count() == count
    bodies = RequestBody.objects.select_related("log")
    assert len(bodies) == len(range(0, count, 3))
    for body in bodies:
        index = int(body.log.request_id.removeprefix("gwreq_"))
        assert zlib.decompress(bytes(body.request)).decode() == f'{{"tag": "{index}"}}'


def test_a_replay_of_a_batch_written_in_part_stores_the_rest_once() -> None:
    """A spooled batch whose first logs were stored before the database went away: the logs
    already there are skipped (on PostgreSQL COPY refuses the batch, and inserts that skip
    them write it), the others stored, each body with its own log."""
    records = [
        _record(request_id=f"gwreq_{index}", log=_log(str(index), with_body=index % 2 == 0))
        for index in range(6)
    ]
    assert request_logs_write(records[:3]) == 3
    assert request_logs_write(records) == 6
    logs = {log.request_id: log for log in RequestLog.objects.all()}
    assert sorted(logs) == [f"gwreq_{index}" for index in range(6)]
    bodies = {body.log_id: body for body in RequestBody.objects.all()}
    assert len(bodies) == 3
    for index in range(0, 6, 2):
        stored = zlib.decompress(bytes(bodies[logs[f"gwreq_{index}"].id].request)).decode()
        assert stored == f'{{"tag": "{index}"}}'
