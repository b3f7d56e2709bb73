"""Reads of usage for reports: totals, time series, top users, keys and models, and usage
without a price.

Reports read UsageAggregate only, never raw events. A report's local buckets (in any IANA zone)
are tiled by the coarsest stored UTC buckets that fit them (usage.timeseries), so one query per
table reads few rows and the result is exact. The one exception is ``usage_unpriced``: whether
an event has a price depends on its upstream model, which the aggregates do not keep, so it
groups the raw events of the range (by their ``occurred_at`` index) and can only see events not
yet pruned. Writes (events, rollups) live elsewhere.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import add, or_
from typing import Any, Literal

from django.db import connections, router, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.models import AccessKey, Provider, ProviderCredential, User
from usage.models import (
    AGGREGATE_COUNT_FIELDS,
    TOKEN_COUNT_FIELDS,
    Price,
    UsageAggregate,
    UsageEvent,
)
from usage.pricing import (
    free_by_default,
    price_windows,
    providers_with_prices,
    without_provider_prefix,
)
from usage.timeseries import (
    MAX_POINTS,
    SeriesPlan,
    StoredRange,
    UsageQueryError,
    cover_interval,
    cover_plan,
    granularity_check,
    instant_check,
    merge_ranges,
    parse_instant,
    plan_series,
    zone_get,
)

COUNT_FIELDS = AGGREGATE_COUNT_FIELDS
SUM_FIELDS: tuple[str, ...] = (*COUNT_FIELDS, "cost_usd")
# Memory for grouping one report query on PostgreSQL (see _grouping_memory).
REPORT_WORK_MEM = "64MB"
RankBy = Literal["cost", "tokens"]
RANKINGS: tuple[str, ...] = ("cost", "tokens")
# Built-in providers first, in this order, on every page and in every export; generic servers
# follow by name.
PROVIDER_ORDER: tuple[str, ...] = ("anthropic", "bedrock", "openai", "gemini", "ollama")
# What a usage record's provider can be: a built-in provider or a generic server's name
# (accounts.services checks those names the same way).
PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")


# --- Values -------------------------------------------------------------------------------------


@dataclass
class UsageSums:
    """Summed counters of a set of aggregates."""

    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> UsageSums:
        return cls(
            **{name: int(row.get(name) or 0) for name in COUNT_FIELDS},
            cost_usd=Decimal(row.get("cost_usd") or 0),
        )

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> UsageSums:
        """From values in the order of SUM_FIELDS."""
        return cls.from_row(dict(zip(SUM_FIELDS, values, strict=True)))

    def add(self, other: UsageSums) -> None:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd

    @property
    def total_tokens(self) -> int:
        return sum(getattr(self, name) for name in TOKEN_COUNT_FIELDS)

    @property
    def fallback_rate(self) -> float:
        """Share of requests a later leg answered because an earlier one failed (Bedrock after
        Anthropic, say); 0 when no requests."""
        return self.fallbacks / self.requests if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def metric(self, name: str) -> float:
        if name == "tokens":
            return float(self.total_tokens)
        if name == "cost":
            return float(self.cost_usd)
        return float(getattr(self, name))


@dataclass(frozen=True)
class UsageFilters:
    """Dimensions a report is restricted to; None means all."""

    user_id: int | None = None
    access_key_id: int | None = None
    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class UsageQuery:
    """A validated report request: local buckets, the stored ranges tiling them, filters.

    ``ranges`` never cross a point boundary (for the series); ``whole_ranges`` tile the same
    span with the coarsest buckets regardless of points (for totals by user, key or model),
    which reads far fewer rows: a year by day is 12 month buckets there, not 365 day buckets.
    """

    plan: SeriesPlan
    filters: UsageFilters
    ranges: tuple[StoredRange, ...]
    whole_ranges: tuple[StoredRange, ...]

    @property
    def tz_name(self) -> str:
        return self.plan.zone.key

    @property
    def granularity(self) -> str:
        return self.plan.granularity


@dataclass
class SeriesPoint:
    start: datetime  # local time in the report's zone
    end: datetime
    totals: UsageSums
    by_provider: dict[str, UsageSums]


@dataclass
class UsageReport:
    query: UsageQuery
    totals: UsageSums
    by_provider: dict[str, UsageSums]
    points: list[SeriesPoint]

    @property
    def providers(self) -> list[str]:
        return sort_providers(self.by_provider)

    def share(self, provider: str, metric: str = "requests") -> float:
        """Fraction of ``metric`` (requests, tokens or cost) that ``provider`` served."""
        whole = self.totals.metric(metric)
        part = self.by_provider.get(provider, UsageSums()).metric(metric)
        return part / whole if whole else 0.0


@dataclass
class UserUsage:
    user_id: int
    email: str  # empty for usage without a user or of a deleted user
    sums: UsageSums


@dataclass
class KeyUsage:
    access_key_id: int
    user_id: int
    prefix: str  # empty for usage without a key or of a deleted key
    label: str
    email: str  # of the user the usage was recorded for; empty when none or deleted
    sums: UsageSums


@dataclass
class ModelUsage:
    provider: str
    model: str
    sums: UsageSums


@dataclass
class UnpricedUsage:
    """Events of one provider, upstream and requested model that cost 0 for want of a price."""

    provider: str
    upstream_model: str
    requested_model: str
    events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    first_at: datetime
    last_at: datetime

    @property
    def total_tokens(self) -> int:
        return sum(getattr(self, name) for name in TOKEN_COUNT_FIELDS)

    @property
    def price_model(self) -> str:
        """The name a Price row would best be added under: the upstream model's (looked up
        first), else the requested one's without its provider prefix."""
        return self.upstream_model or without_provider_prefix(self.requested_model)

    @property
    def requested_price_model(self) -> str:
        """The requested model as a Price row would name it, when it differs from
        ``price_model`` (an alias, a Bedrock fallback), else ""."""
        name = without_provider_prefix(self.requested_model)
        return name if name and name != self.price_model else ""


