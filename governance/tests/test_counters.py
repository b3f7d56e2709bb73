"""The counters' arithmetic, the same for the Redis script and the in-process twin: windows,
concurrency slots, budget reservations and settlements, seeds, all-or-nothing admissions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway_project import redis as shared_redis
from governance.counters import (
    BUDGET,
    CONCURRENCY,
    KEY_PREFIX,
    SETTLE_LINGER_SECONDS,
    WINDOW,
    Check,
    Counters,
    LocalCounters,
    Outcome,
    Settlement,
)


@pytest.fixture
def now() -> int:
    """The present in ms: Redis expires keys by its own clock."""
    return int(time.time() * 1000)


class RedisBackend:
    """The Redis script through the same calls as LocalCounters (a fresh event loop each)."""

    def __init__(self) -> None:
        self.counters = Counters()

    def admit(self, checks: list[Check], now_ms: int) -> Outcome:
        async def run() -> Outcome:
            outcome, shared = await self.counters.admit(checks, now_ms)
            assert shared, "Redis did not answer"
            return outcome

        return asyncio.run(run())

    def settle(self, settlements: list[Settlement]) -> None:
        asyncio.run(self.counters.settle(settlements, shared=True))


def _backends() -> list[Any]:
    return ["local", "redis"]


@pytest.fixture(params=_backends())
def backend(request: pytest.FixtureRequest, settings: Any) -> Iterator[Any]:
    if request.param == "local":
        yield LocalCounters()
        return
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL not set")
    yield RedisBackend()
    client = shared_redis.sync_client()
    assert client is not None
    keys = list(client.scan_iter(match=KEY_PREFIX + "test:*"))
    if keys:
        client.delete(*keys)


def _key(name: str) -> str:
    return f"{KEY_PREFIX}test:{name}:{uuid.uuid4().hex[:8]}"


def test_a_window_admits_up_to_its_limit_then_refuses(backend: Any, now: int) -> None:
    key = _key("rpm")
    check = Check(WINDOW, key, limit=3, amount=1, expire_ms=now + 60_000)
    used = [backend.admit([check], now).used[0] for _ in range(3)]
    assert used == [1, 2, 3]
    refused = backend.admit([check], now)
    assert not refused.admitted
    assert refused.refused == 0
    assert refused.used == [3]


def test_a_large_amount_passes_alone_in_an_empty_window_only(backend: Any, now: int) -> None:
    key = _key("tpm")
    big = Check(WINDOW, key, limit=100, amount=500, expire_ms=now + 60_000)
    assert backend.admit([big], now).admitted
    small = Check(WINDOW, key, limit=100, amount=1, expire_ms=now + 60_000)
    assert not backend.admit([small], now).admitted


def test_a_window_is_corrected_by_the_actual_amount(backend: Any, now: int) -> None:
    key = _key("tpm")
    check = Check(WINDOW, key, limit=100, amount=60, expire_ms=now + 60_000)
    assert backend.admit([check], now).used == [60]
    assert not backend.admit([check], now).admitted
    backend.settle([Settlement(WINDOW, key, reserved=60, actual=20)])
    assert backend.admit([check], now).used == [80]


def test_concurrency_slots_are_freed_by_settlement_or_expiry(backend: Any, now: int) -> None:
    key = _key("conc")

    def slot(member: str, expires: int = now + 1_000) -> Check:
        return Check(CONCURRENCY, key, limit=2, expire_ms=expires, member=member)

    assert backend.admit([slot("a")], now).used == [1]
    assert backend.admit([slot("b")], now).used == [2]
    assert backend.admit([slot("c")], now).refused == 0
    backend.settle([Settlement(CONCURRENCY, key, member="a")])
    assert backend.admit([slot("c")], now).admitted
    # b and c were never released: once their slots expire they no longer count.
    assert backend.admit([slot("d", now + 5_000)], now + 1_001).used == [1]


def test_a_budget_asks_for_a_seed_then_reserves_and_settles(backend: Any, now: int) -> None:
    key = _key("budget")

    def reserve(member: str, amount: int, seed: int | None = None) -> Check:
        return Check(
            BUDGET,
            key,
            limit=1_000,
            amount=amount,
            expire_ms=now + 60_000,
            member=member,
            period_end_ms=now + 86_400_000,
            seed=seed,
        )

    needs = backend.admit([reserve("a", 300)], now)
    assert not needs.admitted
    assert needs.needs_seed == [0]
    assert backend.admit([reserve("a", 300, seed=500)], now).used == [800]
    # 800 counted (500 spent, 300 reserved) < 1000: admitted, and reserved on top.
    assert backend.admit([reserve("b", 300)], now).used == [1_100]
    refused = backend.admit([reserve("c", 1)], now)
    assert refused.refused == 0
    assert refused.used == [1_100]
    backend.settle([Settlement(BUDGET, key, member="a", reserved=300, actual=100)])
    backend.settle([Settlement(BUDGET, key, member="b", reserved=300, actual=50)])
    # spent 650, nothing reserved; a seed offered now is ignored (the period exists).
    assert backend.admit([reserve("d", 10, seed=0)], now).used == [660]


def test_an_expired_reservation_is_released_and_its_late_settlement_still_counts(
    backend: Any, now: int
) -> None:
    key = _key("budget")
    check = Check(
        BUDGET,
        key,
        limit=100,
        amount=90,
        expire_ms=now + 1_000,
        member="a",
        period_end_ms=now + 86_400_000,
        seed=0,
    )
    assert backend.admit([check], now).admitted
    later = Check(
        BUDGET,
        key,
        limit=100,
        amount=5,
        expire_ms=now + 90_000,
        member="b",
        period_end_ms=now + 86_400_000,
    )
    assert backend.admit([later], now + 2_000).used == [5]
    backend.settle([Settlement(BUDGET, key, member="a", reserved=90, actual=40)])
    assert backend.admit([later], now + 2_000).used == [50]


def test_an_admission_is_all_or_nothing(backend: Any, now: int) -> None:
    open_key, full_key = _key("rpm"), _key("rpm")
    full = Check(WINDOW, full_key, limit=1, expire_ms=now + 60_000)
    assert backend.admit([full], now).admitted
    both = [Check(WINDOW, open_key, limit=5, expire_ms=now + 60_000), full]
    refused = backend.admit(both, now)
    assert refused.refused == 1
    # The open window was not charged by the refused admission.
    assert backend.admit([both[0]], now).used == [1]


def test_a_new_window_starts_from_zero(backend: Any, now: int) -> None:
    key = _key("rpm")
    assert backend.admit([Check(WINDOW, key, limit=1, expire_ms=now + 1)], now).admitted
    # The in-process twin treats an expired window as empty, as Redis does once it expired.
    local = isinstance(backend, LocalCounters)
    if local:
        assert backend.admit(
            [Check(WINDOW, key, limit=1, expire_ms=now + 60_000)], now + 2
        ).admitted


def test_a_script_redis_does_not_know_is_sent_whole() -> None:
    from redis.exceptions import NoScriptError

    from governance.counters import COUNTERS_SCRIPT

    sent: list[str] = []

    class Client:
        async def evalsha(self, sha: str, count: int, *rest: Any) -> Any:
            sent.append("evalsha")
            raise NoScriptError("NOSCRIPT")

        async def eval(self, script: str, count: int, *rest: Any) -> Any:
            sent.append("eval")
            assert script == COUNTERS_SCRIPT
            assert count == 2
            return [[1, 1]]

    reply = asyncio.run(Counters._run(Client(), ["k", "k"], ["", 0, "w,1,1,0,,,0", 0]))
    assert reply == [[1, 1]]
    assert sent == ["evalsha", "eval"]


def test_redis_away_falls_back_to_this_process_and_settles_there(
    monkeypatch: pytest.MonkeyPatch, now: int, caplog: pytest.LogCaptureFixture
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from gateway_project import redis as shared_redis_module

    attempts: list[str] = []

    class AwayClient:
        async def evalsha(self, *args: Any) -> Any:
            attempts.append("evalsha")
            raise RedisConnectionError("connection refused")

    monkeypatch.setattr(shared_redis_module, "async_client", lambda: AwayClient())
    backend = Counters()
    key = _key("rpm")
    check = Check(WINDOW, key, limit=1, expire_ms=now + 60_000)

    async def run() -> tuple[Outcome, bool]:
        return await backend.admit([check], now)

    outcome, shared = asyncio.run(run())
    assert outcome.admitted
    assert shared is False
    assert attempts == ["evalsha", "evalsha"]  # one retry, then this process counts
    assert "counting in process" in caplog.text
    outcome, _ = asyncio.run(run())
    assert outcome.refused == 0  # the in-process window holds the first request


class RecordingClient:
    """Records the ARGV of each script call (after the KEYS) and answers "admitted, 1 used" to
    each admission in it."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    async def evalsha(self, sha: str, count: int, *rest: Any) -> Any:
        args = list(rest[count:])
        self.calls.append(args)
        return [[1, 1] for _ in range((len(args) - 1) // 3)]


@pytest.fixture
def recording_client(monkeypatch: pytest.MonkeyPatch) -> RecordingClient:
    from gateway_project import redis as shared_redis_module

    client = RecordingClient()
    monkeypatch.setattr(shared_redis_module, "async_client", lambda: client)
    return client


def test_queued_settlements_travel_with_the_next_admission(
    recording_client: RecordingClient, now: int
) -> None:
    backend = Counters()
    check = Check(WINDOW, "w", limit=5, expire_ms=now + 60_000)

    async def run() -> None:
        for i in range(3):
            backend.settle_later([Settlement(CONCURRENCY, "k", member=f"m{i}")], shared=True)
        assert recording_client.calls == []  # nothing sent yet
        outcome, shared = await backend.admit([check], now)
        assert outcome.admitted and shared
        await asyncio.sleep(SETTLE_LINGER_SECONDS * 5)  # the linger ends with nothing left

    asyncio.run(run())
    settled = ";".join(f"c,0,0,m{i}" for i in range(3))
    # One call: the admission's check, and the three settlements (3 of the keys are theirs).
    assert recording_client.calls == [[settled, now, f"w,5,1,{now + 60_000},,,0", 3]]


def test_settlements_no_admission_takes_go_alone_after_the_linger(
    recording_client: RecordingClient,
) -> None:
    backend = Counters()

    async def run() -> None:
        for i in range(5):
            backend.settle_later([Settlement(CONCURRENCY, "k", member=f"m{i}")], shared=True)
        await asyncio.sleep(SETTLE_LINGER_SECONDS * 10)
        backend.settle_later([Settlement(CONCURRENCY, "k", member="late")], shared=True)
        await backend.drain()

    asyncio.run(run())
    assert recording_client.calls == [
        [";".join(f"c,0,0,m{i}" for i in range(5))],
        ["c,0,0,late"],
    ]


def test_admissions_of_one_turn_share_one_script_call(
    recording_client: RecordingClient, now: int
) -> None:
    backend = Counters()

    def check(number: int) -> Check:
        return Check(WINDOW, f"w{number}", limit=5, expire_ms=now + 60_000)

    async def run() -> list[tuple[Outcome, bool]]:
        together = await asyncio.gather(*(backend.admit([check(i)], now) for i in range(4)))
        alone = await backend.admit([check(9)], now)
        return [*together, alone]

    results = asyncio.run(run())
    assert [(outcome.admitted, outcome.used, shared) for outcome, shared in results] == [
        (True, [1], True)
    ] * 5
    spec = f",5,1,{now + 60_000},,,0"
    assert recording_client.calls == [
        # Each admission's keys start where the previous one's end.
        ["", now, "w" + spec, 0, now, "w" + spec, 1, now, "w" + spec, 2, now, "w" + spec, 3],
        ["", now, "w" + spec, 0],
    ]


def test_a_cancelled_request_leaves_the_others_of_its_call_their_answers(
    monkeypatch: pytest.MonkeyPatch, now: int
) -> None:
    from gateway_project import redis as shared_redis_module

    class SlowClient(RecordingClient):
        async def evalsha(self, sha: str, count: int, *rest: Any) -> Any:
            await asyncio.sleep(0.05)
            return await super().evalsha(sha, count, *rest)

    client = SlowClient()
    monkeypatch.setattr(shared_redis_module, "async_client", lambda: client)
    backend = Counters()
    check = Check(WINDOW, "w", limit=5, expire_ms=now + 60_000)

    async def run() -> list[Any]:
        tasks = [asyncio.create_task(backend.admit([check], now)) for _ in range(3)]
        await asyncio.sleep(0.01)  # the call is on its way
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, second, third = asyncio.run(run())
    assert isinstance(second, asyncio.CancelledError)
    assert first[0].admitted and third[0].admitted
    assert len(client.calls) == 1


def test_admissions_sharing_a_call_are_each_all_or_nothing_in_order(
    settings: Any, now: int
) -> None:
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL not set")
    backend = Counters()
    slots = _key("concurrency")
    window = _key("rpm")

    def checks(member: str, amount: int) -> list[Check]:
        return [
            Check(WINDOW, window, limit=10, amount=amount, expire_ms=now + 60_000),
            Check(CONCURRENCY, slots, limit=2, expire_ms=now + 60_000, member=member),
        ]

    async def run() -> list[Outcome]:
        together = await asyncio.gather(
            backend.admit(checks("a", 4), now),
            backend.admit(checks("b", 7), now),  # the window refuses it: takes no slot
            backend.admit(checks("c", 5), now),
            backend.admit(checks("d", 1), now),  # both slots are taken
        )
        assert all(shared for _, shared in together)
        return [outcome for outcome, _ in together]

    try:
        outcomes = asyncio.run(run())
    finally:
        client = shared_redis.sync_client()
        assert client is not None
        client.delete(slots, window)
    assert [outcome.admitted for outcome in outcomes] == [True, False, True, False]
    assert outcomes[0].used == [4, 1]
    assert (outcomes[1].refused, outcomes[1].used) == (0, [4, 0])
    assert outcomes[2].used == [9, 2]
    assert (outcomes[3].refused, outcomes[3].used) == (1, [0, 2])


def test_a_settlement_carried_by_an_admission_frees_the_slot_that_admission_needs(
    settings: Any, now: int
) -> None:
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL not set")
    backend = Counters()
    key = _key("concurrency")

    def slot(member: str) -> Check:
        return Check(CONCURRENCY, key, limit=1, expire_ms=now + 60_000, member=member)

    async def run() -> list[bool]:
        first, _ = await backend.admit([slot("a")], now)
        second, _ = await backend.admit([slot("b")], now)  # "a" holds the only slot
        backend.settle_later([Settlement(CONCURRENCY, key, member="a")], shared=True)
        third, shared = await backend.admit([slot("c")], now)  # carries a's release, first
        assert shared
        await backend.drain()
        return [first.admitted, second.admitted, third.admitted]

    try:
        assert asyncio.run(run()) == [True, False, True]
    finally:
        client = shared_redis.sync_client()
        assert client is not None
        client.delete(key)


def test_the_script_gets_one_key_per_check_and_one_argument_for_all() -> None:
    from governance.counters import _script_arguments

    checks = [
        Check(WINDOW, "w", limit=10, amount=2, expire_ms=60),
        Check(BUDGET, "b", limit=100, amount=7, expire_ms=90, member="m", period_end_ms=120),
        Check(CONCURRENCY, "c", limit=3, expire_ms=90, member="m"),
        Check(BUDGET, "t", limit=50, amount=7, expire_ms=90, member="m", seed=4),
    ]
    keys, args = _script_arguments([(checks, 5)], [])
    # Reservations sets follow the counters, in the order of the budget checks.
    assert keys == ["w", "b", "c", "t", "b:r", "t:r"]
    assert args == ["", 5, "w,10,2,60,,,0;b,100,7,90,m,,120;c,3,1,90,m,,0;b,50,7,90,m,4,0", 0]
    settlements = [Settlement(BUDGET, "s", "m", 7, 3), Settlement(WINDOW, "v", "", 2, 5)]
    keys, args = _script_arguments([], settlements)
    assert keys == ["s", "v", "s:r"]
    assert args == ["b,7,3,m;w,2,5,"]
    # All at once: the settlements' keys first, then each admission's, which says where its
    # own start.
    keys, args = _script_arguments([(checks[:2], 5), (checks[2:3], 6)], settlements)
    assert keys == ["s", "v", "s:r", "w", "b", "b:r", "c"]
    assert args[1:] == [5, "w,10,2,60,,,0;b,100,7,90,m,,120", 3, 6, "c,3,1,90,m,,0", 6]


def test_in_process_expiry_scans_only_when_an_entry_is_due(now: int) -> None:
    local = LocalCounters()

    def slot(member: str, expires: int) -> Check:
        return Check(CONCURRENCY, "k", limit=2, expire_ms=expires, member=member)

    def budget(member: str, expires: int) -> Check:
        return Check(BUDGET, "b", 100, 40, expires, member, period_end_ms=now + 86_400_000, seed=0)

    assert local.admit([slot("late", now + 5_000), budget("late", now + 5_000)], now).admitted
    assert local.admit([slot("early", now + 1_000), budget("early", now + 1_000)], now).admitted
    assert not local.admit([slot("x", now + 9_000)], now + 500).admitted
    # The earliest entry is due: both expired entries are found though added last.
    assert local.admit([slot("x", now + 9_000)], now + 1_500).admitted
    # A settled entry leaves the earliest time early: one more scan, nothing missed.
    local.settle([Settlement(CONCURRENCY, "k", member="late")])
    local.settle([Settlement(BUDGET, "b", member="late", reserved=40, actual=10)])
    assert local.admit([slot("y", now + 9_000), budget("y", now + 9_000)], now + 5_500).admitted
    assert local.spent("b") == (10, 40)
    assert local.in_flight("k", now + 5_500) == 2
