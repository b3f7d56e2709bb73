"""The shared counters of rate limits and budgets: one Redis script per admission, and the same
arithmetic in process for the embedded default (or while Redis is away).

An admission is a list of ``Check``s decided all together, atomically (a Lua script runs alone
in Redis): every check passes and all are applied, or none is applied. Kinds:

- ``WINDOW``: a counter per fixed one-minute window (requests, or tokens per minute). Passes when
  the window is still empty or ``used + amount <= limit`` (a request larger than the whole
  limit still gets through alone in a fresh window, rather than never).
- ``CONCURRENCY``: a sorted set of the requests in flight, each with an expiry so that a slot a
  crashed worker never released frees itself. Passes when ``in flight < limit``.
- ``BUDGET``: ``spent`` and ``reserved`` of one budget period in a hash; reservations also sit
  in a sorted set with an expiry, for the same reason. Passes while ``spent + reserved < limit``
  and then reserves the request's estimated maximum, so requests admitted together can never
  together exceed the limit by more than the last one's reservation (see governance README).
  A period's hash that does not exist (new period, Redis flushed) asks its caller for a seed —
  what the database says was spent — and the admission is retried with it.

``settle`` corrects a window by the request's actual tokens, frees a concurrency slot, and moves
a budget reservation to ``spent`` at its actual amount.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway_project import redis as shared_redis

logger = logging.getLogger(__name__)

WINDOW = "w"
CONCURRENCY = "c"
BUDGET = "b"

# A budget period's counters outlive the period by this much (clock skew between workers).
_BUDGET_GRACE_MS = 3_600_000
_WARN_INTERVAL_SECONDS = 60.0
# How long a settlement for Redis may wait for the next admission of its process to carry it.
# Short: until it is applied, the request still holds its concurrency slot (and its budget
# reservation) for every worker; long enough for a busy worker's next request to come by.
SETTLE_LINGER_SECONDS = 0.002
_NEVER = 2**63


@dataclass(frozen=True, slots=True)
class Check:
    """One counter to check and, when all pass, to charge.

    ``expire_ms``: the window's end (WINDOW), when the slot or reservation is presumed leaked
    (CONCURRENCY, BUDGET). ``period_end_ms``: the budget period's end. ``seed``: a budget's
    spend so far, from the database, used when its hash does not exist.
    """

    kind: str
    key: str
    limit: int
    amount: int = 1
    expire_ms: int = 0
    member: str = ""
    period_end_ms: int = 0
    seed: int | None = None

    @property
    def aux_key(self) -> str:
        return self.key + ":r" if self.kind == BUDGET else self.key


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to correct after the request: ``reserved`` was charged, ``actual`` is the truth."""

    kind: str
    key: str
    member: str = ""
    reserved: int = 0
    actual: int = 0

    @property
    def aux_key(self) -> str:
        return self.key + ":r" if self.kind == BUDGET else self.key


@dataclass(slots=True)
class Outcome:
    """``admitted``; else ``refused`` is the index of the first check that failed. ``used`` per
    check: its count after the admission (or at the refusal, for the refused one).
    ``needs_seed``: indexes of budget checks to retry with a seed (nothing was applied)."""

    admitted: bool
    used: list[int] = field(default_factory=list)
    refused: int | None = None
    needs_seed: list[int] = field(default_factory=list)