def sort_providers(providers: Any) -> list[str]:
    known = [name for name in PROVIDER_ORDER if name in providers]
    return known + sorted(name for name in providers if name not in PROVIDER_ORDER)


def known_providers() -> list[str]:
    """Provider names to offer in filters: the built-in ones, then generic servers that have a
    credential or a price (two small tables; the aggregates are not scanned for names)."""
    generic = set(
        ProviderCredential.objects.filter(provider=Provider.GENERIC)
        .exclude(name="")
        .values_list("name", flat=True)
    )
    generic |= set(Price.objects.order_by().values_list("provider", flat=True).distinct())
    return sort_providers(set(PROVIDER_ORDER) | generic)


# --- Building a query ---------------------------------------------------------------------------


def _instant(value: datetime | str | None, *, zone: Any, param: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return instant_check(value, param=param)
    return parse_instant(value, zone=zone, param=param)


def usage_query_build(
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    granularity: str = "hour",
    tz: str = "UTC",
    user_id: int | None = None,
    access_key_id: int | None = None,
    provider: str | None = None,
    model: str | None = None,
    now: datetime | None = None,
    default_span: timedelta = timedelta(days=1),
    max_points: int = MAX_POINTS,
) -> UsageQuery:
    """Validate report parameters; UsageQueryError names the first bad one.

    Strings are ISO 8601; without an offset they are wall-clock time in ``tz``. A missing end is
    now, a missing start is ``default_span`` before the end. The range is widened to whole
    buckets of ``granularity`` in ``tz``.
    """
    zone = zone_get(tz)
    granularity_check(granularity)
    end_at = _instant(end, zone=zone, param="to") or (now or timezone.now()).astimezone(UTC)
    start_at = _instant(start, zone=zone, param="from") or end_at - default_span
    if provider and (provider == Provider.GENERIC or not PROVIDER_NAME.fullmatch(provider)):
        raise UsageQueryError(
            "provider",
            f"unknown provider {provider!r}; one of {', '.join(PROVIDER_ORDER)} or a generic "
            "server's name (lowercase letters, digits, - and _, at most 16).",
        )
    if model is not None and len(model) > 200:
        raise UsageQueryError("model", "is longer than 200 characters.")
    for param, value in (("user", user_id), ("access_key", access_key_id)):
        if value is not None and value < 0:
            raise UsageQueryError(param, "must be a positive id (0 selects usage without one).")
    plan = plan_series(start_at, end_at, granularity=granularity, zone=zone, max_points=max_points)
    return UsageQuery(
        plan=plan,
        filters=UsageFilters(
            user_id=user_id,
            access_key_id=access_key_id,
            provider=provider or None,
            model=model or None,
        ),
        ranges=tuple(cover_plan(plan)),
        whole_ranges=tuple(merge_ranges(cover_interval(plan.start, plan.end))),
    )


def _aggregates(query: UsageQuery, *, per_point: bool = False) -> QuerySet[UsageAggregate]:
    """The aggregates a query covers: split at point boundaries when ``per_point``."""
    where = reduce(
        or_,
        (
            Q(bucket=stored.bucket, bucket_start__gte=stored.start, bucket_start__lt=stored.end)
            for stored in (query.ranges if per_point else query.whole_ranges)
        ),
    )
    filters = query.filters
    queryset = UsageAggregate.objects.filter(where)
    if filters.user_id is not None:
        queryset = queryset.filter(user_id=filters.user_id)
    if filters.access_key_id is not None:
        queryset = queryset.filter(access_key_id=filters.access_key_id)
    if filters.provider is not None:
        queryset = queryset.filter(provider=filters.provider)
    if filters.model is not None:
        queryset = queryset.filter(model=filters.model)
    return queryset


def _sums() -> dict[str, Sum]:
    return {name: Sum(name) for name in SUM_FIELDS}


def _ranking(rank_by: str) -> str:
    if rank_by not in RANKINGS:
        raise UsageQueryError("order_by", f"unknown ranking {rank_by!r}; one of cost, tokens.")
    return "cost_usd" if rank_by == "cost" else "total_tokens"


def _total_tokens() -> Any:
    return reduce(add, (F(name) for name in TOKEN_COUNT_FIELDS))


# --- Reports ------------------------------------------------------------------------------------


def _is_postgresql() -> bool:
    return connections[router.db_for_read(UsageAggregate)].vendor == "postgresql"


@contextmanager
def _grouping_memory() -> Iterator[None]:
    """On PostgreSQL, room to group a series in memory, for this transaction only.

    The planner's guess of the number of groups is poor (it cannot know how rows fall into
    points); with the default 4 MB of work_mem it then sorts on disk instead of hashing the few
    hundred groups there really are, several times slower.
    """
    connection = connections[router.db_for_read(UsageAggregate)]
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true)", [REPORT_WORK_MEM])
        yield


