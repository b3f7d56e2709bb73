"""The rules that apply to one access key, as plain frozen data the hot path can read without the
database: its own and its user's rate limits, and every budget that can apply to its requests.

Built by governance.selectors.policy_load; cached per process by governance.enforcement.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

KEY = "access_key"
USER = "user"
GLOBAL = "global"

# Budgets count USD in units of 1e-8 (usage.pricing's cost unit), so sums stay integers.
USD_UNITS = 10**8


@dataclass(frozen=True, slots=True)
class LimitRule:
    scope: str  # KEY or USER
    target_id: int
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None
    allowed_models: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return "access key" if self.scope == KEY else "user"

    def allows(self, names: tuple[str, ...]) -> bool:
        """Whether one of the names a request's model goes by matches an allowed pattern."""
        if not self.allowed_models:
            return True
        return any(
            fnmatch.fnmatchcase(name, pattern) for pattern in self.allowed_models for name in names
        )


@dataclass(frozen=True, slots=True)
class BudgetRule:
    budget_id: int
    label: str
    scope: str  # KEY, USER or GLOBAL
    target_id: int  # 0 for GLOBAL
    period: str
    provider: str = ""
    limit_usd_units: int | None = None
    limit_tokens: int | None = None

    def applies_to(self, provider: str) -> bool:
        return not self.provider or self.provider == provider

    @property
    def subject(self) -> str:
        return {KEY: "access key", USER: "user", GLOBAL: "gateway"}[self.scope]


@dataclass(frozen=True, slots=True)
class Policy:
    limits: tuple[LimitRule, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.limits and not self.budgets


NO_POLICY = Policy()
