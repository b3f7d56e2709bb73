"""Per-credential state of the key pools, shared by the gateway's worker processes.

Kept in process and, when Redis is configured, shared much like circuit breakers
(``proxy.circuit``): a request reads only this process's memory; a transition (a cooldown, a
credential the gateway disabled) is written to Redis at once, and a background task of each
process reads everybody's state back once a second (one pipelined round trip, which also sends
this process's counts). So cooldowns cost no Redis round trip per request, and a cooldown set by
one worker reaches the others within about a second.

- **Cooldowns**: ``until`` (wall clock) per credential. They only grow: a later 429 may extend a
  cooldown, never shorten it (the shared write is a script that keeps the later time).
- **Disabled marks**: when the gateway disables a credential (quota, refused key) the database
  row is the truth; the mark only hides the member from key metadata loaded before that moment,
  until the invalidation reloads it.
- **Use**: requests in flight and requests/tokens in the current minute per credential, this
  process's own counted exactly, the other processes' as of the last sync: what the
  least-in-flight and least-tokens strategies compare. Exact limits (a member's RPM, TPM and
  concurrency) are counted by ``proxy.pools.limits`` instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from gateway_project import redis as shared_redis

logger = logging.getLogger(__name__)

SYNC_INTERVAL = 1.0
KEY_PREFIX = "gateway:pool:"
COOLDOWNS_KEY = KEY_PREFIX + "cooldowns"
DISABLED_KEY = KEY_PREFIX + "disabled"
IN_FLIGHT_KEY = KEY_PREFIX + "inflight"
_USAGE_PREFIX = KEY_PREFIX + "usage:"
# Another process's in-flight count older than this is from a process that is gone.
_IN_FLIGHT_STALE_MS = 5_000
# A request that never reported its end stops counting as in flight after this.
_LEASE_SECONDS = 900.0
# Marks and cooldowns that ended this long ago are removed from Redis.
_FORGET_AFTER = 3600.0

# Keeps the later of two cooldowns: KEYS[1] the hash; ARGV: credential id, until, reason.
EXTEND_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local current_end = tonumber(string.match(current, '^([^|]*)'))
  if current_end and current_end >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return 1
"""


