"""Plain-row inserts for the usage writer: usage events and request-log rows as tuples.

Why not ``bulk_create``: the writer thread shares the web worker's GIL, so every millisecond
of CPU it spends comes out of the requests the worker serves. Measured on the writer's own path
(``bench/writer_micro.py``, batches of 50, PostgreSQL), ``bulk_create`` spent most of the write
building a model instance per row, preparing each value through its field and quoting every
value in Python (Django's psycopg cursor binds parameters client-side); inserting tuples costs
a fraction of that. The values are put in the database's form by the adapters the model fields
use themselves (``connection.ops``), so what is stored does not change:
usage/tests/test_rows.py compares rows written here with rows written through the ORM.

- PostgreSQL: psycopg's ``executemany`` on a server-side-binding cursor, which sends the rows
  through a pipeline (one round trip per ROWS_PER_PIPELINE rows) and dumps values in C; or,
  cheaper still, ``COPY ... FROM STDIN`` (``rows_copy``), which psycopg formats in C with no
  statement per row, for rows whose primary keys are reserved first
  (``primary_keys_reserve``) and which may fail whole on a conflict;
- SQLite: sqlite3's ``executemany``.

Conflicts are ignored the way ``bulk_create(ignore_conflicts=True)`` ignores them (the same
``connection.ops`` statement parts), so a replay writes nothing twice. Triggers on the tables
(the roll-up's queue of new events) fire as for any insert. Errors are Django's
(``DatabaseError`` and its kinds), as from any query.

What does not live here: which rows a batch has (usage.recording, requestlog.services).
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model
from django.db.models.constants import OnConflict
from django.utils import timezone


def _column(model: type[Model], name: str) -> str:
    """The quoted column of the model's field ``name``."""
    field = model._meta.get_field(name)
    # Only concrete fields have a column (not the reverse side of a relation).
    assert isinstance(field, Field) and field.column  # noqa: S101
    return connection.ops.quote_name(field.column)


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@functools.cache
def insert_statement(model: type[Model], columns: tuple[str, ...], vendor: str) -> str:
    """``INSERT`` of one row of ``model`` into ``columns`` (field names), ignoring conflicts."""
    del vendor  # part of the cache key only: the statement differs per database
    ops = connection.ops
    names = ", ".join(_column(model, name) for name in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    return " ".join(
        part
        for part in (
            ops.insert_statement(on_conflict=OnConflict.IGNORE),
            f"{_table(model)} ({names}) VALUES ({placeholders})",
            ops.on_conflict_suffix_sql([], OnConflict.IGNORE, None, None),
        )
        if part
    )


@functools.cache
def insert_select_statement(
    model: type[Model], columns: tuple[str, ...], source: type[Model], vendor: str
) -> str:
    """``INSERT`` of one row of ``model`` whose first column is the primary key of the
    ``source`` row found by its ``event_id`` (the last parameter); the other columns are
    parameters in order. Ignores conflicts, and inserts nothing when no such row exists."""
    del vendor
    ops = connection.ops
    names = ", ".join(_column(model, name) for name in columns)
    assert source._meta.pk is not None  # noqa: S101
    selected = ", ".join([_column(source, source._meta.pk.name)] + ["%s"] * (len(columns) - 1))
    event_column = _column(source, "event")
    return " ".join(
        part
        for part in (
            ops.insert_statement(on_conflict=OnConflict.IGNORE),
            f"{_table(model)} ({names})",
            # Identifiers from model metadata, quoted; values are parameters.
            f"SELECT {selected} FROM {_table(source)}",  # noqa: S608
            f"WHERE {event_column} = %s",
            ops.on_conflict_suffix_sql([], OnConflict.IGNORE, None, None),
        )
        if part
    )


@functools.cache
def insert_with_dependent_statement(
    model: type[Model],
    columns: tuple[str, ...],
    dependent: type[Model],
    dependent_columns: tuple[str, ...],
) -> str:
    """PostgreSQL: ``INSERT`` of one row of ``model`` into ``columns`` and, when it was
    inserted, of one row of ``dependent`` whose first column is the new row's primary key
    (the other columns are the parameters after ``model``'s). One statement instead of two
    for every row: psycopg's ``executemany`` spends about as much per statement of a batch
    as per value it sends. A row already stored inserts neither."""
    ops = connection.ops
    assert model._meta.pk is not None  # noqa: S101
    key = _column(model, model._meta.pk.name)
    names = ", ".join(_column(model, name) for name in columns)
    dependent_names = ", ".join(_column(dependent, name) for name in dependent_columns)
    placeholders = ", ".join(["%s"] * len(columns))
    selected = ", ".join(["inserted.id"] + ["%s"] * (len(dependent_columns) - 1))
    suffix = ops.on_conflict_suffix_sql([], OnConflict.IGNORE, None, None)
    # Identifiers from model metadata, quoted; values are parameters.
    return (
        f"WITH inserted AS (INSERT INTO {_table(model)} ({names}) VALUES ({placeholders})"  # noqa: S608
        f" {suffix} RETURNING {key} AS id)"
        f" INSERT INTO {_table(dependent)} ({dependent_names})"
        f" SELECT {selected} FROM inserted {suffix}"
    )


# Rows per call to psycopg's ``executemany`` (one pipeline each). One pipeline of a whole
# batch (hundreds of rows) kept the writer thread on the worker's core for tens of milliseconds
# without a break, and the requests that arrived meanwhile waited for it; each call ends with a
# round trip to the database, during which the event loop runs. Measured (bench/README.md,
# "The usage writer and the p99 at concurrency 1"): c=1 p99 5.2 -> 3.4 ms, throughput the same.
ROWS_PER_PIPELINE = 32


@contextlib.contextmanager
def _driver_cursor() -> Iterator[Any]:
    """PostgreSQL: a psycopg cursor on Django's connection that binds values server-side.
    Django's own cursor binds client-side (it quotes every value in Python, then the server
    parses literals); this one sends the values typed, in pipelines or COPY. Errors are turned
    into Django's like any query's."""
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def rows_insert(statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``statement`` once per row, in calls to the driver of up to ROWS_PER_PIPELINE rows."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        with _driver_cursor() as cursor:
            for start in range(0, len(rows), ROWS_PER_PIPELINE):
                cursor.executemany(statement, rows[start : start + ROWS_PER_PIPELINE])
        return
    with connection.cursor() as cursor:
        cursor.executemany(statement, rows)


# Rows per COPY statement. One COPY of a whole batch is the cheapest (each statement costs
# about 0.2 ms of the writer's CPU, measured with bench/writer_micro.py), but like one pipeline
# of a whole batch it keeps the writer on the worker's core without a round trip; a slice of
# this many rows takes about as long as one pipeline of ROWS_PER_PIPELINE inserts did.
ROWS_PER_COPY = 128


def primary_keys_reserve(model: type[Model], count: int) -> list[int]:
    """PostgreSQL: ``count`` new primary keys of ``model`` from its sequence, as its inserts
    take them, in one query. COPY has no RETURNING: rows that others refer to (a log and its
    body) are given their keys before they are sent."""
    assert model._meta.pk is not None  # noqa: S101
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [_table(model), model._meta.pk.column, count],
        )
        return [key for (key,) in cursor.fetchall()]


@functools.cache
def _copy_statement(model: type[Model], columns: tuple[str, ...]) -> str:
    names = ", ".join(_column(model, name) for name in columns)
    return f"COPY {_table(model)} ({names}) FROM STDIN"


def rows_copy(model: type[Model], columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> None:
    """PostgreSQL: insert ``rows`` (values of ``columns``) with COPY, ROWS_PER_COPY rows per
    statement. COPY cannot skip a row: one that conflicts with a stored row fails the whole
    statement with ``IntegrityError``, and the caller writes the rows again with
    ``rows_insert``, which skips it. Values are what psycopg dumps as text for the column
    (a JSON column takes its JSON text)."""
    if not rows:
        return
    statement = _copy_statement(model, columns)
    with _driver_cursor() as cursor:
        for start in range(0, len(rows), ROWS_PER_COPY):
            with cursor.copy(statement) as copy:
                for row in rows[start : start + ROWS_PER_COPY]:
                    copy.write_row(row)


class Adapter:
    """Values in the form the model fields hand the current connection's driver (the same
    ``connection.ops`` adapters). Made once per batch: ``django.db.connection`` looks the
    thread's connection up on every attribute access, which per value added up."""

    __slots__ = ("_ops", "_native_uuid")

    def __init__(self) -> None:
        database = connections[DEFAULT_DB_ALIAS]
        self._ops = database.ops
        self._native_uuid = database.features.has_native_uuid_field

    def uuid(self, value: str | uuid.UUID) -> Any:
        """As ``UUIDField`` stores it: native where the database has the type, else hex."""
        if not isinstance(value, uuid.UUID):
            value = uuid.UUID(value)
        return value if self._native_uuid else value.hex

    def moment(self, value: datetime) -> Any:
        """As ``DateTimeField`` stores it (a naive one is taken in the default time zone, as
        the field does)."""
        if value.tzinfo is None or value.utcoffset() is None:
            value = timezone.make_aware(value, timezone.get_default_timezone())
        return self._ops.adapt_datetimefield_value(value)

    def json(self, value: Any, encoder: type[json.JSONEncoder] | None = None) -> Any:
        """As ``JSONField(encoder=encoder)`` stores it."""
        return self._ops.adapt_json_value(value, encoder)


__all__ = [
    "Adapter",
    "primary_keys_reserve",
    "rows_copy",
    "insert_select_statement",
    "insert_statement",
    "insert_with_dependent_statement",
    "rows_insert",
]