# One script call carries the admissions that a worker's requests asked for in the same turn of
# its event loop, and the settlements waiting in the worker (``Counters``): one round trip for
# all of them. KEYS: the settlements' keys (the counter of each, then the reservations set of
# each budget settlement, in order), then each admission's keys (the counter of each check,
# then the reservations set of each budget check). ARGV: the settlements' specs, then three per
# admission: now, its checks' specs, and where its keys start in KEYS (0-based). Specs travel
# in one string each (every argument costs the client CPU to encode and send): specs separated
# by ';', a spec's fields by ','. A check: kind, limit, amount, expiry, member, seed ('' for
# none), period end. A settlement: kind, reserved, actual, member. Settlements are applied
# first (they free what the checks may need); admissions in order, each all or nothing, as if
# each had its own call.
# Returns one reply per admission: {1, used...} admitted, {0, index, used} refused,
# {2, index...} seeds needed.
COUNTERS_SCRIPT = """
local function split(text, separator)
  local out = {}
  for part in string.gmatch(text .. separator, '([^' .. separator .. ']*)' .. separator) do
    out[#out + 1] = part
  end
  return out
end
if ARGV[1] ~= '' then
  local specs = split(ARGV[1], ';')
  local n = #specs
  local next_aux = n
  for i = 1, n do
    local f = split(specs[i], ',')
    local kind = f[1]
    local reserved = tonumber(f[2])
    local actual = tonumber(f[3])
    local member = f[4]
    local key = KEYS[i]
    local aux = key
    if kind == 'b' then
      next_aux = next_aux + 1
      aux = KEYS[next_aux]
    end
    if kind == 'w' then
      if redis.call('EXISTS', key) == 1 and actual ~= reserved then
        redis.call('INCRBY', key, actual - reserved)
      end
    elseif kind == 'c' then
      redis.call('ZREM', key, member)
    else
      local removed = redis.call('ZREM', aux, member .. '|' .. reserved)
      if redis.call('EXISTS', key) == 1 then
        if removed == 1 then redis.call('HINCRBY', key, 'r', -reserved) end
        redis.call('HINCRBY', key, 's', actual)
      end
    end
  end
end
local function admit(base, now, spec)
  if spec == '' then return {1} end
  local specs = split(spec, ';')
  local n = #specs
  local auxes = {}
  local next_aux = base + n
  local used = {}
  local need = {}
  for i = 1, n do
    local f = split(specs[i], ',')
    specs[i] = f
    local kind = f[1]
    local limit = tonumber(f[2])
    local amount = tonumber(f[3])
    local key = KEYS[base + i]
    local aux = key
    if kind == 'b' then
      next_aux = next_aux + 1
      aux = KEYS[next_aux]
    end
    auxes[i] = aux
    local current = 0
    if kind == 'w' then
      current = tonumber(redis.call('GET', key) or '0')
      if current > 0 and current + amount > limit then return {0, i, current} end
    elseif kind == 'c' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      current = redis.call('ZCARD', key)
      if current >= limit then return {0, i, current} end
    else
      local seed = f[6]
      local exists = redis.call('EXISTS', key)
      if exists == 0 and seed == '' then
        need[#need + 1] = i
      else
        if exists == 0 then
          redis.call('HSET', key, 's', seed, 'r', 0)
          redis.call('PEXPIREAT', key, tonumber(f[7]) + __GRACE_MS__)
        end
        local expired = redis.call('ZRANGEBYSCORE', aux, '-inf', now)
        if #expired > 0 then
          local freed = 0
          for _, m in ipairs(expired) do
            freed = freed + tonumber(string.match(m, '|(%-?%d+)$'))
          end
          redis.call('ZREMRANGEBYSCORE', aux, '-inf', now)
          redis.call('HINCRBY', key, 'r', -freed)
        end
        current = tonumber(redis.call('HGET', key, 's') or '0')
          + tonumber(redis.call('HGET', key, 'r') or '0')
        if current >= limit then return {0, i, current} end
      end
    end
    used[i] = current
  end
  if #need > 0 then
    local out = {2}
    for _, i in ipairs(need) do out[#out + 1] = i end
    return out
  end
  local out = {1}
  for i = 1, n do
    local f = specs[i]
    local kind = f[1]
    local amount = tonumber(f[3])
    local expiry = tonumber(f[4])
    local member = f[5]
    local key = KEYS[base + i]
    local aux = auxes[i]
    if kind == 'w' then
      out[#out + 1] = redis.call('INCRBY', key, amount)
      redis.call('PEXPIREAT', key, expiry)
    elseif kind == 'c' then
      redis.call('ZADD', key, expiry, member)
      redis.call('PEXPIREAT', key, expiry)
      out[#out + 1] = used[i] + 1
    else
      redis.call('HINCRBY', key, 'r', amount)
      redis.call('ZADD', aux, expiry, member .. '|' .. amount)
      redis.call('PEXPIREAT', aux, tonumber(f[7]) + __GRACE_MS__)
      out[#out + 1] = used[i] + amount
    end
  end
  return out
end
local replies = {}
for j = 2, #ARGV, 3 do
  replies[#replies + 1] = admit(tonumber(ARGV[j + 2]), tonumber(ARGV[j]), ARGV[j + 1])
end
return replies
""".replace("__GRACE_MS__", str(_BUDGET_GRACE_MS))


