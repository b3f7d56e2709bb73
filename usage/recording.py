"""Recording of usage events: the one function the proxy calls, and the writer behind it.

``record_usage_event`` puts the event on an in-process queue and returns at once, so the client's
response never waits for the database. A writer thread drains the queue in batches into
``UsageEvent``, as plain rows (usage.rows). Every event carries a UUID with a unique index and
batches are inserted ignoring conflicts, so writing an event twice (a replay after a partial
failure, or a batch spooled at exit while its write was still running) never counts it twice.

Nothing queued is lost when the database is away or the process stops:

- A failed write appends the batch and everything queued behind it to a spool file in
  GATEWAY_DATA_DIR/spool. For a few seconds after a failure the writer spools new batches
  without knocking on the database again, and it asks the connection pool for a connection with
  a short timeout of its own, so a hanging database holds at most a few seconds of events in
  memory. The spool is replayed once the database answers again.
- At process exit (ASGI lifespan shutdown, see usage.lifespan, and atexit) ``flush_usage_events``
  drains the queue within a time limit; whatever the database did not take by then is spooled.

Token counts are bounded on the way in (usage.models.MAX_TOKENS_PER_COUNT): one absurd figure
from an upstream must not overflow the rollup's sums.

The writer also coalesces "last used" times of access keys into at most one update per key a
minute.

A record may carry its request log (``UsageRecord.log``, see requestlog.capture): references to
the request's bodies while it is queued, its redacted and compressed form from the moment the
writer takes it (``_prepare_logs``) or it is serialized for the spool (``to_json``). The log is
written right after its usage event, by requestlog.services, and travels through the spool
with it; an unredacted body is never serialized.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections, connection

from gateway_project.observability import USAGE_EVENTS, USAGE_SPOOL_DEPTH, before_scrape

if TYPE_CHECKING:
    from usage.rows import Adapter

logger = logging.getLogger(__name__)

_BATCH_SIZE = 500
_BATCH_WAIT_SECONDS = 0.25
# After a failed write, the database is left alone this long: batches go straight to the spool.
_SPOOL_RETRY_SECONDS = 5.0
_TOUCH_INTERVAL_SECONDS = 60.0
# How long the writer waits for a pooled connection: well below the pool's own timeout (which
# request handlers need), so a hanging database costs a write attempt seconds, not tens.
WRITER_POOL_TIMEOUT_SECONDS = 2.0
# How long the drain at process exit may take before the rest goes to the spool.
EXIT_DRAIN_SECONDS = 10.0


@dataclass(slots=True)
class UsageRecord:
    """One proxied request, as the proxy saw it. Field names match ``UsageEvent``."""

    provider: str
    user_id: int | None = None
    access_key_id: int | None = None
    requested_model: str = ""
    upstream_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    status_code: int = 200
    streamed: bool = False
    client_disconnected: bool = False
    latency_ms: int = 0
    time_to_first_byte_ms: int | None = None
    fallback_reason: str = ""
    session_id: str = ""
    request_id: str = ""
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # The request log: a requestlog.capture.LogCapture while queued, a prepared (redacted,
    # JSON-able) dict once the writer took it, None when the request is not logged.
    log: Any = field(default=None, repr=False)

    def to_json(self) -> str:
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["occurred_at"] = self.occurred_at.isoformat()
        if self.log is None:
            del data["log"]
        else:
            _prepare_logs([self])
            data["log"] = self.log
            if self.log is None:
                del data["log"]
        return json.dumps(data, separators=(",", ":"), default=_spooled_bytes)

    @classmethod
    def from_json(cls, line: str) -> UsageRecord:
        data: dict[str, Any] = json.loads(line)
        data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
        return cls(**data)


def _spooled_bytes(value: object) -> str:
    """A prepared log's compressed bodies in a spool line: base64 text (requestlog.services
    reads either form back)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _clip(value: str, limit: int) -> str:
    """Text as every database takes it: no NUL (PostgreSQL refuses it), no lone surrogates
    (not encodable), at most ``limit`` characters. One bad header must not poison a batch."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:limit]


_BIGINT_MAX = 2**63 - 1
_INT_MAX = 2**31 - 1


def _count(value: int, limit: int = _BIGINT_MAX) -> int:
    """A count the column can hold: upstream figures are not trusted to fit (one that does not
    would fail its whole batch, and every replay of it)."""
    return min(max(0, value), limit)


def bounded_token_counts(record: UsageRecord) -> dict[str, int]:
    """The record's four token counts as they are stored: at least 0 and at most
    MAX_TOKENS_PER_COUNT. A count beyond the bound is logged once per event, with its request
    id, and stored as the bound (a sum of such figures would overflow the aggregates)."""
    from usage.models import MAX_TOKENS_PER_COUNT, TOKEN_COUNT_FIELDS

    counts = {name: _count(getattr(record, name)) for name in TOKEN_COUNT_FIELDS}
    beyond = {name: value for name, value in counts.items() if value > MAX_TOKENS_PER_COUNT}
    if beyond:
        logger.warning(
            "usage: request %s reported %s; stored as %d (the most one event may carry)",
            record.request_id or record.event_id,
            ", ".join(f"{name}={getattr(record, name)}" for name in beyond),
            MAX_TOKENS_PER_COUNT,
        )
        counts.update(dict.fromkeys(beyond, MAX_TOKENS_PER_COUNT))
    return counts


def _prepare_logs(records: list[UsageRecord]) -> None:
    """Redact and encode the batch's request logs (before anything may write or spool them).
    A log that cannot be prepared is dropped, never its usage event."""
    from requestlog.services import prepared_log

    for record in records:
        if record.log is None or isinstance(record.log, dict):
            continue
        try:
            prepared_log(record)
        except Exception:
            logger.exception("request log: could not prepare the log of %s", record.event_id)
            record.log = None


def _write_batch(records: list[UsageRecord]) -> None:
    """Insert a batch, then its request logs; idempotent thanks to the unique event_id.

    Two steps, not one transaction: the events' insert stays as short as it was without logs
    (other connections wait on it). The logs never cost the events anything: a batch of logs
    the database refuses is written one log at a time; a log that still fails is written once
    more without the characters databases refuse in text (NUL, lone surrogates), and one that
    fails even then is dropped with an error naming its request — its usage event is already
    written."""
    _prepare_logs(records)
    _write_events(records)
    logged = [record for record in records if record.log is not None]
    if logged:
        _write_logs(logged)


def _write_logs(records: list[UsageRecord]) -> None:
    from django.db import DatabaseError, connection

    from requestlog.services import request_logs_write

    try:
        request_logs_write(records)
        return
    except (DatabaseError, UnicodeError) as exc:
        # UnicodeError: a driver that encodes text itself (sqlite3) refuses lone surrogates
        # before the database sees them.
        _recover(connection)
        refusal: Exception = exc
    if len(records) > 1:
        for record in records:
            _write_logs([record])
        return
    _write_refused_log(records[0], refusal)


def _write_refused_log(record: UsageRecord, refusal: Exception) -> None:
    """One log the database refused: written again once without the characters databases
    refuse in text and JSON (NUL, lone surrogates), else dropped with its request id."""
    from django.db import DatabaseError, connection

    from requestlog.services import request_log_scrub, request_logs_write

    if request_log_scrub(record):
        try:
            request_logs_write([record])
        except (DatabaseError, UnicodeError) as exc:
            _recover(connection)
            refusal = exc
        else:
            logger.warning(
                "request log: the log of %s was stored without the NUL characters or lone "
                "surrogates the database refused",
                record.request_id,
            )
            return
    logger.error(
        "request log: dropped the log of %s, which the database refused",
        record.request_id,
        exc_info=refusal,
    )


def _recover(connection: Any) -> None:
    """After a refused write outside a transaction block the connection is usable again; this
    only makes sure of it (PostgreSQL aborts the rest of a failed transaction)."""
    if connection.in_atomic_block:
        return
    with contextlib.suppress(Exception):
        connection.rollback()


# The columns the writer fills, in the order of ``_event_row``'s values (cost_usd is left
# NULL: the roll-up prices events).
_EVENT_COLUMNS = (
    "event_id",
    "occurred_at",
    "recorded_at",
    "user",
    "access_key",
    "provider",
    "requested_model",
    "upstream_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "status_code",
    "streamed",
    "client_disconnected",
    "latency_ms",
    "time_to_first_byte_ms",
    "fallback_reason",
    "session_id",
    "request_id",
)


def _event_row(record: UsageRecord, recorded_at: Any, adapt: Adapter) -> tuple[Any, ...]:
    """The record as the values of ``_EVENT_COLUMNS``, bounded and clipped to fit them."""
    from usage.models import MAX_TOKENS_PER_COUNT

    counts = bounded_token_counts(record)
    ttfb = record.time_to_first_byte_ms
    return (
        adapt.uuid(record.event_id),
        adapt.moment(record.occurred_at),
        recorded_at,
        record.user_id,
        record.access_key_id,
        _clip(record.provider, 16),
        _clip(record.requested_model, 200),
        _clip(record.upstream_model, 200),
        counts["input_tokens"],
        counts["output_tokens"],
        counts["cache_read_tokens"],
        counts["cache_write_tokens"],
        _count(record.reasoning_tokens, MAX_TOKENS_PER_COUNT),
        record.status_code,
        record.streamed,
        record.client_disconnected,
        _count(record.latency_ms, _INT_MAX),
        None if ttfb is None else _count(ttfb, _INT_MAX),
        _clip(record.fallback_reason, 64),
        _clip(record.session_id, 100),
        _clip(record.request_id, 100),
    )


def _write_events(records: list[UsageRecord]) -> None:
    """Insert the batch's events as plain rows (usage.rows says why not ``bulk_create``), in
    one transaction; an event already stored (a replay) is skipped."""
    from django.db import transaction

    from usage.models import UsageEvent
    from usage.rows import Adapter, insert_statement, rows_insert

    adapt = Adapter()
    recorded_at = adapt.moment(datetime.now(UTC))
    rows = [_event_row(record, recorded_at, adapt) for record in records]
    with transaction.atomic(savepoint=False):
        rows_insert(insert_statement(UsageEvent, _EVENT_COLUMNS, connection.vendor), rows)


class Spool:
    """Append-only JSON-lines files holding events the database did not take."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def _path(self) -> Path:
        return self.directory / f"usage-{os.getpid()}.jsonl"

    def append(self, records: list[UsageRecord]) -> None:
        # Serialized (and so the request logs redacted) before the lock: a slow redaction must
        # not hold up other appends.
        lines = [record.to_json() + "\n" for record in records]
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._path().open("a", encoding="utf-8") as handle:
                for line in lines:
                    handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())

    def depth(self) -> int:
        """Events waiting in spool files (all processes')."""
        total = 0
        for path in self.directory.glob("usage-*.jsonl*"):
            # A file may be claimed (renamed) or replayed away between the listing and the
            # read: then its events are counted under its new name, or written already.
            with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
                total += sum(1 for _ in handle)
        return total

    def replay(self) -> int:
        """Write spooled events to the database; returns how many. Files are claimed by renaming
        them first, so two processes never replay the same file."""
        replayed = 0
        if not self.directory.exists():
            return 0
        for path in sorted(self.directory.glob("usage-*.jsonl")):
            # A unique claim name: a rename never replaces a claim a failed replay left behind.
            claimed = path.with_name(f"{path.name}.replaying-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            with self._lock:
                try:
                    path.rename(claimed)
                except FileNotFoundError:
                    continue
            replayed += self._replay_file(claimed)
        # Files claimed by this process in an attempt that failed, or by a process that died.
        for claimed in sorted(self.directory.glob("usage-*.jsonl.replaying-*")):
            owner = int(claimed.name.split(".replaying-", 1)[1].split("-", 1)[0])
            if owner != os.getpid() and _process_alive(owner):
                continue
            replayed += self._replay_file(claimed)
        return replayed

    def _replay_file(self, claimed: Path) -> int:
        records: list[UsageRecord] = []
        with claimed.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(UsageRecord.from_json(line))
                except (ValueError, TypeError, KeyError) as exc:
                    # A torn last line (crash while appending) must not block the rest.
                    logger.error("usage spool: skipping unreadable line in %s: %s", claimed, exc)
        for start in range(0, len(records), _BATCH_SIZE):
            _write_batch(records[start : start + _BATCH_SIZE])
        claimed.unlink()
        return len(records)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _database_check(timeout: float) -> None:
    """Raise unless this thread has a connection or the pool hands one out within ``timeout``.

    Only PostgreSQL with Django's pool waits for a connection; without this the writer would
    wait the pool's own timeout on every attempt while the database hangs."""
    pool = getattr(connection, "pool", None)
    if connection.connection is not None or pool is None:
        return
    pool.open()
    probe = pool.getconn(timeout=timeout)
    pool.putconn(probe)


class UsageWriter:
    """The background thread that drains the queue into the database (or the spool)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._queue: queue.SimpleQueue[UsageRecord | None] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pending_touch: dict[int, datetime] = {}
        self._touched_at: dict[int, float] = {}
        self._last_spool_attempt = 0.0
        self._spool_has_data = True  # replay anything left by an earlier run at start
        self._stop_seen = False
        # The batch being written right now: spooled too if the process must exit meanwhile.
        self._in_flight: list[UsageRecord] = []
        # monotonic time of the last failed write; None while the database answers.
        self._failed_at: float | None = None
        # Set by ``close`` at process exit: later events go straight to the spool.
        self._closed = False
        self.written = 0
        self.spooled = 0

    def submit(self, record: UsageRecord) -> None:
        if self._closed:
            # The process is exiting and nothing would write a queued event any more.
            self._spool([record])
            return
        self._ensure_started()
        self._queue.put(record)
        if self._queue.qsize() >= _BATCH_SIZE:
            self._wake.set()

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop_seen = False
                thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
                thread.start()
                self._thread = thread  # published only once started: flush_now may join it

    def _collect(self, block_seconds: float) -> list[UsageRecord]:
        """Up to a batch of records; a stop request sets ``_stop_seen``.

        The thread sleeps for ``block_seconds`` (or until a full batch or a stop wakes it) and
        then drains the queue without blocking: producers on the event loop never wake it per
        event, which under load cost more CPU than the writes themselves.
        """
        if block_seconds > 0:
            self._wake.wait(block_seconds)
            self._wake.clear()
        return self._take(_BATCH_SIZE)

    def _take(self, limit: int | None = None) -> list[UsageRecord]:
        batch: list[UsageRecord] = []
        while limit is None or len(batch) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._stop_seen = True
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        try:
            while not self._stop_seen:
                self._flush(self._collect(_BATCH_WAIT_SECONDS))
        finally:
            # The thread's connection must not outlive it (it would hold a pool slot, and keep
            # a test database from being dropped).
            connection.close()

    def _database_resting(self) -> bool:
        return (
            self._failed_at is not None
            and time.monotonic() - self._failed_at < _SPOOL_RETRY_SECONDS
        )

    def _flush(self, batch: list[UsageRecord]) -> None:
        if self._database_resting():
            if batch:
                self._spool(batch + self._take())
            return
        self._in_flight = batch
        unwritten = batch
        _prepare_logs(batch)
        try:
            close_old_connections()
            if self._spool_has_data and time.monotonic() - self._last_spool_attempt > (
                _SPOOL_RETRY_SECONDS
            ):
                self._last_spool_attempt = time.monotonic()
                _database_check(WRITER_POOL_TIMEOUT_SECONDS)
                replayed = self.spool.replay()
                self._spool_has_data = False
                if replayed:
                    logger.info("usage spool: replayed %d events", replayed)
            if batch:
                _database_check(WRITER_POOL_TIMEOUT_SECONDS)
                _write_batch(batch)
                unwritten = []
                self.written += len(batch)
                USAGE_EVENTS.labels("written").inc(len(batch))
                self._note_used(batch)
            self._failed_at = None
            self._touch_keys()
        except Exception as exc:
            self._failed_at = time.monotonic()
            self._spool_has_data = True
            # Everything queued behind the batch goes to disk too: the database may stay away
            # for long, and memory does not survive a crash.
            pending = unwritten + self._take()
            if pending:
                self._spool(pending)
            logger.warning(
                "usage: database write failed, %d events spooled for replay: %s", len(pending), exc
            )
            close_old_connections()
        finally:
            self._in_flight = []

    def _spool(self, records: list[UsageRecord]) -> None:
        try:
            self.spool.append(records)
        except OSError:
            logger.exception("usage: %d events could not be spooled and are lost", len(records))
            USAGE_EVENTS.labels("lost").inc(len(records))
            return
        self._spool_has_data = True
        self.spooled += len(records)
        USAGE_EVENTS.labels("spooled").inc(len(records))

    def _note_used(self, batch: list[UsageRecord]) -> None:
        for record in batch:
            if record.access_key_id is None:
                continue
            seen = self._pending_touch.get(record.access_key_id)
            if seen is None or record.occurred_at > seen:
                self._pending_touch[record.access_key_id] = record.occurred_at

    def _touch_keys(self) -> None:
        from accounts.services import access_keys_touch

        now = time.monotonic()
        due = {
            key_id: moment
            for key_id, moment in self._pending_touch.items()
            if now - self._touched_at.get(key_id, -_TOUCH_INTERVAL_SECONDS)
            >= (_TOUCH_INTERVAL_SECONDS)
        }
        if not due:
            return
        access_keys_touch(last_used=due)
        for key_id in due:
            self._touched_at[key_id] = now
            del self._pending_touch[key_id]

    def close(self, timeout: float = EXIT_DRAIN_SECONDS) -> None:
        """Drain the queue (``flush_now``) for an exiting process; events recorded afterwards
        (a request cut at the very end) are appended to the spool at once."""
        self.flush_now(timeout)
        self._closed = True
        # Anything submitted between the drain and the flag.
        late = self._take()
        if late:
            self._spool(late)

    def flush_now(self, timeout: float = EXIT_DRAIN_SECONDS) -> None:
        """Stop the thread after it has written everything queued (tests, shutdown).

        Bounded by ``timeout``: when the thread is still busy by then (a database that hangs),
        the batch it is writing and everything still queued are spooled instead, so the process
        can exit without losing them (a batch both written and spooled is counted once)."""
        with self._start_lock:
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
                self._wake.set()
                thread.join(timeout)
                self._thread = None
                if thread.is_alive():
                    stuck = list(self._in_flight) + self._take()
                    logger.warning(
                        "usage: the writer did not finish within %.0f s; %d events spooled",
                        timeout,
                        len(stuck),
                    )
                    if stuck:
                        self._spool(stuck)
                    return
            # What no thread will take is written here: records submitted while the thread was
            # stopping, or put just after a drain stopped it (``submit`` found it running).
            late = self._take()
            if late:
                self._flush(late)


_writer: UsageWriter | None = None
_writer_lock = threading.Lock()


def usage_writer() -> UsageWriter:
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = UsageWriter(Spool(Path(settings.GATEWAY_DATA_DIR) / "spool"))
            # Events still queued when the process exits are written (or spooled), not lost.
            # A server stopped by a signal may skip atexit: usage.lifespan drains it first.
            atexit.register(_writer.close)
        return _writer


@before_scrape
def report_spool_depth() -> None:
    """Set the spool depth gauge (events of every process waiting on disk) for a scrape."""
    USAGE_SPOOL_DEPTH.set(usage_writer().spool.depth())


def usage_writer_back_in_service() -> None:
    """Forget a failed write and a close of this process's writer, if it has one (tests: one
    test's simulated outage or shutdown must not send the next test's events to the spool)."""
    if _writer is not None:
        _writer._failed_at = None
        _writer._closed = False


def record_usage_event(record: UsageRecord) -> None:
    """Queue one usage event for writing. Never blocks and never raises into the proxy."""
    try:
        usage_writer().submit(record)
    except Exception:  # pragma: no cover - a bug here must not break a client's response
        logger.exception("usage: could not queue event %s", record.event_id)


def close_usage_writer(timeout: float = EXIT_DRAIN_SECONDS) -> None:
    """At process exit: write what is queued, or spool what the database does not take within
    ``timeout`` seconds; events recorded later go straight to the spool."""
    usage_writer().close(timeout)


def flush_usage_events(timeout: float = EXIT_DRAIN_SECONDS) -> None:
    """Write everything queued so far, or spool what the database does not take within
    ``timeout`` seconds (used at shutdown and by tests)."""
    usage_writer().flush_now(timeout)
