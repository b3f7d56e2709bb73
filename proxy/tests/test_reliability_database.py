"""The database away during load: requests with cached keys are served, usage events are spooled
and written after recovery, each exactly once.

The usage writer's database writes are made to fail (``usage.recording._write_batch`` raising
``OperationalError``) while the gateway serves; the real outage, a TCP cut in front of
PostgreSQL, is ``bench/reliability/pg_outage.py``. Key lookups with the database away are
tested by making ``accounts.selectors.key_metadata_load`` fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import OperationalError

from accounts import selectors as account_selectors
from accounts.services import access_key_create
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError
from proxy.tests.conftest import GatewayServer, KeyHolder
from proxy.tests.test_reliability_support import (
    LoadRunner,
    Outcome,
    assert_error_response,
    report_counts,
)
from usage import recording
from usage.models import UsageEvent
from usage.recording import Spool, UsageRecord, usage_writer

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-6"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CLIENT_HEADERS = {"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"}
OUTAGE_SECONDS = 2.0


@pytest.fixture
def fake(fake_upstream_settings: FakeUpstream) -> FakeUpstream:
    fake_upstream_settings.answer = ScriptedAnswer.text(
        "Hello there.", usage={"input_tokens": 11, "output_tokens": 3}
    )
    return fake_upstream_settings


class FlakyWrites:
    """Stands in for ``_write_batch``: fails while ``failing``; in ``commit_then_fail`` mode the
    batch is written and the error comes after (a connection lost just after COMMIT)."""

    def __init__(self, original: Callable[[list[UsageRecord]], None]) -> None:
        self.original = original
        self.failing = False
        self.commit_then_fail = False
        self.failures = 0

    def __call__(self, records: list[UsageRecord]) -> None:
        if self.failing:
            self.failures += 1
            if self.commit_then_fail:
                self.original(records)
            raise OperationalError("server closed the connection unexpectedly (simulated)")
        self.original(records)


@pytest.fixture
def flaky_writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FlakyWrites:
    """The writer's database writes under the test's control, its spool in a private directory
    (other test processes replay spool files they find in a shared one), replays retried fast."""
    writer = usage_writer()
    monkeypatch.setattr(writer.spool, "directory", tmp_path / "spool")
    monkeypatch.setattr(recording, "_SPOOL_RETRY_SECONDS", 0.2)
    flaky = FlakyWrites(recording._write_batch)
    monkeypatch.setattr(recording, "_write_batch", flaky)
    return flaky


def _wait_for_spool_replayed(timeout: float = 10.0) -> None:
    """Until the writer, replaying on its own, has emptied its spool."""
    spool = usage_writer().spool
    deadline = time.monotonic() + timeout
    while spool.depth() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spool.depth() == 0, "the spool was not replayed"


def _run_outage(gateway: GatewayServer, key: str, flaky: FlakyWrites) -> list[Outcome]:
    load = LoadRunner(
        url=gateway.key_url(key) + "/v1/messages", body=BODY, headers=CLIENT_HEADERS
    ).start()
    load.wait_for(30)
    flaky.failing = True
    outage_ends = time.monotonic() + OUTAGE_SECONDS
    load.wait_for(load.done + 100)
    time.sleep(max(0.0, outage_ends - time.monotonic()))
    flaky.failing = False
    load.wait_for(load.done + 30)
    return load.stop()


def _assert_each_request_recorded_once(outcomes: list[Outcome]) -> int:
    served = [outcome for outcome in outcomes if outcome.status == 200]
    assert len(served) == len(outcomes), [o for o in outcomes if o.status != 200][:3]
    events = list(UsageEvent.objects.values_list("request_id", "event_id"))
    request_ids = [request_id for request_id, _ in events]
    assert len(set(request_ids)) == len(request_ids), "an event was recorded twice"
    assert len({event_id for _, event_id in events}) == len(events)
    assert set(request_ids) == {outcome.request_id for outcome in served}
    return len(events)


def test_usage_survives_a_database_outage_during_load(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    flaky_writes: FlakyWrites,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spooled_before = usage_writer().spooled
    outcomes = _run_outage(gateway_server, key_holder.plaintext, flaky_writes)
    assert flaky_writes.failures > 0
    assert usage_writer().spooled > spooled_before  # the outage did reach the writer

    _wait_for_spool_replayed()
    recording.flush_usage_events()
    recorded = UsageEvent.objects.count()
    # Reported before the checks, so that a loss shows in CI's output with its size.
    report_counts(
        capsys,
        "database writes failing during load",
        requests_served=len(outcomes),
        events_recorded=recorded,
        events_lost=len(outcomes) - recorded,
    )
    assert _assert_each_request_recorded_once(outcomes) == len(outcomes)


def test_a_batch_written_before_its_error_is_not_counted_twice(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    flaky_writes: FlakyWrites,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flaky_writes.commit_then_fail = True
    outcomes = _run_outage(gateway_server, key_holder.plaintext, flaky_writes)
    assert flaky_writes.failures > 0
    # Everything spooled was already written: the replays must add nothing.
    _wait_for_spool_replayed()
    recording.flush_usage_events()
    recorded = UsageEvent.objects.count()
    report_counts(
        capsys,
        "database errors after commit",
        requests_served=len(outcomes),
        events_recorded=recorded,
        events_lost=len(outcomes) - recorded,
    )
    assert _assert_each_request_recorded_once(outcomes) == len(outcomes)


def test_spooled_events_survive_repeated_failed_replays(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    written: list[UsageRecord] = []
    database_up = False

    def write(records: list[UsageRecord]) -> None:
        if not database_up:
            raise OperationalError("connection refused (simulated)")
        written.extend(records)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recording, "_write_batch", write)
        for request_id in ("first", "second", "third"):
            spool.append([UsageRecord(provider="anthropic", request_id=request_id)])
            with pytest.raises(OperationalError):
                spool.replay()
        database_up = True
        spool.replay()
    assert sorted(record.request_id for record in written) == ["first", "second", "third"]
    assert spool.depth() == 0


# --- key lookups with the database away -----------------------------------------------------


def _database_down(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError("connection refused (simulated)")


def _post(gateway: GatewayServer, key: str) -> httpx.Response:
    return httpx.post(
        gateway.key_url(key) + "/v1/messages", json=BODY, headers=CLIENT_HEADERS, timeout=10
    )


def test_cached_keys_are_served_while_the_database_is_down(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    monkeypatch.setattr(account_selectors, "key_metadata_load", _database_down)
    for _ in range(5):
        assert _post(gateway_server, key_holder.plaintext).status_code == 200


def test_an_expired_cache_entry_is_served_while_the_database_is_down(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    """With the default 30 s TTL, a 30 s outage expires every cached key part-way through."""
    settings.GATEWAY_KEY_CACHE_TTL = 0.2
    assert _post(gateway_server, key_holder.plaintext).status_code == 200
    monkeypatch.setattr(account_selectors, "key_metadata_load", _database_down)
    time.sleep(0.3)
    response = _post(gateway_server, key_holder.plaintext)
    assert response.status_code == 200, response.text[:300]


def test_an_uncached_key_with_the_database_down_gets_an_anthropic_error(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(account_selectors, "key_metadata_load", _database_down)
    response = _post(gateway_server, key_holder.plaintext)
    assert_error_response(response, 503, "overloaded_error")


def test_fallbacks_keep_their_model_map_while_the_database_is_down(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    bedrock_credential: None,
    fake: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxy import routing

    fake.set_default_fault("anthropic", HttpError(status=529))
    warm = _post(gateway_server, key_holder.plaintext)
    assert warm.headers["x-gateway-provider"] == "bedrock"

    monkeypatch.setattr(routing.model_map, "_load", _database_down)
    monkeypatch.setattr(routing, "MAP_TTL", 0.0)  # the map is due for a reload at every request
    response = _post(gateway_server, key_holder.plaintext)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-gateway-provider"] == "bedrock"


def test_database_lookups_of_different_requests_run_side_by_side(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    fake: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three requests with uncached keys: their lookups must be able to wait at the same time
    (accounts.keycache reads on a thread pool of its own, not on the event loop's one
    thread-sensitive thread, where a hanging database would queue every lookup)."""
    keys = [access_key_create(user=key_holder.user, label=f"key {n}")[1] for n in range(3)]
    together = threading.Barrier(3, timeout=3)
    original = account_selectors.key_metadata_load

    def slow_lookup(prefix: str) -> Any:
        try:
            together.wait()  # a slow database: returns only once all three are waiting
        except threading.BrokenBarrierError:
            raise OperationalError("the lookups were made one after the other") from None
        return original(prefix)

    monkeypatch.setattr(account_selectors, "key_metadata_load", slow_lookup)
    with ThreadPoolExecutor(max_workers=3) as pool:
        responses = list(pool.map(lambda key: _post(gateway_server, key), keys))
    assert [response.status_code for response in responses] == [200, 200, 200]
