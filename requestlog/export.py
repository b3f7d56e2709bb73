"""CSV and JSON-lines export of a filtered log list, streamed row by row (never built whole)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from django.db.models import QuerySet

from requestlog.models import RequestLog
from requestlog.selectors import export_columns, log_row

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
_CHUNK = 2000


def _cell(value: object) -> object:
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    text = "" if value is None else str(value)
    # A cell a spreadsheet would run as a formula is written as text.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def export_lines(queryset: QuerySet[RequestLog], fmt: str) -> Iterator[str]:
    """The rows of ``queryset`` as CSV (with a header line) or JSON lines."""
    rows = queryset.select_related("event").iterator(chunk_size=_CHUNK)
    if fmt == "jsonl":
        for log in rows:
            yield json.dumps(log_row(log), separators=(",", ":")) + "\n"
        return
    columns = export_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for log in rows:
        row = log_row(log)
        writer.writerow([_cell(row[name]) for name in columns])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
