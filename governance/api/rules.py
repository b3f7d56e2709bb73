"""Budgets and rate limits: list, create, read, change, delete, through governance.services
(validated there; the proxy's caches invalidated after the commit)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import StringConstraints

from governance import selectors, services
from governance.api.auth import AUTH, require_write
from governance.api.errors import MAX_ID, ApiError, ErrorOut, get_or_404
from governance.models import Budget, RateLimit

Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=100)]
ModelName = Annotated[str, StringConstraints(pattern=r"^[^\x00]+$", max_length=200)]
OptionalId = Annotated[int | None, Field(None, ge=1, le=MAX_ID)]
Usd = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
Positive = Annotated[int, Field(ge=1, le=2**62)]

budgets_router = Router(auth=AUTH, tags=["budgets"])
limits_router = Router(auth=AUTH, tags=["limits"])

ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut}


class Page(Schema):
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10**9)


# --- Budgets ------------------------------------------------------------------------------------


class BudgetOut(Schema):
    id: int
    name: str
    scope: str
    user_id: int | None
    access_key_id: int | None
    provider: str
    period: str
    limit_usd: Decimal | None
    limit_tokens: int | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class BudgetIn(Schema):
    name: Text = ""
    scope: str = Field(description="access_key, user or global")
    user_id: OptionalId = None
    access_key_id: OptionalId = None
    provider: Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=16)] = ""
    period: str = Field(description="day, week or month (in GATEWAY_BUDGET_TIME_ZONE)")
    limit_usd: Usd | None = None
    limit_tokens: Positive | None = None
    enabled: bool = True


class BudgetPatch(Schema):
    name: Text | None = None
    period: str | None = None
    limit_usd: Usd | None = None
    limit_tokens: Positive | None = None
    enabled: bool | None = None


def _budget(budget: Budget) -> dict[str, Any]:
    return {
        "id": budget.pk,
        "name": budget.name,
        "scope": budget.scope,
        "user_id": budget.user_id,
        "access_key_id": budget.access_key_id,
        "provider": budget.provider,
        "period": budget.period,
        "limit_usd": budget.limit_usd,
        "limit_tokens": budget.limit_tokens,
        "enabled": budget.enabled,
        "created_at": budget.created_at,
        "updated_at": budget.updated_at,
    }


def _changes(payload: Schema) -> dict[str, Any]:
    """The fields a request sets: absent ones stay; an explicit null clears an amount."""
    return payload.model_dump(exclude_unset=True)


@budgets_router.get("", response={200: list[BudgetOut], **ERRORS}, summary="List budgets")
def budgets_list(request: HttpRequest, params: Query[Page]) -> Any:
    budgets = selectors.budgets_list()[params.offset : params.offset + params.limit]
    return [_budget(budget) for budget in budgets]


@budgets_router.post("", response={201: BudgetOut, **ERRORS}, summary="Create a budget")
def budgets_create(request: HttpRequest, payload: BudgetIn) -> Any:
    require_write(request, "governance.add_budget")
    return Status(201, _budget(services.budget_create(**payload.model_dump())))


@budgets_router.get("/{budget_id}", response={200: BudgetOut, **ERRORS}, summary="One budget")
def budgets_get(request: HttpRequest, budget_id: int) -> Any:
    return _budget(get_or_404(Budget, budget_id, "budget"))


@budgets_router.patch(
    "/{budget_id}", response={200: BudgetOut, **ERRORS}, summary="Change a budget"
)
def budgets_update(request: HttpRequest, budget_id: int, payload: BudgetPatch) -> Any:
    require_write(request, "governance.change_budget")
    budget = get_or_404(Budget, budget_id, "budget")
    changes = _changes(payload)
    if "enabled" in changes and changes["enabled"] is None:
        raise ApiError(400, "enabled: true or false.", "enabled")
    if "name" in changes and changes["name"] is None:
        changes["name"] = ""
    if "period" in changes and changes["period"] is None:
        raise ApiError(400, "period: day, week or month.", "period")
    return _budget(services.budget_update(budget=budget, **changes))


@budgets_router.delete("/{budget_id}", response={204: None, **ERRORS}, summary="Delete a budget")
def budgets_delete(request: HttpRequest, budget_id: int) -> Any:
    require_write(request, "governance.delete_budget")
    services.budget_delete(budget=get_or_404(Budget, budget_id, "budget"))
    return Status(204, None)


# --- Rate limits --------------------------------------------------------------------------------


class LimitOut(Schema):
    id: int
    scope: str
    user_id: int | None
    access_key_id: int | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    concurrent_requests: int | None
    allowed_models: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class LimitIn(Schema):
    scope: str = Field(description="access_key or user")
    user_id: OptionalId = None
    access_key_id: OptionalId = None
    requests_per_minute: Annotated[int | None, Field(None, ge=1, le=2**31 - 1)] = None
    tokens_per_minute: Positive | None = None
    concurrent_requests: Annotated[int | None, Field(None, ge=1, le=2**31 - 1)] = None
    allowed_models: list[ModelName] = Field(default_factory=list, max_length=500)
    enabled: bool = True


class LimitPatch(Schema):
    requests_per_minute: Annotated[int | None, Field(None, ge=1, le=2**31 - 1)] = None
    tokens_per_minute: Positive | None = None
    concurrent_requests: Annotated[int | None, Field(None, ge=1, le=2**31 - 1)] = None
    allowed_models: list[ModelName] | None = Field(None, max_length=500)
    enabled: bool | None = None


def _limit(limit: RateLimit) -> dict[str, Any]:
    return {
        "id": limit.pk,
        "scope": limit.scope,
        "user_id": limit.user_id,
        "access_key_id": limit.access_key_id,
        "requests_per_minute": limit.requests_per_minute,
        "tokens_per_minute": limit.tokens_per_minute,
        "concurrent_requests": limit.concurrent_requests,
        "allowed_models": list(limit.allowed_models or []),
        "enabled": limit.enabled,
        "created_at": limit.created_at,
        "updated_at": limit.updated_at,
    }


@limits_router.get("", response={200: list[LimitOut], **ERRORS}, summary="List rate limits")
def limits_list(request: HttpRequest, params: Query[Page]) -> Any:
    limits = selectors.rate_limits_list()[params.offset : params.offset + params.limit]
    return [_limit(limit) for limit in limits]


@limits_router.post("", response={201: LimitOut, **ERRORS}, summary="Create rate limits")
def limits_create(request: HttpRequest, payload: LimitIn) -> Any:
    """One set of limits per key or user; a second one for the same target is a 400."""
    require_write(request, "governance.add_ratelimit")
    return Status(201, _limit(services.rate_limit_create(**payload.model_dump())))


@limits_router.get("/{limit_id}", response={200: LimitOut, **ERRORS}, summary="One rate limit")
def limits_get(request: HttpRequest, limit_id: int) -> Any:
    return _limit(get_or_404(RateLimit, limit_id, "rate limit"))


@limits_router.patch(
    "/{limit_id}", response={200: LimitOut, **ERRORS}, summary="Change rate limits"
)
def limits_update(request: HttpRequest, limit_id: int, payload: LimitPatch) -> Any:
    require_write(request, "governance.change_ratelimit")
    limit = get_or_404(RateLimit, limit_id, "rate limit")
    changes = _changes(payload)
    if "enabled" in changes and changes["enabled"] is None:
        raise ApiError(400, "enabled: true or false.", "enabled")
    if "allowed_models" in changes and changes["allowed_models"] is None:
        changes["allowed_models"] = []
    return _limit(services.rate_limit_update(limit=limit, **changes))


@limits_router.delete("/{limit_id}", response={204: None, **ERRORS}, summary="Delete rate limits")
def limits_delete(request: HttpRequest, limit_id: int) -> Any:
    require_write(request, "governance.delete_ratelimit")
    services.rate_limit_delete(limit=get_or_404(RateLimit, limit_id, "rate limit"))
    return Status(204, None)
