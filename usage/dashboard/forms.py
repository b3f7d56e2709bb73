"""The dashboard's filter form: range preset or custom range, granularity, time zone, provider
(any name: built-in providers and generic servers alike), model and ranking. Validation is the
selectors' own (usage_query_build), so the admin shows the same messages as the API, attached to
the field at fault.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms

from usage.selectors import UsageQuery, usage_query_build
from usage.timeseries import MAX_POINTS, UsageQueryError, parse_instant, zone_get

RANGE_PRESETS: dict[str, tuple[str, timedelta | None]] = {
    "hour": ("Last hour", timedelta(hours=1)),
    "day": ("Last day", timedelta(days=1)),
    "week": ("Last week", timedelta(days=7)),
    "month": ("Last month (30 days)", timedelta(days=30)),
    "custom": ("Custom", None),
}
# The granularity "auto" picks for each preset: enough points for a useful chart.
AUTO_GRANULARITY: dict[str, str] = {"hour": "minute", "day": "hour", "week": "hour", "month": "day"}
GRANULARITY_CHOICES = [
    ("auto", "Automatic"),
    ("minute", "Minute"),
    ("hour", "Hour"),
    ("day", "Day"),
    ("week", "Week (from Monday)"),
    ("month", "Month"),
]
COMMON_ZONES = (
    "UTC",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Adelaide",
    "Australia/Sydney",
)
DEFAULTS: dict[str, str] = {
    "range": "day",
    "granularity": "auto",
    "tz": "UTC",
    "provider": "",
    "model": "",
    "rank": "cost",
    "start": "",
    "end": "",
}
# Which form field shows a selector error about which query parameter.
_FIELD_OF_PARAM = {
    "from": "start",
    "to": "end",
    "tz": "tz",
    "granularity": "granularity",
    "provider": "provider",
    "model": "model",
    "order_by": "rank",
}


def auto_granularity(span: timedelta) -> str:
    """The finest granularity that keeps a custom range to a few hundred points."""
    if span <= timedelta(hours=6):
        return "minute"
    if span <= timedelta(days=14):
        return "hour"
    if span <= timedelta(days=400):
        return "day"
    if span <= timedelta(days=7 * MAX_POINTS // 4):
        return "week"
    return "month"


class DashboardForm(forms.Form):
    range = forms.ChoiceField(
        label="Range", choices=[(key, label) for key, (label, _) in RANGE_PRESETS.items()]
    )
    start = forms.CharField(
        label="From",
        required=False,
        help_text="Local time in the chosen zone.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    end = forms.CharField(
        label="To",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    granularity = forms.ChoiceField(label="Granularity", choices=GRANULARITY_CHOICES)
    tz = forms.CharField(
        label="Time zone",
        max_length=64,
        widget=forms.TextInput(attrs={"list": "usage-time-zones", "autocomplete": "off"}),
    )
    # Free text with suggestions: generic servers are named by their admins.
    provider = forms.CharField(
        label="Provider",
        required=False,
        max_length=16,
        help_text="Empty for all providers.",
        widget=forms.TextInput(attrs={"list": "usage-providers", "autocomplete": "off"}),
    )
    model = forms.CharField(label="Model", required=False, max_length=200)
    rank = forms.ChoiceField(
        label="Rank users by", choices=[("cost", "Cost"), ("tokens", "Tokens")]
    )

    def __init__(
        self,
        data: Any,
        *,
        user_id: int | None = None,
        access_key_id: int | None = None,
        now: datetime | None = None,
    ) -> None:
        merged = dict(DEFAULTS)
        merged.update({key: value for key, value in data.items() if key in DEFAULTS})
        super().__init__(merged)
        self.user_id = user_id
        self.access_key_id = access_key_id
        self.now = now
        self.query: UsageQuery | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        preset = cleaned["range"]
        granularity = cleaned["granularity"]
        start: str | datetime | None
        end: str | datetime | None
        if preset == "custom":
            missing = [name for name in ("start", "end") if not cleaned.get(name)]
            for name in missing:
                self.add_error(name, "A custom range needs a start and an end.")
            if missing:
                return cleaned
            start, end = cleaned["start"], cleaned["end"]
            if granularity == "auto":
                granularity = self._custom_granularity(cleaned)
        else:
            span = RANGE_PRESETS[preset][1]
            assert span is not None
            end = self.now
            start = None if end is None else end - span
            if granularity == "auto":
                granularity = AUTO_GRANULARITY[preset]
        try:
            self.query = usage_query_build(
                start=start,
                end=end,
                granularity=granularity,
                tz=cleaned["tz"],
                user_id=self.user_id,
                access_key_id=self.access_key_id,
                provider=cleaned.get("provider") or None,
                model=cleaned.get("model") or None,
                now=self.now,
                default_span=RANGE_PRESETS[preset][1] or timedelta(days=1),
            )
        except UsageQueryError as exc:
            self.add_error(_FIELD_OF_PARAM.get(exc.param), exc.message)
        return cleaned

    def _custom_granularity(self, cleaned: dict[str, Any]) -> str:
        # Only a guess to pick a granularity; the real parsing (and its errors) follows.
        try:
            zone = zone_get(cleaned["tz"])
            start = parse_instant(cleaned["start"], zone=zone, param="from")
            end = parse_instant(cleaned["end"], zone=zone, param="to")
        except UsageQueryError:
            return "hour"
        return auto_granularity(end - start)