def minute_of(now: float) -> int:
    return int(now // 60)


@dataclass
class MemberState:
    """One credential, as this process knows it."""

    cooldown_until: float = 0.0
    cooldown_reason: str = ""
    disabled_at: float = 0.0
    disabled_reason: str = ""
    # request id → start (monotonic) of this process's requests in flight
    flights: dict[str, float] = field(default_factory=dict)
    others_in_flight: int = 0
    published_in_flight: int = 0
    minute: int = 0
    shared_requests: int = 0  # every process, this minute, as of the last sync
    shared_tokens: int = 0
    unsent_requests: int = 0  # counted here, not yet added to Redis
    unsent_tokens: int = 0
    unsent_minute: int = 0

    def in_flight(self, monotonic_now: float) -> int:
        if any(monotonic_now - started > _LEASE_SECONDS for started in self.flights.values()):
            for request_id in [
                r for r, started in self.flights.items() if monotonic_now - started > _LEASE_SECONDS
            ]:
                del self.flights[request_id]
        return len(self.flights)

    def roll(self, minute: int) -> None:
        if minute != self.minute:
            self.minute = minute
            self.shared_requests = self.shared_tokens = 0
        if minute != self.unsent_minute:
            self.unsent_minute = minute
            self.unsent_requests = self.unsent_tokens = 0


class PoolState:
    """Every credential's state in this process; the module's ``pool_state`` is the one."""

    def __init__(self) -> None:
        self._members: dict[int, MemberState] = {}
        self._turns: dict[tuple[int, ...], int] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.process = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def member(self, credential_id: int) -> MemberState:
        state = self._members.get(credential_id)
        if state is None:
            state = self._members[credential_id] = MemberState()
        return state

    # --- reads on the request path (memory only) ----------------------------------------------

    def cooling_until(self, credential_id: int, now: float) -> float | None:
        state = self._members.get(credential_id)
        if state is None or state.cooldown_until <= now:
            return None
        return state.cooldown_until

    def disabled_since(self, credential_id: int) -> float:
        state = self._members.get(credential_id)
        return 0.0 if state is None else state.disabled_at

    def in_flight(self, credential_id: int) -> int:
        state = self._members.get(credential_id)
        if state is None:
            return 0
        return state.in_flight(time.monotonic()) + state.others_in_flight

    def tokens_this_minute(self, credential_id: int, now: float) -> int:
        state = self._members.get(credential_id)
        if state is None:
            return 0
        state.roll(minute_of(now))
        return max(state.shared_tokens, 0) + state.unsent_tokens

    def requests_this_minute(self, credential_id: int, now: float) -> int:
        state = self._members.get(credential_id)
        if state is None:
            return 0
        state.roll(minute_of(now))
        return max(state.shared_requests, 0) + state.unsent_requests

    def next_turn(self, pool: tuple[int, ...]) -> int:
        """The round-robin position of this pool, counted per process."""
        turn = self._turns.get(pool, 0)
        self._turns[pool] = turn + 1
        return turn

    # --- transitions --------------------------------------------------------------------------

    def extend_cooldown(self, credential_id: int, *, until: float, reason: str) -> bool:
        """Cool a credential down until ``until``; a shorter cooldown than the current one
        changes nothing. True when it changed."""
        state = self.member(credential_id)
        if until <= state.cooldown_until:
            return False
        state.cooldown_until = until
        state.cooldown_reason = reason
        self._spawn(self._publish_cooldown(credential_id, until, reason))
        return True

    def mark_disabled(self, credential_id: int, *, reason: str, at: float) -> None:
        state = self.member(credential_id)
        if at > state.disabled_at:
            state.disabled_at = at
            state.disabled_reason = reason
            payload = json.dumps({"at": at, "reason": reason})
            self._spawn(self._shared_call("hset", DISABLED_KEY, str(credential_id), payload))

    def started(self, credential_id: int, request_id: str, now: float) -> None:
        state = self.member(credential_id)
        state.flights[request_id] = time.monotonic()
        self._count(state, now, requests=1, tokens=0)

    def finished(self, credential_id: int, request_id: str, *, tokens: int, now: float) -> None:
        state = self.member(credential_id)
        state.flights.pop(request_id, None)
        if tokens:
            self._count(state, now, requests=0, tokens=tokens)

    def _count(self, state: MemberState, now: float, *, requests: int, tokens: int) -> None:
        # What another minute counted is of no use any more, here or in Redis.
        state.roll(minute_of(now))
        state.unsent_requests += requests
        state.unsent_tokens += tokens

    # --- sharing ------------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coroutine.close()
            return
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` off the request path (a database write after a fault)."""
        self._spawn(coroutine)

    async def _shared_call(self, method: str, *args: Any) -> None:
        client = shared_redis.async_client()
        if client is None:
            return
        try:
            await getattr(client, method)(*args)
        except Exception as exc:
            logger.warning("pools: cannot share state: %s", exc)

    async def _publish_cooldown(self, credential_id: int, until: float, reason: str) -> None:
        client = shared_redis.async_client()
        if client is None:
            return
        try:
            await client.eval(EXTEND_SCRIPT, 1, COOLDOWNS_KEY, str(credential_id), until, reason)
        except Exception as exc:
            logger.warning("pools: cannot share a cooldown: %s", exc)

    async def ensure_synced(self) -> None:
        """Keep this process's view of the shared state fresh: a background task reads it
        once a second for as long as the event loop runs. Only the first request of a process
        (of an event loop) waits, once, for the first read; no other request ever does."""
        if not settings.REDIS_URL:
            return
        loop = asyncio.get_running_loop()
        task = self._sync_task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        first = asyncio.Event()
        self._sync_task = loop.create_task(self._sync_forever(first))
        try:
            async with asyncio.timeout(SYNC_INTERVAL):
                await first.wait()
        except TimeoutError:
            pass

    async def _sync_forever(self, first: asyncio.Event) -> None:
        while True:
            try:
                await self.sync(time.time())
            finally:
                first.set()
            await asyncio.sleep(SYNC_INTERVAL)

    async def sync(self, now: float) -> None:
        """One pipelined round trip: send this process's counts, read everybody's state."""
        client = shared_redis.async_client()
        if client is None:
            return
        minute = minute_of(now)
        usage_key = f"{_USAGE_PREFIX}{minute}"
        now_ms = int(now * 1000)
        sent: list[tuple[MemberState, int, int]] = []
        try:
            pipe = client.pipeline(transaction=False)
            for credential_id, state in list(self._members.items()):
                if state.unsent_minute == minute and (state.unsent_requests or state.unsent_tokens):
                    if state.unsent_requests:
                        pipe.hincrby(usage_key, f"r:{credential_id}", state.unsent_requests)
                    if state.unsent_tokens:
                        pipe.hincrby(usage_key, f"t:{credential_id}", state.unsent_tokens)
                    sent.append((state, state.unsent_requests, state.unsent_tokens))
                count = state.in_flight(time.monotonic())
                field_name = f"{credential_id}:{self.process}"
                if count:
                    pipe.hset(IN_FLIGHT_KEY, field_name, f"{count}|{now_ms}")
                elif state.published_in_flight:
                    pipe.hdel(IN_FLIGHT_KEY, field_name)
                state.published_in_flight = count
            pipe.expire(usage_key, 180)
            pipe.hgetall(COOLDOWNS_KEY)
            pipe.hgetall(DISABLED_KEY)
            pipe.hgetall(usage_key)
            pipe.hgetall(IN_FLIGHT_KEY)
            replies = await pipe.execute()
        except Exception as exc:
            logger.warning("pools: cannot read shared state: %s", exc)
            return
        for state, requests, tokens in sent:
            if state.unsent_minute == minute:  # else rolled over meanwhile, and reset
                state.unsent_requests -= requests
                state.unsent_tokens -= tokens
        cooldowns, disabled, usage, flights = replies[-4:]
        self._adopt(cooldowns, disabled, usage, flights, now=now, minute=minute, now_ms=now_ms)
        stale = [name for name, value in cooldowns.items() if _until(value) < now - _FORGET_AFTER]
        if stale:
            await self._shared_call("hdel", COOLDOWNS_KEY, *stale)

    def _adopt(
        self,
        cooldowns: dict[bytes, bytes],
        disabled: dict[bytes, bytes],
        usage: dict[bytes, bytes],
        flights: dict[bytes, bytes],
        *,
        now: float,
        minute: int,
        now_ms: int,
    ) -> None:
        for name, value in cooldowns.items():
            until = _until(value)
            if until > now:
                state = self.member(int(name))
                if until > state.cooldown_until:
                    state.cooldown_until = until
                    state.cooldown_reason = value.decode().partition("|")[2]
        for name, value in disabled.items():
            try:
                mark = json.loads(value)
                at, reason = float(mark["at"]), str(mark.get("reason", ""))
            except (ValueError, KeyError, TypeError):
                continue
            if at > now - _FORGET_AFTER:
                state = self.member(int(name))
                if at > state.disabled_at:
                    state.disabled_at, state.disabled_reason = at, reason
        totals: dict[int, list[int]] = {}
        for name, value in usage.items():
            kind, _, credential = name.decode().partition(":")
            if credential.isdigit():
                entry = totals.setdefault(int(credential), [0, 0])
                entry[0 if kind == "r" else 1] = int(value)
        for credential_id, (requests, tokens) in totals.items():
            state = self.member(credential_id)
            state.roll(minute)
            # Counted here since the pipeline left: not in the totals yet.
            state.shared_requests = requests
            state.shared_tokens = tokens
        others: dict[int, int] = {}
        for name, value in flights.items():
            credential, _, process = name.decode().partition(":")
            count, _, stamp = value.decode().partition("|")
            if process == self.process or not credential.isdigit():
                continue
            if now_ms - int(stamp or 0) > _IN_FLIGHT_STALE_MS:
                continue
            others[int(credential)] = others.get(int(credential), 0) + int(count or 0)
        for credential_id, state in self._members.items():
            state.others_in_flight = others.get(credential_id, 0)

    async def wait_idle(self) -> None:
        """Wait for this event loop's background writes (tests)."""
        loop = asyncio.get_running_loop()
        while pending := [t for t in self._tasks if t.get_loop() is loop and not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    def snapshot(self, now: float) -> dict[int, dict[str, Any]]:
        """What this process knows of each credential (the state API, the health page)."""
        monotonic_now = time.monotonic()
        result: dict[int, dict[str, Any]] = {}
        for credential_id, state in self._members.items():
            state.roll(minute_of(now))
            result[credential_id] = {
                "cooldown_until": state.cooldown_until if state.cooldown_until > now else None,
                "cooldown_reason": state.cooldown_reason if state.cooldown_until > now else "",
                "in_flight": state.in_flight(monotonic_now) + state.others_in_flight,
                "requests_this_minute": max(state.shared_requests, 0) + state.unsent_requests,
                "tokens_this_minute": max(state.shared_tokens, 0) + state.unsent_tokens,
            }
        return result

    def reset(self) -> None:
        """Forget this process's state (tests); the shared state stays."""
        self._members.clear()
        self._turns.clear()


pool_state = PoolState()


def _until(value: bytes) -> float:
    try:
        return float(value.decode().partition("|")[0])
    except ValueError:
        return 0.0


def shared_snapshot(now: float) -> dict[int, dict[str, Any]]:
    """Every process's state of each credential, read from Redis synchronously (admin pages,
    the state API); empty without Redis."""
    client = shared_redis.sync_client()
    if client is None:
        return {}
    minute = minute_of(now)
    now_ms = int(now * 1000)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(COOLDOWNS_KEY)
        pipe.hgetall(f"{_USAGE_PREFIX}{minute}")
        pipe.hgetall(IN_FLIGHT_KEY)
        cooldowns, usage, flights = pipe.execute()
    except Exception as exc:
        logger.warning("pools: cannot read shared state: %s", exc)
        return {}
    result: dict[int, dict[str, Any]] = {}

    def entry(credential_id: int) -> dict[str, Any]:
        return result.setdefault(
            credential_id,
            {
                "cooldown_until": None,
                "cooldown_reason": "",
                "in_flight": 0,
                "requests_this_minute": 0,
                "tokens_this_minute": 0,
            },
        )

    for name, value in cooldowns.items():
        until = _until(value)
        if until > now:
            item = entry(int(name))
            item["cooldown_until"] = until
            item["cooldown_reason"] = value.decode().partition("|")[2]
    for name, value in usage.items():
        kind, _, credential = name.decode().partition(":")
        if credential.isdigit():
            key = "requests_this_minute" if kind == "r" else "tokens_this_minute"
            entry(int(credential))[key] = int(value)
    for name, value in flights.items():
        credential, _, _process = name.decode().partition(":")
        count, _, stamp = value.decode().partition("|")
        if credential.isdigit() and now_ms - int(stamp or 0) <= _IN_FLIGHT_STALE_MS:
            entry(int(credential))["in_flight"] += int(count or 0)
    return result


def credential_states(now: float) -> dict[int, dict[str, Any]]:
    """Each credential's live state for the admin: every process's (Redis) when configured,
    else this process's, which on the embedded default is the only one."""
    if settings.REDIS_URL:
        return shared_snapshot(now)
    return pool_state.snapshot(now)


def clear_shared() -> None:
    """Remove every pool key from Redis (tests)."""
    client = shared_redis.sync_client()
    if client is None:
        return
    keys = list(client.scan_iter(match=KEY_PREFIX + "*", count=500))
    if keys:
        client.delete(*keys)