def _series_rows(query: UsageQuery) -> dict[tuple[int, str], list[Any]]:
    """Sums per (point index, provider), in SUM_FIELDS order."""
    boundaries = query.plan.boundaries
    aggregates = _aggregates(query, per_point=True)
    sums_by_point: dict[tuple[int, str], list[Any]] = {}
    if _is_postgresql():
        # width_bucket finds each row's point by binary search in the database, so only one
        # row per point and provider comes back (a day by minute would be 1,440 otherwise).
        point = RawSQL("width_bucket(bucket_start, %s::timestamptz[]) - 1", [list(boundaries)])
        with _grouping_memory():
            point_rows = (
                aggregates.annotate(point=point)
                .values("point", "provider")
                .annotate(**_sums())
                .order_by()
                .values_list("point", "provider", *SUM_FIELDS)
            )
            for index, provider, *values in point_rows:
                sums_by_point[(index, provider)] = values
        return sums_by_point
    # Elsewhere (SQLite, the embedded set-up with little data) rows come per stored bucket and
    # are assigned to points here.
    rows = (
        aggregates.values("bucket_start", "provider")
        .annotate(**_sums())
        .order_by()
        .values_list("bucket_start", "provider", *SUM_FIELDS)
    )
    for bucket_start, provider, *values in rows:
        index = bisect_right(boundaries, bucket_start) - 1
        current = sums_by_point.get((index, provider))
        if current is None:
            sums_by_point[(index, provider)] = values
        else:
            for position, value in enumerate(values):
                current[position] += value
    return sums_by_point


