"""Server-rendered SVG charts for the usage dashboard: pure functions from numbers to markup.

No JavaScript and nothing fetched from elsewhere: each chart is one ``<svg role="img">`` with a
``<title>`` and a ``<desc>`` for screen readers, hover titles on each bucket when there are few
enough of them, and a legend. Every piece of text is escaped here, so callers may mark the result
safe. The page next to the chart carries the same numbers as a table.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# Hover titles for every bucket make a large document when buckets are many; the data table and
# the CSV export carry the numbers then.
MAX_HOVER_TARGETS = 250
# Up to this many buckets, every point of a line gets a marker; beyond, only points that stand
# alone (between gaps), since a lone point draws no line.
MAX_MARKED_POINTS = 60
# Room for one axis label such as "03-01 21:00".
X_LABEL_SPACING = 110
# Average width of a character of axis text (11px) in chart units, to keep labels inside.
X_LABEL_CHAR_WIDTH = 6.5

# Every provider keeps its colour on every page and chart: the built-in ones have their own, a
# generic server's name picks one of OTHER_COLORS by a hash of the name (not by its position in
# a list, which changes with the providers a page happens to show).
PROVIDER_COLORS: dict[str, str] = {
    "anthropic": "#c96442",
    "bedrock": "#2f6fb0",
    "openai": "#3a8c5b",
    "gemini": "#8a5bb0",
    "ollama": "#6b6b6b",
}
OTHER_COLORS: tuple[str, ...] = (
    "#b0892f",
    "#3a8c86",
    "#a33f6d",
    "#5f7f1f",
    "#1f5f8f",
    "#b05c2f",
    "#7a5230",
    "#4f4fb0",
)

_WIDTH = 960
_HEIGHT = 260
_LEFT = 64
_RIGHT = 12
_TOP = 30
# A legend that does not fit one line wraps; each further line pushes the plot down this much.
LEGEND_LINE = 18
_BOTTOM = 34


@dataclass(frozen=True)
class ChartSeries:
    name: str
    color: str
    values: Sequence[float | None]


def provider_color(provider: str) -> str:
    """The colour of ``provider``, the same wherever it is drawn."""
    if provider in PROVIDER_COLORS:
        return PROVIDER_COLORS[provider]
    return OTHER_COLORS[zlib.crc32(provider.encode()) % len(OTHER_COLORS)]


# --- Number formats -----------------------------------------------------------------------------


def format_count(value: float) -> str:
    """1234 → 1.2k, 5_600_000 → 5.6M; whole numbers below a thousand as they are."""
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            text = f"{value / limit:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def format_usd(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        return f"${value:.4f}"
    if abs(value) >= 10_000:
        return f"${format_count(value)}"
    return f"${value:,.2f}"


def format_percent(value: float) -> str:
    return f"{value * 100:.1f}%".replace(".0%", "%")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (> 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power  # pragma: no cover


# --- Value axis ---------------------------------------------------------------------------------

# At most this many intervals between ticks (0 included, so up to six labels).
MAX_Y_INTERVALS = 5


@dataclass(frozen=True)
class AxisScale:
    """The ticks of a value axis: 0, then multiples of a round step up to the top."""

    ticks: tuple[float, ...]

    @property
    def top(self) -> float:
        return self.ticks[-1]


def axis_scale(highest: float, *, whole: bool = False) -> AxisScale:
    """Ticks from 0 to the first multiple of a round step (1, 2, 2.5 or 5 times a power of ten)
    at or above ``highest``, at most MAX_Y_INTERVALS of them; ``whole`` keeps steps integral
    (counts of tokens have no fractions)."""
    target = highest if highest > 0 else 1.0
    step = nice_ceiling(target / MAX_Y_INTERVALS)
    if whole and not float(step).is_integer():
        step = math.ceil(step) if step >= 1 else 1.0
        step = nice_ceiling(step)
        if not float(step).is_integer():  # 2.5 → 5
            step *= 2
    intervals = max(1, math.ceil(target / step - 1e-9))
    # round(): 3 * 0.1 must be 0.3, not 0.30000000000000004.
    return AxisScale(tuple(round(step * index, 12) for index in range(intervals + 1)))


def _exact(value: float) -> str:
    """``value`` with as few decimals as show it exactly (up to six)."""
    for decimals in range(7):
        if abs(round(value, decimals) - value) <= 1e-9 * max(1.0, abs(value)):
            return f"{value:,.{decimals}f}"
    return f"{value:,.6f}"  # pragma: no cover - ticks are round numbers


def _count_tick(value: float) -> str:
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return _exact(value / limit) + suffix
    return _exact(value)


def _usd_tick(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) >= 1_000:
        return "$" + _count_tick(value)
    text = _exact(value)
    # Cents as money is written: $2.50, not $2.5.
    if "." in text and len(text.partition(".")[2]) == 1:
        text += "0"
    return "$" + text


def _percent_tick(value: float) -> str:
    return _exact(value * 100) + "%"


# The formatters of values, each with the one for axis ticks: those show every tick exactly (the
# value formatters round to one or two places, which made 0.25 and 0.75 read 0.2 and 0.8), and
# say whether the axis may have fractional ticks.
_TICK_FORMATS: dict[Callable[[float], str], tuple[Callable[[float], str], bool]] = {
    format_count: (_count_tick, True),
    format_usd: (_usd_tick, False),
    format_percent: (_percent_tick, False),
}


def tick_formatter(formatter: Callable[[float], str]) -> tuple[Callable[[float], str], bool]:
    """(label of a tick, whole-number ticks only) for a value formatter; an unknown formatter
    labels ticks itself and allows fractions."""
    return _TICK_FORMATS.get(formatter, (formatter, False))


# --- Pieces -------------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _frame(chart_id: str, title: str, summary: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        'preserveAspectRatio="xMinYMin meet">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(summary)}</desc>',
    ]


def _legend_item_width(name: str) -> int:
    return 7 * len(name) + 22


def _legend_lines(series: Sequence[ChartSeries], width: int) -> list[list[ChartSeries]]:
    """The legend's entries in lines that fit the picture's width, in order."""
    room = width - _RIGHT - 8
    lines: list[list[ChartSeries]] = [[]]
    used = 0
    for item in series:
        item_width = _legend_item_width(item.name)
        if lines[-1] and used + item_width > room:
            lines.append([])
            used = 0
        lines[-1].append(item)
        used += item_width
    return lines


def legend_extra_height(series: Sequence[ChartSeries], width: int) -> int:
    """How far a wrapped legend pushes the plot down (0 for one line)."""
    return LEGEND_LINE * (len(_legend_lines(series, width)) - 1)


def _legend(series: Sequence[ChartSeries], width: int) -> list[str]:
    """One coloured square and name per series, right-aligned, wrapped onto more lines when
    they do not fit (the chart leaves room: legend_extra_height)."""
    parts = ['<g class="legend" aria-hidden="true">']
    for line_index, line in enumerate(_legend_lines(series, width)):
        y = 8 + LEGEND_LINE * line_index
        x = width - _RIGHT
        for item in reversed(line):
            x -= _legend_item_width(item.name)
            parts.append(
                f'<rect x="{x}" y="{y}" width="12" height="12" rx="2" '
                f'fill="{escape(item.color)}"/>'
                f'<text x="{x + 16}" y="{y + 10}" class="legend-label" '
                f'data-series="{escape(item.name)}">{escape(item.name)}</text>'
            )
    parts.append("</g>")
    return parts


def _y_axis(
    scale: AxisScale, label: Callable[[float], str], width: int, plot_height: int, top: int
) -> list[str]:
    parts = ['<g class="axis y-axis" aria-hidden="true">']
    for index, value in enumerate(scale.ticks):
        y = top + plot_height - plot_height * value / scale.top
        parts.append(
            f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{_number(y)}" y2="{_number(y)}" '
            f'class="grid{" baseline" if index == 0 else ""}"/>'
            f'<text x="{_LEFT - 6}" y="{_number(y + 4)}" text-anchor="end">'
            f"{escape(label(value))}</text>"
        )
    parts.append("</g>")
    return parts


def label_width(text: str) -> float:
    """Estimated width of an axis label (11px text) in chart units."""
    return X_LABEL_CHAR_WIDTH * len(text)


def _x_axis(labels: Sequence[str], slot: float, width: int, height: int) -> list[str]:
    count = len(labels)
    parts = ['<g class="axis x-axis" aria-hidden="true">']
    if count:
        room = max(2, int(slot * count // X_LABEL_SPACING))
        every = max(1, math.ceil(count / room))
        for index in range(0, count, every):
            center = _LEFT + slot * (index + 0.5)
            half = label_width(labels[index]) / 2
            # Centred under its bucket unless that would cut it at the picture's edge: then it
            # ends (or starts) at the bucket's edge instead.
            if center + half > width:
                x, anchor = _LEFT + slot * (index + 1), "end"
            elif center - half < 0:
                x, anchor = _LEFT + slot * index, "start"
            else:
                x, anchor = center, "middle"
            parts.append(
                f'<text x="{_number(x)}" y="{height - _BOTTOM + 18}" text-anchor="{anchor}">'
                f"{escape(labels[index])}</text>"
            )
    parts.append("</g>")
    return parts


def _hover_targets(
    labels: Sequence[str],
    series: Sequence[ChartSeries],
    formatter: Callable[[float], str],
    slot: float,
    plot_height: int,
    top: int,
) -> list[str]:
    if len(labels) > MAX_HOVER_TARGETS:
        return []
    parts = ['<g class="hover-targets">']
    for index, label in enumerate(labels):
        details = ", ".join(
            f"{item.name} {formatter(value)}"
            for item in series
            if (value := item.values[index]) is not None
        )
        parts.append(
            f'<rect x="{_number(_LEFT + slot * index)}" y="{top}" width="{_number(slot)}" '
            f'height="{plot_height}" fill="transparent">'
            f"<title>{escape(label)}: {escape(details or 'no data')}</title></rect>"
        )
    parts.append("</g>")
    return parts


# --- Charts -------------------------------------------------------------------------------------


def stacked_bar_chart(
    *,
    chart_id: str,
    title: str,
    summary: str,
    labels: Sequence[str],
    series: Sequence[ChartSeries],
    formatter: Callable[[float], str],
    axis_labels: Sequence[str] | None = None,
    width: int = _WIDTH,
    height: int = _HEIGHT,
) -> str:
    """Bars per bucket, one stacked segment per series (None counts as 0).

    ``labels`` name the buckets in hover titles; ``axis_labels`` (shorter) go under the axis.
    """
    count = len(labels)
    extra = legend_extra_height(series, width)
    top, height = _TOP + extra, height + extra
    plot_width = width - _LEFT - _RIGHT
    plot_height = height - top - _BOTTOM
    slot = plot_width / count if count else plot_width
    gap = min(slot * 0.15, 2.0)
    totals = [sum(item.values[index] or 0 for item in series) for index in range(count)]
    tick_label, whole = tick_formatter(formatter)
    axis = axis_scale(max(totals, default=0), whole=whole)
    scale = plot_height / axis.top

    parts = _frame(chart_id, title, summary, width, height)
    parts += _y_axis(axis, tick_label, width, plot_height, top)
    base = [0.0] * count
    parts.append('<g class="bars" aria-hidden="true">')
    for item in series:
        commands: list[str] = []
        for index in range(count):
            value = item.values[index] or 0
            if value <= 0:
                continue
            bar_height = value * scale
            y = top + plot_height - base[index] - bar_height
            x = _LEFT + slot * index + gap / 2
            commands.append(
                f"M{_number(x)} {_number(y)}h{_number(max(slot - gap, 0.5))}"
                f"v{_number(bar_height)}h{_number(-max(slot - gap, 0.5))}z"
            )
            base[index] += bar_height
        if commands:
            parts.append(
                f'<path class="series" data-series="{escape(item.name)}" '
                f'fill="{escape(item.color)}" d="{"".join(commands)}"/>'
            )
    parts.append("</g>")
    parts += _x_axis(labels if axis_labels is None else axis_labels, slot, width, height)
    parts += _legend(series, width)
    parts += _hover_targets(labels, series, formatter, slot, plot_height, top)
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    *,
    chart_id: str,
    title: str,
    summary: str,
    labels: Sequence[str],
    series: Sequence[ChartSeries],
    formatter: Callable[[float], str],
    y_max: float | None = None,
    axis_labels: Sequence[str] | None = None,
    width: int = _WIDTH,
    height: int = _HEIGHT,
) -> str:
    """One line per series through the middle of each bucket; None leaves a gap."""
    count = len(labels)
    extra = legend_extra_height(series, width)
    top, height = _TOP + extra, height + extra
    plot_width = width - _LEFT - _RIGHT
    plot_height = height - top - _BOTTOM
    slot = plot_width / count if count else plot_width
    highest = max(
        (value for item in series for value in item.values if value is not None), default=0
    )
    tick_label, whole = tick_formatter(formatter)
    axis = axis_scale(y_max if y_max is not None else highest, whole=whole)
    top_value = axis.top
    scale = plot_height / top_value

    parts = _frame(chart_id, title, summary, width, height)
    parts += _y_axis(axis, tick_label, width, plot_height, top)
    parts.append('<g class="lines" aria-hidden="true">')
    for item in series:
        commands: list[str] = []
        pen_down = False
        for index in range(count):
            value = item.values[index]
            if value is None:
                pen_down = False
                continue
            x = _LEFT + slot * (index + 0.5)
            y = top + plot_height - min(value, top_value) * scale
            commands.append(f"{'L' if pen_down else 'M'}{_number(x)} {_number(y)}")
            # A point with no neighbour draws no line: it always gets its marker, or it would
            # not show at all among many buckets.
            alone = not pen_down and (index + 1 == count or item.values[index + 1] is None)
            pen_down = True
            if count <= MAX_MARKED_POINTS or alone:
                commands.append("m-2.5 0a2.5 2.5 0 1 0 5 0a2.5 2.5 0 1 0 -5 0m2.5 0")
        if commands:
            parts.append(
                f'<path class="series" data-series="{escape(item.name)}" fill="none" '
                f'stroke="{escape(item.color)}" stroke-width="2" stroke-linejoin="round" '
                f'd="{"".join(commands)}"/>'
            )
    parts.append("</g>")
    parts += _x_axis(labels if axis_labels is None else axis_labels, slot, width, height)
    parts += _legend(series, width)
    parts += _hover_targets(labels, series, formatter, slot, plot_height, top)
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class ShareRow:
    """One 100% bar: ``parts`` are (name, value, color)."""

    label: str
    parts: Sequence[tuple[str, float, str]]


def share_chart(
    *,
    chart_id: str,
    title: str,
    summary: str,
    rows: Sequence[ShareRow],
    width: int = _WIDTH,
) -> str:
    """Horizontal 100% bars, one per row, segments labelled with their percentage."""
    row_height = 26
    label_width = 110
    bar_width = width - label_width - _RIGHT
    legend: dict[str, str] = {}
    for row in rows:
        for name, _, color in row.parts:
            legend.setdefault(name, color)
    legend_series = [ChartSeries(name, color, ()) for name, color in legend.items()]
    top = _TOP + legend_extra_height(legend_series, width)
    height = top + row_height * len(rows) + 8
    parts = _frame(chart_id, title, summary, width, height)
    for row_index, row in enumerate(rows):
        y = top + row_index * row_height
        total = sum(value for _, value, _ in row.parts)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" class="row-label">'
            f"{escape(row.label)}</text>"
        )
        if total <= 0:
            parts.append(
                f'<rect x="{label_width}" y="{y}" width="{bar_width}" height="20" '
                'class="empty-share"><title>no data</title></rect>'
            )
            continue
        x = float(label_width)
        for name, value, color in row.parts:
            if value <= 0:
                continue
            share = value / total
            segment = bar_width * share
            parts.append(
                f'<rect x="{_number(x)}" y="{y}" width="{_number(segment)}" height="20" '
                f'fill="{escape(color)}" data-series="{escape(name)}">'
                f"<title>{escape(row.label)}: {escape(name)} {format_percent(share)}</title></rect>"
            )
            if segment > 44:
                parts.append(
                    f'<text x="{_number(x + 6)}" y="{y + 14}" class="share-label" '
                    f'aria-hidden="true">{escape(format_percent(share))}</text>'
                )
            x += segment
    parts += _legend(legend_series, width)
    parts.append("</svg>")
    return "".join(parts)
