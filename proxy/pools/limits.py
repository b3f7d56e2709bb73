"""A pool member's own limits: requests per minute, tokens per minute, requests in flight.

Counted exactly across worker processes by the governance counters (``governance.counters``:
one Lua script call in Redis, the same arithmetic in process on the embedded default). Only a
member that has a limit costs this round trip, once when a request is about to use it; members
without limits cost nothing. A member over its limit is skipped for another member.

Tokens per minute: a request is admitted while the tokens counted in the current minute are
below the limit, and its tokens are counted when it ends (its size is not known before).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accounts.metadata import ResolvedCredential
from governance.counters import CONCURRENCY, WINDOW, Check, Settlement, counters
from governance.enforcement import settle_soon
from proxy.pools.state import KEY_PREFIX

_MINUTE_MS = 60_000
# A request in flight that never reported its end frees its slot after this.
_LEASE_MS = 15 * 60_000


@dataclass
class Hold:
    """What a request holds of a member's limits, released with its tokens when it ends."""

    settlements: list[Settlement] = field(default_factory=list)
    shared: bool = False
    tokens_key: str = ""

    def release(self, tokens: int) -> None:
        final = [
            Settlement(item.kind, item.key, item.member, 0, tokens)
            if item.key == self.tokens_key
            else item
            for item in self.settlements
        ]
        settle_soon(final, shared=self.shared)


@dataclass(frozen=True)
class Refusal:
    """The member is over a limit until ``retry_at`` (wall clock, seconds)."""

    what: str
    retry_at: float


async def acquire(
    member: ResolvedCredential, *, request_id: str, now_ms: int
) -> Hold | Refusal | None:
    """Take a place under the member's limits; None when it has none."""
    if not member.has_limits:
        return None
    window_start = now_ms - now_ms % _MINUTE_MS
    window_end = window_start + _MINUTE_MS
    checks: list[Check] = []
    what: list[str] = []
    tokens_key = ""
    if member.rpm_limit is not None:
        checks.append(
            Check(
                WINDOW,
                f"{KEY_PREFIX}rpm:{member.id}:{window_start}",
                member.rpm_limit,
                amount=1,
                expire_ms=window_end + _MINUTE_MS,
            )
        )
        what.append("requests per minute")
    if member.tpm_limit is not None:
        tokens_key = f"{KEY_PREFIX}tpm:{member.id}:{window_start}"
        checks.append(
            Check(WINDOW, tokens_key, member.tpm_limit, amount=0, expire_ms=window_end + _MINUTE_MS)
        )
        what.append("tokens per minute")
    if member.max_concurrency is not None:
        checks.append(
            Check(
                CONCURRENCY,
                f"{KEY_PREFIX}conc:{member.id}",
                member.max_concurrency,
                expire_ms=now_ms + _LEASE_MS,
                member=request_id,
            )
        )
        what.append("requests in flight")
    outcome, shared = await counters.admit(checks, now_ms)
    if not outcome.admitted:
        refused = outcome.refused or 0
        kind = checks[refused].kind
        # A window frees at its end; a concurrency slot whenever a request ends.
        retry_ms = window_end if kind == WINDOW else now_ms + 1000
        return Refusal(what[refused], retry_ms / 1000)
    # A request counts once toward its minute's requests: nothing of that to settle.
    settlements = [
        Settlement(check.kind, check.key, check.member, check.amount)
        for check in checks
        if not check.key.startswith(f"{KEY_PREFIX}rpm:")
    ]
    return Hold(settlements=settlements, shared=shared, tokens_key=tokens_key)
