"""Routing rules: list, create, read, replace, delete, through proxy.rule_services (the checks
the admin runs; every process reloads its rules within a second of a change)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.contrib.auth.models import Group
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import StringConstraints

from accounts.models import AccessKey, User
from governance.api.auth import AUTH, require_write
from governance.api.errors import MAX_ID, ApiError, ErrorOut, get_or_404
from proxy.models import RoutingRule
from proxy.rule_services import TargetSpec, routing_rule_delete, routing_rule_save

routes_router = Router(auth=AUTH, tags=["routes"])

ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut}

Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=200)]
Name = Annotated[str, StringConstraints(pattern=r"^[^\x00]+$", min_length=1, max_length=100)]
OptionalId = Annotated[int | None, Field(None, ge=1, le=MAX_ID)]
Count = Annotated[int | None, Field(None, ge=1, le=2**31 - 1)]


class Page(Schema):
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10**9)


class TargetIo(Schema):
    provider: Annotated[str, StringConstraints(pattern=r"^[^\x00]+$", max_length=32)]
    model: Text = Field("", description="Empty: the model the client asked for.")
    tier: int = Field(1, ge=1, le=1000)
    weight: int = Field(1, ge=0, le=1_000_000)
    position: int = Field(0, ge=0, le=1000)


class RouteIn(Schema):
    name: Name
    position: int = Field(100, ge=0, le=2**31 - 1)
    enabled: bool = True
    description: Text = ""
    model_pattern: Text = Field("", description="Exact model name or glob; empty: any.")
    header_name: Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=100)] = ""
    header_value: Text = ""
    access_key_id: OptionalId = None
    user_id: OptionalId = None
    group_id: OptionalId = None
    min_input_tokens: Count = None
    max_input_tokens: Count = None
    stream: str = Field("any", description="any, stream or no_stream")
    strategy: str = Field("ordered", description="ordered, weighted or round_robin")
    max_attempts: Annotated[int | None, Field(None, ge=1, le=1000)] = None
    deadline_seconds: Annotated[int | None, Field(None, ge=1, le=86_400)] = None
    targets: list[TargetIo] = Field(min_length=1, max_length=100)


class RouteOut(Schema):
    id: int
    name: str
    position: int
    enabled: bool
    description: str
    model_pattern: str
    header_name: str
    header_value: str
    access_key_id: int | None
    user_id: int | None
    group_id: int | None
    min_input_tokens: int | None
    max_input_tokens: int | None
    stream: str
    strategy: str
    max_attempts: int | None
    deadline_seconds: int | None
    targets: list[TargetIo]
    updated_at: datetime


def _route(rule: RoutingRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "position": rule.position,
        "enabled": rule.enabled,
        "description": rule.description,
        "model_pattern": rule.model_pattern,
        "header_name": rule.header_name,
        "header_value": rule.header_value,
        "access_key_id": rule.access_key_id,
        "user_id": rule.user_id,
        "group_id": rule.group_id,
        "min_input_tokens": rule.min_input_tokens,
        "max_input_tokens": rule.max_input_tokens,
        "stream": rule.stream,
        "strategy": rule.strategy,
        "max_attempts": rule.max_attempts,
        "deadline_seconds": rule.deadline_seconds,
        "targets": [
            {
                "provider": target.provider,
                "model": target.model,
                "tier": target.tier,
                "weight": target.weight,
                "position": target.position,
            }
            for target in rule.targets.all()
        ],
        "updated_at": rule.updated_at,
    }


def _check_exists(payload: RouteIn) -> None:
    for model, value, param in (
        (AccessKey, payload.access_key_id, "access_key_id"),
        (User, payload.user_id, "user_id"),
        (Group, payload.group_id, "group_id"),
    ):
        if value is not None and not model._default_manager.filter(pk=value).exists():
            raise ApiError(400, f"No {param.removesuffix('_id').replace('_', ' ')} {value}.", param)
    if payload.stream not in RoutingRule.Stream.values:
        raise ApiError(400, "stream: any, stream or no_stream.", "stream")
    if payload.strategy not in RoutingRule.Strategy.values:
        raise ApiError(400, "strategy: ordered, weighted or round_robin.", "strategy")


def _save(rule: RoutingRule, payload: RouteIn) -> RoutingRule:
    _check_exists(payload)
    fields = payload.model_dump(exclude={"targets"})
    for name, value in fields.items():
        setattr(rule, name, value)
    clash = RoutingRule.objects.filter(name=payload.name).exclude(pk=rule.pk)
    if clash.exists():
        raise ApiError(400, f"A rule named {payload.name!r} exists already.", "name")
    targets = [TargetSpec(**target.model_dump()) for target in payload.targets]
    return routing_rule_save(rule, targets)


@routes_router.get("", response={200: list[RouteOut], **ERRORS}, summary="List routing rules")
def routes_list(request: HttpRequest, params: Query[Page]) -> Any:
    """In the order they are matched: the first enabled rule that matches makes the plan."""
    rules = RoutingRule.objects.prefetch_related("targets").order_by("position", "id")
    return [_route(rule) for rule in rules[params.offset : params.offset + params.limit]]


@routes_router.post("", response={201: RouteOut, **ERRORS}, summary="Create a routing rule")
def routes_create(request: HttpRequest, payload: RouteIn) -> Any:
    require_write(request, "proxy.add_routingrule")
    return Status(201, _route(_save(RoutingRule(), payload)))


@routes_router.get("/{rule_id}", response={200: RouteOut, **ERRORS}, summary="One routing rule")
def routes_get(request: HttpRequest, rule_id: int) -> Any:
    return _route(get_or_404(RoutingRule, rule_id, "routing rule"))


@routes_router.put(
    "/{rule_id}", response={200: RouteOut, **ERRORS}, summary="Replace a routing rule"
)
def routes_replace(request: HttpRequest, rule_id: int, payload: RouteIn) -> Any:
    """The rule becomes exactly what is sent, targets included."""
    require_write(request, "proxy.change_routingrule")
    return _route(_save(get_or_404(RoutingRule, rule_id, "routing rule"), payload))


@routes_router.delete("/{rule_id}", response={204: None, **ERRORS}, summary="Delete a routing rule")
def routes_delete(request: HttpRequest, rule_id: int) -> Any:
    require_write(request, "proxy.delete_routingrule")
    routing_rule_delete(get_or_404(RoutingRule, rule_id, "routing rule"))
    return Status(204, None)
