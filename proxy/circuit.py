"""Circuit breaker per upstream and client credential.

Closed: requests go to Anthropic. GATEWAY_CIRCUIT_FAILURE_THRESHOLD retryable failures within
GATEWAY_CIRCUIT_WINDOW_SECONDS, or one 429 that says when to come back, open it. Open: requests go
straight to Bedrock until ``open_until``. Then half-open: one request probes Anthropic (the others
keep going to Bedrock); its success closes the circuit, its failure opens it again.

State is kept in process and, when Redis is configured, shared: a transition is written to Redis
and every worker reads the shared state of a circuit at most once a second, so the hot path does
not wait on Redis per request and keeps working when Redis is away.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from django.conf import settings

from gateway_project import redis as shared_redis
from gateway_project.observability import CIRCUIT_OPEN

logger = logging.getLogger(__name__)

_SYNC_INTERVAL = 1.0
_PROBE_TIMEOUT = 60.0  # a probe that never reports back frees the half-open slot after this
_REDIS_PREFIX = "gateway:circuit:"


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Circuit:
    name: str
    failures: list[float] = field(default_factory=list)
    open_until: float = 0.0  # wall-clock seconds; 0 when closed
    opened_at: float = 0.0  # wall-clock time the circuit last went from closed to open
    reason: str = ""
    probe_started: float = 0.0
    synced_at: float = 0.0
    updated_at: float = 0.0  # wall-clock time of the last transition, local or shared
    opened_count: int = 0

    def state(self, now: float) -> CircuitState:
        if self.open_until == 0.0:
            return CircuitState.CLOSED
        if now < self.open_until:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN


def circuit_name(upstream: str, credential: str) -> str:
    """A circuit per upstream and credential; the credential enters only as a short hash."""
    digest = hashlib.sha256(credential.encode()).hexdigest()[:16] if credential else "none"
    return f"{upstream}:{digest}"


def retry_at_from_headers(headers: dict[str, str], now: float) -> float | None:
    """When a 429 says to come back: ``retry-after`` (seconds or HTTP date) or the latest
    ``anthropic-ratelimit-unified-*-reset`` (epoch seconds or ISO time) among exhausted windows."""
    retry_after = headers.get("retry-after")
    if retry_after:
        value = retry_after.strip()
        if value.replace(".", "", 1).isdigit():
            return now + float(value)
        try:
            return parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            pass
    resets: list[float] = []
    for name, value in headers.items():
        if name.startswith("anthropic-ratelimit-unified") and name.endswith("-reset"):
            parsed = _parse_reset(value)
            if parsed is not None and parsed > now:
                resets.append(parsed)
    return max(resets) if resets else None


def _parse_reset(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class CircuitRegistry:
    def __init__(self) -> None:
        self._circuits: dict[str, Circuit] = {}
        self._syncing: dict[str, asyncio.Task[None]] = {}

    def _get(self, name: str) -> Circuit:
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = Circuit(name=name)
        return circuit

    def _sync(self, circuit: Circuit, now: float) -> None:
        """Adopt another worker's transition, read in the background at most once a second so
        that no request waits on Redis."""
        if now - circuit.synced_at < _SYNC_INTERVAL:
            return
        circuit.synced_at = now
        client = shared_redis.async_client()
        if client is None:
            return
        running = self._syncing.get(circuit.name)
        # A task of an event loop that has ended never finishes: it must not block syncs.
        if running is not None and running.get_loop() is asyncio.get_running_loop():
            return
        task = asyncio.get_running_loop().create_task(self._read_shared(circuit, client))
        self._syncing[circuit.name] = task
        task.add_done_callback(lambda _task: self._syncing.pop(circuit.name, None))

    async def wait_synced(self) -> None:
        """Wait for background reads of shared state (tests use it to be deterministic)."""
        loop = asyncio.get_running_loop()
        while tasks := [t for t in self._syncing.values() if t.get_loop() is loop and not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_shared(self, circuit: Circuit, client: Any) -> None:
        await asyncio.sleep(shared_redis.BACKGROUND_READ_DELAY)
        try:
            raw = await client.get(_REDIS_PREFIX + circuit.name)
        except Exception as exc:
            logger.warning("circuit %s: cannot read shared state: %s", circuit.name, exc)
            return
        if raw is None:
            return
        shared = json.loads(raw)
        # Last writer wins: adopt a transition another worker made after our own last one.
        if shared["updated_at"] > circuit.updated_at:
            if circuit.open_until == 0.0 and shared["open_until"]:
                circuit.opened_at = shared["updated_at"]
            circuit.open_until = shared["open_until"]
            circuit.reason = shared.get("reason", "")
            circuit.updated_at = shared["updated_at"]
            if circuit.open_until == 0.0:
                circuit.failures.clear()
                circuit.probe_started = 0.0

    async def _publish(self, circuit: Circuit, now: float) -> None:
        circuit.updated_at = now
        client = shared_redis.async_client()
        if client is None:
            return
        payload = json.dumps(
            {"open_until": circuit.open_until, "reason": circuit.reason, "updated_at": now}
        )
        ttl = int(max(circuit.open_until - now, 0) + settings.GATEWAY_CIRCUIT_COOLDOWN_SECONDS * 4)
        try:
            await client.set(_REDIS_PREFIX + circuit.name, payload, ex=max(ttl, 60))
        except Exception as exc:
            logger.warning("circuit %s: cannot share state: %s", circuit.name, exc)

    async def should_skip(self, name: str) -> str:
        """Empty when the request may try Anthropic; otherwise why it should not."""
        now = time.time()
        circuit = self._get(name)
        self._sync(circuit, now)
        state = circuit.state(now)
        if state is CircuitState.CLOSED:
            return ""
        if state is CircuitState.OPEN:
            return "circuit_open"
        if circuit.probe_started and now - circuit.probe_started < _PROBE_TIMEOUT:
            return "circuit_open"  # someone else is probing
        circuit.probe_started = now
        return ""

    def is_open(self, name: str) -> bool:
        """Whether the circuit is open now, as this process knows it; unlike ``should_skip`` it
        claims no half-open probe (key pools look at several before choosing one)."""
        circuit = self._circuits.get(name)
        return circuit is not None and circuit.state(time.time()) is CircuitState.OPEN

    async def record_success(self, name: str, *, started_at: float) -> None:
        """A request sent at ``started_at`` (wall clock) succeeded. Requests already in flight
        when the circuit opened say nothing about Anthropic now: only later ones close it."""
        circuit = self._get(name)
        was_open = circuit.open_until != 0.0
        if was_open and started_at < circuit.opened_at:
            return
        circuit.failures.clear()
        circuit.open_until = 0.0
        circuit.probe_started = 0.0
        if was_open:
            self._count_open()
            logger.info("circuit %s closed", name)
            await self._publish(circuit, time.time())

    async def record_failure(self, name: str, *, reason: str, retry_at: float | None) -> None:
        now = time.time()
        circuit = self._get(name)
        window = settings.GATEWAY_CIRCUIT_WINDOW_SECONDS
        circuit.failures = [moment for moment in circuit.failures if now - moment < window]
        circuit.failures.append(now)
        probing = circuit.state(now) is CircuitState.HALF_OPEN
        if retry_at is not None:
            until = min(retry_at, now + settings.GATEWAY_CIRCUIT_MAX_OPEN_SECONDS)
        elif probing or len(circuit.failures) >= settings.GATEWAY_CIRCUIT_FAILURE_THRESHOLD:
            until = now + settings.GATEWAY_CIRCUIT_COOLDOWN_SECONDS
        else:
            return
        if until <= circuit.open_until:
            return
        if circuit.open_until == 0.0:
            circuit.opened_at = now
        circuit.open_until = until
        circuit.reason = reason
        circuit.probe_started = 0.0
        circuit.opened_count += 1
        self._count_open()
        logger.warning("circuit %s open for %.0fs (%s)", name, until - now, reason)
        await self._publish(circuit, now)

    def _count_open(self) -> None:
        now = time.time()
        CIRCUIT_OPEN.set(sum(1 for circuit in self._circuits.values() if circuit.open_until > now))

    def snapshot(self) -> list[dict[str, object]]:
        """This process's circuits, for the admin page and the health endpoint."""
        now = time.time()
        return [
            {
                "name": circuit.name,
                "state": circuit.state(now).value,
                "open_for_seconds": max(0.0, round(circuit.open_until - now, 1)),
                "reason": circuit.reason,
                "recent_failures": len(circuit.failures),
                "times_opened": circuit.opened_count,
            }
            for circuit in self._circuits.values()
        ]

    def reset(self) -> None:
        """Forget this process's circuits (the shared state stays)."""
        self._circuits.clear()


circuits = CircuitRegistry()


def shared_snapshot() -> list[dict[str, object]]:
    """Circuits as stored in Redis (all workers), read synchronously for admin pages."""
    client = shared_redis.sync_client()
    if client is None:
        return []
    now = time.time()
    result: list[dict[str, object]] = []
    try:
        for key in client.scan_iter(match=_REDIS_PREFIX + "*", count=200):
            raw = client.get(key)
            if raw is None:
                continue
            shared = json.loads(raw)
            name = key.decode()[len(_REDIS_PREFIX) :]
            open_until = float(shared["open_until"])
            result.append(
                {
                    "name": name,
                    "state": "open" if open_until > now else "closed",
                    "open_for_seconds": max(0.0, round(open_until - now, 1)),
                    "reason": shared.get("reason", ""),
                }
            )
    except Exception as exc:
        logger.warning("circuit: cannot read shared state: %s", exc)
    return result