def usage_report(query: UsageQuery) -> UsageReport:
    """Totals, per-provider totals and the time series of a query, in one database query."""
    plan = query.plan
    sums_by_point = _series_rows(query)
    starts = plan.local_starts()
    ends = [*starts[1:], plan.end.astimezone(plan.zone)]
    points = [
        SeriesPoint(start=start, end=end, totals=UsageSums(), by_provider={})
        for start, end in zip(starts, ends, strict=True)
    ]
    totals = UsageSums()
    by_provider: dict[str, UsageSums] = {}
    for (index, provider), values in sums_by_point.items():
        sums = UsageSums.from_values(values)
        if not 0 <= index < len(points):
            raise AssertionError(f"aggregate row outside the report range: {provider} {index}")
        points[index].totals.add(sums)
        points[index].by_provider[provider] = sums
        totals.add(sums)
        by_provider.setdefault(provider, UsageSums()).add(sums)
    return UsageReport(query=query, totals=totals, by_provider=by_provider, points=points)


def _ranked_rows(query: UsageQuery, group_by: tuple[str, ...], rank_by: str, limit: int) -> Any:
    order = _ranking(rank_by)
    return (
        _aggregates(query)
        .values(*group_by)
        .annotate(**_sums())
        .annotate(total_tokens=_total_tokens())
        .order_by(F(order).desc(nulls_last=True), *group_by)[:limit]
    )


def _emails(user_ids: set[int]) -> dict[int, str]:
    return dict(User.objects.filter(pk__in=user_ids).values_list("pk", "email"))


def usage_top_users(
    query: UsageQuery, *, rank_by: str = "cost", limit: int = 10
) -> list[UserUsage]:
    """Users with the most cost or tokens in the query, with their emails.

    Two queries whatever the limit: the ranking, then one lookup of all the emails. (Looking
    the emails up inside the ranking query would run once per aggregate row.)
    """
    rows = list(_ranked_rows(query, ("user_id",), rank_by, limit))
    emails = _emails({row["user_id"] for row in rows})
    return [
        UserUsage(
            user_id=row["user_id"],
            email=emails.get(row["user_id"], ""),
            sums=UsageSums.from_row(row),
        )
        for row in rows
    ]


def usage_top_keys(query: UsageQuery, *, rank_by: str = "cost", limit: int = 50) -> list[KeyUsage]:
    """Access keys with the most cost or tokens in the query, with prefix, label and the
    user's email: three queries whatever the limit (ranking, keys, emails)."""
    rows = list(_ranked_rows(query, ("access_key_id", "user_id"), rank_by, limit))
    keys = AccessKey.objects.filter(pk__in={row["access_key_id"] for row in rows}).only(
        "pk", "prefix", "label"
    )
    key_names = {key.pk: (key.prefix, key.label) for key in keys}
    emails = _emails({row["user_id"] for row in rows})
    return [
        KeyUsage(
            access_key_id=row["access_key_id"],
            user_id=row["user_id"],
            prefix=key_names.get(row["access_key_id"], ("", ""))[0],
            label=key_names.get(row["access_key_id"], ("", ""))[1],
            email=emails.get(row["user_id"], ""),
            sums=UsageSums.from_row(row),
        )
        for row in rows
    ]


def usage_by_model(query: UsageQuery) -> list[ModelUsage]:
    """Per provider and model, by cost then tokens, highest first."""
    rows = _aggregates(query).values("provider", "model").annotate(**_sums()).order_by()
    usages = [
        ModelUsage(provider=row["provider"], model=row["model"], sums=UsageSums.from_row(row))
        for row in rows
    ]
    usages.sort(key=lambda usage: (-usage.sums.cost_usd, -usage.sums.total_tokens, usage.model))
    return usages