def _parse(reply: list[Any], count: int) -> Outcome:
    status = int(reply[0])
    if status == 1:
        return Outcome(admitted=True, used=[int(value) for value in reply[1:]])
    if status == 2:
        return Outcome(admitted=False, needs_seed=[int(value) - 1 for value in reply[1:]])
    index = int(reply[1]) - 1
    used = [0] * count
    used[index] = int(reply[2])
    return Outcome(admitted=False, refused=index, used=used)


def _script_arguments(
    admissions: list[tuple[list[Check], int]], settlements: list[Settlement]
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``COUNTERS_SCRIPT`` for ``admissions`` (checks, now in ms), after
    ``settlements``."""
    keys = [item.key for item in settlements]
    keys += [item.aux_key for item in settlements if item.kind == BUDGET]
    args: list[Any] = [
        ";".join(f"{item.kind},{item.reserved},{item.actual},{item.member}" for item in settlements)
    ]
    for checks, now_ms in admissions:
        spec = ";".join(
            f"{check.kind},{check.limit},{check.amount},{check.expire_ms},{check.member},"
            f"{'' if check.seed is None else check.seed},{check.period_end_ms}"
            for check in checks
        )
        args += [now_ms, spec, len(keys)]
        keys += [check.key for check in checks]
        keys += [check.aux_key for check in checks if check.kind == BUDGET]
    return keys, args


class LocalCounters:
    """The script's arithmetic on this process's memory: exact for one process (the embedded
    default), and what a process falls back on while Redis is away."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (count, expires at)
        self._slots: dict[str, dict[str, int]] = {}  # key -> member -> expires at
        self._budgets: dict[str, dict[str, int]] = {}  # key -> {"s", "r", "expires"}
        self._reservations: dict[str, dict[str, tuple[int, int]]] = {}  # member -> (amount, exp)
        # Per slots or reservations key: no entry expires before this time, so the admissions
        # before it skip the scan for expired ones (which costs as many steps as requests are
        # in flight). A settled entry may leave it early: that costs one scan, never a miss.
        self._earliest_expiry: dict[str, int] = {}
        self._last_sweep = 0

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._slots.clear()
            self._budgets.clear()
            self._reservations.clear()
            self._earliest_expiry.clear()

    def _sweep(self, now_ms: int) -> None:
        """Drop expired windows and budget periods (at most once a minute)."""
        if now_ms - self._last_sweep < 60_000:
            return
        self._last_sweep = now_ms
        for key in [k for k, (_, expires) in self._windows.items() if expires <= now_ms]:
            del self._windows[key]
        for key in [k for k, b in self._budgets.items() if b["expires"] <= now_ms]:
            del self._budgets[key]
            self._reservations.pop(key, None)
            self._earliest_expiry.pop(key, None)
        for key in [k for k, members in self._slots.items() if not members]:
            del self._slots[key]
            self._earliest_expiry.pop(key, None)

    def _current(self, check: Check, now_ms: int) -> int | None:
        """The check's count now, or None when a budget needs a seed."""
        if check.kind == WINDOW:
            count, expires = self._windows.get(check.key, (0, 0))
            return count if expires > now_ms else 0
        if check.kind == CONCURRENCY:
            slots = self._slots.setdefault(check.key, {})
            if self._earliest_expiry.get(check.key, 0) <= now_ms:
                for member in [m for m, expires in slots.items() if expires <= now_ms]:
                    del slots[member]
                self._earliest_expiry[check.key] = min(slots.values(), default=_NEVER)
            return len(slots)
        budget = self._budgets.get(check.key)
        if budget is None or budget["expires"] <= now_ms:
            if check.seed is None:
                return None
            budget = self._budgets[check.key] = {
                "s": check.seed,
                "r": 0,
                "expires": check.period_end_ms + _BUDGET_GRACE_MS,
            }
            self._reservations[check.key] = {}
        reservations = self._reservations.setdefault(check.key, {})
        if self._earliest_expiry.get(check.key, 0) <= now_ms:
            for member in [m for m, (_, exp) in reservations.items() if exp <= now_ms]:
                budget["r"] -= reservations.pop(member)[0]
            self._earliest_expiry[check.key] = min(
                (exp for _, exp in reservations.values()), default=_NEVER
            )
        return budget["s"] + budget["r"]

    def _expires_by(self, key: str, expires: int) -> None:
        if expires < self._earliest_expiry.get(key, _NEVER):
            self._earliest_expiry[key] = expires

    def admit(self, checks: list[Check], now_ms: int) -> Outcome:
        with self._lock:
            self._sweep(now_ms)
            used: list[int] = []
            needs_seed: list[int] = []
            for index, check in enumerate(checks):
                current = self._current(check, now_ms)
                if current is None:
                    needs_seed.append(index)
                    used.append(0)
                    continue
                refused = (
                    current > 0 and current + check.amount > check.limit
                    if check.kind == WINDOW
                    else current >= check.limit
                )
                if refused:
                    counts = [0] * len(checks)
                    counts[index] = current
                    return Outcome(admitted=False, refused=index, used=counts)
                used.append(current)
            if needs_seed:
                return Outcome(admitted=False, needs_seed=needs_seed)
            after: list[int] = []
            for check, current in zip(checks, used, strict=True):
                if check.kind == WINDOW:
                    self._windows[check.key] = (current + check.amount, check.expire_ms)
                    after.append(current + check.amount)
                elif check.kind == CONCURRENCY:
                    self._slots[check.key][check.member] = check.expire_ms
                    self._expires_by(check.key, check.expire_ms)
                    after.append(current + 1)
                else:
                    self._budgets[check.key]["r"] += check.amount
                    self._reservations[check.key][check.member] = (check.amount, check.expire_ms)
                    self._expires_by(check.key, check.expire_ms)
                    after.append(current + check.amount)
            return Outcome(admitted=True, used=after)

    def settle(self, settlements: list[Settlement]) -> None:
        with self._lock:
            for item in settlements:
                if item.kind == WINDOW:
                    entry = self._windows.get(item.key)
                    if entry is not None:
                        self._windows[item.key] = (entry[0] + item.actual - item.reserved, entry[1])
                elif item.kind == CONCURRENCY:
                    self._slots.get(item.key, {}).pop(item.member, None)
                else:
                    budget = self._budgets.get(item.key)
                    if budget is None:
                        continue
                    reservation = self._reservations.get(item.key, {}).pop(item.member, None)
                    if reservation is not None:
                        budget["r"] -= reservation[0]
                    budget["s"] += item.actual

    def spent(self, key: str) -> tuple[int, int] | None:
        """``(spent, reserved)`` of a budget period, if counted here."""
        with self._lock:
            budget = self._budgets.get(key)
            return None if budget is None else (budget["s"], budget["r"])

    def in_flight(self, key: str, now_ms: int) -> int:
        with self._lock:
            return sum(1 for exp in self._slots.get(key, {}).values() if exp > now_ms)


@dataclass(slots=True)
class _Waiting:
    """An admission waiting for its turn's script call."""

    checks: list[Check]
    now_ms: int
    reply: asyncio.Future[Outcome | None]  # None: Redis did not answer


class Counters:
    """Redis when configured (exact across worker processes), else this process's memory. A
    Redis failure falls back to memory for that request, with a warning at most once a minute:
    limits then hold per process, which beats refusing every request.

    Calls to Redis are shared, as a database shares one commit among transactions that finish
    together: the admissions that this worker's requests ask for in the same turn of its event
    loop go in one script call, with the settlements waiting in the worker. Settlements wait at
    most ``SETTLE_LINGER_SECONDS`` for an admission to carry them, then go on their own. A busy
    worker thus spends less than one round trip per request, and the client side of a call
    (redis-py's connection pool, packing, the reply's trip through the event loop), which costs
    more CPU than the script's arguments, is paid once per turn instead of once per request.
    """

    def __init__(self) -> None:
        self.local = LocalCounters()
        self._batch: list[Settlement] = []
        self._waiting: list[_Waiting] = []
        self._waiting_loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._warned_at = 0.0

    def _warn(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_INTERVAL_SECONDS:
            self._warned_at = now
            logger.warning(
                "governance: Redis unavailable for %s, counting in process: %s", what, exc
            )

    @staticmethod
    async def _run(client: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA, loading the script once if Redis does not know it (a restart, a flush):
        cheaper on the client than redis-py's Script wrapper."""
        try:
            return await client.evalsha(_SHA, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(COUNTERS_SCRIPT, len(keys), *keys, *args)

    def _take_batch(self) -> list[Settlement]:
        batch, self._batch = self._batch, []
        return batch

    async def admit(self, checks: list[Check], now_ms: int) -> tuple[Outcome, bool]:
        """The outcome, and whether Redis decided it (settle with the same backend)."""
        if shared_redis.async_client() is not None:
            loop = asyncio.get_running_loop()
            if self._waiting_loop is not loop:
                self._waiting = []  # those of a finished event loop (tests) are never sent
                self._waiting_loop = loop
            waiting = _Waiting(checks, now_ms, loop.create_future())
            self._waiting.append(waiting)
            if len(self._waiting) == 1:
                # After the requests already runnable in this turn have joined.
                loop.call_soon(self._send_admissions)
            outcome = await waiting.reply
            if outcome is not None:
                return outcome, True
        return self.local.admit(checks, now_ms), False

    def _send_admissions(self) -> None:
        waiting, self._waiting = self._waiting, []
        # A task of its own: the call must finish for every request of the turn, whichever of
        # them is cancelled (a client that goes away).
        self._start_call(self._admit_together(waiting))

    def _start_call(self, call: Coroutine[Any, Any, None]) -> None:
        """Run a script call as a task that ``drain`` waits for."""
        task = asyncio.get_running_loop().create_task(call)
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _admit_together(self, waiting: list[_Waiting]) -> None:
        replies: list[Any] | None = None
        try:
            client = shared_redis.async_client()
            if client is not None:
                keys, args = _script_arguments(
                    [(entry.checks, entry.now_ms) for entry in waiting], self._take_batch()
                )
                # Twice: a burst of requests opens many connections at once, and on a busy
                # host one of them may miss the short connect timeout. A reply lost after the
                # script ran would apply the settlements twice; losing them instead would leak
                # slots and reservations until they expire, and undercount spend: worse.
                for attempt in range(2):
                    try:
                        replies = await self._run(client, keys, args)
                    except (ConnectionError, TimeoutError, RedisError) as exc:
                        if attempt == 0 and isinstance(
                            exc, RedisConnectionError | RedisTimeoutError
                        ):
                            continue
                        self._warn("admission", exc)
                    break
        finally:
            for index, entry in enumerate(waiting):
                if entry.reply.done():
                    continue  # its request was cancelled
                outcome = None
                if replies is not None:
                    try:
                        outcome = _parse(replies[index], len(entry.checks))
                    except (IndexError, TypeError, ValueError) as exc:
                        self._warn("admission", exc)
                entry.reply.set_result(outcome)

    def settle_later(self, settlements: list[Settlement], *, shared: bool) -> None:
        """Queue settlements: for Redis (``shared``) with this process's next admission, or on
        their own within ``SETTLE_LINGER_SECONDS``; in process at once. Never waits."""
        if not settlements:
            return
        if not shared:
            self.local.settle(settlements)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.settle_sync(settlements, shared=shared)
            return
        self._batch.extend(settlements)
        if self._flush_handle is not None and self._flush_loop is loop:
            return
        self._flush_loop = loop
        self._flush_handle = loop.call_later(SETTLE_LINGER_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        if not self._batch:
            return  # an admission took them
        self._start_call(self._send(self._take_batch()))

    async def _send(self, batch: list[Settlement]) -> None:
        client = shared_redis.async_client()
        if client is None:
            self.local.settle(batch)
            return
        keys, args = _script_arguments([], batch)
        try:
            await self._run(client, keys, args)
        except Exception as exc:
            self._warn("settlement", exc)

    async def settle(self, settlements: list[Settlement], *, shared: bool) -> None:
        """Settle now, with what is queued (tests; shutdown)."""
        self.settle_later(settlements, shared=shared)
        await self.drain()

    async def drain(self) -> None:
        """Send the queued settlements now and wait for those on their way."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._batch:
            await self._send(self._take_batch())
        loop = asyncio.get_running_loop()
        # Flushes of another event loop (a finished one, in tests) never complete: not awaited.
        while pending := [task for task in self._flushes if task.get_loop() is loop]:
            await asyncio.gather(*pending, return_exceptions=True)

    def settle_sync(self, settlements: list[Settlement], *, shared: bool) -> None:
        """Settle outside an event loop, at once."""
        if not settlements:
            return
        client = shared_redis.sync_client() if shared else None
        if client is not None:
            keys, args = _script_arguments([], settlements)
            try:
                client.eval(COUNTERS_SCRIPT, len(keys), *keys, *args)
            except Exception as exc:
                self._warn("settlement", exc)
            return
        if not shared:
            self.local.settle(settlements)

    def budget_state_sync(self, key: str) -> tuple[int, int] | None:
        """``(spent, reserved)`` of a budget period as counted now (for the state API)."""
        client = shared_redis.sync_client()
        if client is not None:
            try:
                values = client.hmget(key, ["s", "r"])
            except Exception as exc:
                self._warn("state", exc)
            else:
                if values[0] is None:
                    return None
                return int(values[0]), int(values[1] or 0)
        return self.local.spent(key)

    def in_flight_sync(self, key: str, now_ms: int) -> int:
        client = shared_redis.sync_client()
        if client is not None:
            try:
                return int(client.zcount(key, now_ms + 1, "+inf"))
            except Exception as exc:
                self._warn("state", exc)
        return self.local.in_flight(key, now_ms)

    def reset(self) -> None:
        """Forget every counter, here and in Redis (tests)."""
        self.local.reset()
        self._batch.clear()
        self._waiting.clear()
        self._flushes.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        client = shared_redis.sync_client()
        if client is None:
            return
        keys = list(client.scan_iter(match=KEY_PREFIX + "*", count=500))
        if keys:
            client.delete(*keys)


KEY_PREFIX = "gateway:gov:"
_SHA = hashlib.sha1(COUNTERS_SCRIPT.encode(), usedforsecurity=False).hexdigest()
counters = Counters()