# --- Subjects of a drill-down -------------------------------------------------------------------


def user_for_report(user_id: int) -> User | None:
    return User.objects.filter(pk=user_id).first()


def access_key_for_report(access_key_id: int) -> AccessKey | None:
    return AccessKey.objects.select_related("user").filter(pk=access_key_id).first()


# --- Usage without a price ----------------------------------------------------------------------

_UNPRICED_SUMS = {
    "events": Count("id"),
    **{name: Sum(name) for name in TOKEN_COUNT_FIELDS},
    "first_at": Min("occurred_at"),
    "last_at": Max("occurred_at"),
}
_UNPRICED_KEY = ("provider", "upstream_model", "requested_model")


def _unpriced_events(query: UsageQuery) -> QuerySet[UsageEvent]:
    """Events of the query's range and filters that the price table must price (no recorded
    cost)."""
    filters = query.filters
    events = UsageEvent.objects.filter(
        occurred_at__gte=query.plan.start, occurred_at__lt=query.plan.end, cost_usd__isnull=True
    )
    if filters.user_id is not None:
        events = (
            events.filter(user_id__isnull=True)
            if filters.user_id == 0
            else events.filter(user_id=filters.user_id)
        )
    if filters.access_key_id is not None:
        events = (
            events.filter(access_key_id__isnull=True)
            if filters.access_key_id == 0
            else events.filter(access_key_id=filters.access_key_id)
        )
    if filters.provider is not None:
        events = events.filter(provider=filters.provider)
    if filters.model is not None:
        events = events.filter(requested_model=filters.model)
    return events


def usage_unpriced(query: UsageQuery) -> list[UnpricedUsage]:
    """Usage in the query's range without a price: per provider, upstream and requested model,
    the events that cost 0 because no Price row covers them (by the current price table, with
    the rollup's rule: usage.pricing), most tokens first. Providers that are free by default
    are left out, and events with a recorded cost.

    Two to four queries: the events grouped by model, the price table, the providers with
    prices and, only for models whose first price starts inside the range, their events before
    it. Reads raw events (see the module docstring), so pruned days are not seen.
    """
    events = _unpriced_events(query)
    groups = list(events.values(*_UNPRICED_KEY).annotate(**_UNPRICED_SUMS).order_by())
    if not groups:
        return []
    priced_providers = providers_with_prices()
    groups = [g for g in groups if not free_by_default(g["provider"], priced_providers)]
    first_price: dict[tuple[str, str, str], datetime] = {}
    for window in price_windows(tuple(g[name] for name in _UNPRICED_KEY) for g in groups):
        if window.key not in first_price or window.valid_from < first_price[window.key]:
            first_price[window.key] = window.valid_from
    unpriced: list[dict[str, Any]] = []
    # Windows run without gaps from the first price on, so only events before it are unpriced.
    partly: dict[tuple[str, str, str], datetime] = {}
    for group in groups:
        key = (group["provider"], group["upstream_model"], group["requested_model"])
        starts = first_price.get(key)
        if starts is None:
            unpriced.append(group)
        elif starts > group["first_at"]:
            partly[key] = starts
    if partly:
        before_price = reduce(
            or_,
            (
                Q(provider=p, upstream_model=u, requested_model=r, occurred_at__lt=starts)
                for (p, u, r), starts in partly.items()
            ),
        )
        unpriced += (
            events.filter(before_price).values(*_UNPRICED_KEY).annotate(**_UNPRICED_SUMS).order_by()
        )
    usages = [
        UnpricedUsage(
            provider=row["provider"],
            upstream_model=row["upstream_model"],
            requested_model=row["requested_model"],
            events=int(row["events"]),
            **{name: int(row[name] or 0) for name in TOKEN_COUNT_FIELDS},
            first_at=row["first_at"],
            last_at=row["last_at"],
        )
        for row in unpriced
    ]
    usages.sort(
        key=lambda u: (-u.total_tokens, -u.events, u.provider, u.upstream_model, u.requested_model)
    )
    return usages
