"""SVG charts and CSV rows of the dashboard: pure functions, checked on their parsed output."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from usage.dashboard import charts
from usage.dashboard.export import safe_text, series_rows
from usage.selectors import SeriesPoint, UsageQuery, UsageReport, UsageSums, usage_query_build

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - markup produced by the code under test


def bar_heights(path_data: str) -> list[float]:
    return [float(value) for value in re.findall(r"v([\d.]+)", path_data)]


def series_paths(root: ET.Element) -> dict[str, ET.Element]:
    return {path.get("data-series", ""): path for path in root.iter(f"{SVG}path")}


# --- Formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (999, "999"), (1000, "1k"), (1234, "1.2k"), (5_600_000, "5.6M"), (2e9, "2B"),
     (12.5, "12.5")],
)  # fmt: skip
def test_format_count(value: float, text: str) -> None:
    assert charts.format_count(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "$0"), (0.0012, "$0.0012"), (4.75, "$4.75"), (1234.5, "$1,234.50"), (25_000, "$25k")],
)
def test_format_usd(value: float, text: str) -> None:
    assert charts.format_usd(value) == text


def test_format_percent() -> None:
    assert charts.format_percent(1 / 3) == "33.3%"
    assert charts.format_percent(0.5) == "50%"
    assert charts.format_percent(0) == "0%"


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (1.01, 2), (2.4, 2.5), (3, 5), (7, 10), (0.013, 0.02), (120_000, 200_000)],
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert charts.nice_ceiling(value) == pytest.approx(ceiling)


# --- Charts -------------------------------------------------------------------------------------


def test_stacked_bars_are_proportional_and_accessible() -> None:
    svg = charts.stacked_bar_chart(
        chart_id="tokens",
        title="Tokens by provider",
        summary="Two buckets.",
        labels=["Mon 00:00", "Mon 01:00", "Mon 02:00"],
        series=[
            charts.ChartSeries("anthropic", "#c96442", [100, 50, 0]),
            charts.ChartSeries("bedrock", "#2f6fb0", [100, None, 0]),
        ],
        formatter=charts.format_count,
    )
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "tokens-title tokens-desc"
    assert root.find(f"{SVG}title").text == "Tokens by provider"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "Two buckets."  # type: ignore[union-attr]
    paths = series_paths(root)
    anthropic = bar_heights(paths["anthropic"].get("d", ""))
    bedrock = bar_heights(paths["bedrock"].get("d", ""))
    # Empty buckets draw nothing; heights follow the values on a shared scale.
    assert len(anthropic) == 2
    assert len(bedrock) == 1
    assert anthropic[0] == pytest.approx(2 * anthropic[1])
    assert bedrock[0] == pytest.approx(anthropic[0])
    # The axis tops at the nice ceiling of the tallest stack (200 → 200).
    labels = [text.text for text in root.iter(f"{SVG}text")]
    assert "200" in labels
    hover = [title.text for title in root.iter(f"{SVG}title")][1:]
    assert hover[0] == "Mon 00:00: anthropic 100, bedrock 100"
    assert hover[1] == "Mon 01:00: anthropic 50"


def test_text_is_escaped() -> None:
    svg = charts.stacked_bar_chart(
        chart_id='x"><script>',
        title="<b>Tokens</b> & more",
        summary="a < b",
        labels=["<i>now</i>"],
        series=[charts.ChartSeries('"><script>alert(1)</script>', "#000", [1])],
        formatter=charts.format_count,
    )
    assert "<script>" not in svg
    assert "<b>" not in svg
    root = parse(svg)
    assert root.find(f"{SVG}title").text == "<b>Tokens</b> & more"  # type: ignore[union-attr]


def test_hover_targets_stop_at_the_limit() -> None:
    def chart(count: int) -> ET.Element:
        return parse(
            charts.stacked_bar_chart(
                chart_id="c",
                title="t",
                summary="s",
                labels=[str(index) for index in range(count)],
                series=[charts.ChartSeries("anthropic", "#c96442", [1.0] * count)],
                formatter=charts.format_count,
            )
        )

    assert len(list(chart(charts.MAX_HOVER_TARGETS).iter(f"{SVG}rect"))) > charts.MAX_HOVER_TARGETS
    assert len(list(chart(charts.MAX_HOVER_TARGETS + 1).iter(f"{SVG}rect"))) < 10


def test_axis_labels_thin_out_to_fit() -> None:
    labels = [f"{hour:02d}:00" for hour in range(24)]
    root = parse(
        charts.stacked_bar_chart(
            chart_id="c",
            title="t",
            summary="s",
            labels=labels,
            axis_labels=labels,
            series=[charts.ChartSeries("anthropic", "#c96442", [1.0] * 24)],
            formatter=charts.format_count,
            width=600,
        )
    )
    x_axis = next(group for group in root.iter(f"{SVG}g") if "x-axis" in group.get("class", ""))
    shown = [text.text for text in x_axis]
    assert shown[0] == "00:00"
    assert 2 <= len(shown) <= 5


def test_line_chart_leaves_gaps_for_missing_values() -> None:
    root = parse(
        charts.line_chart(
            chart_id="rate",
            title="Fallback rate",
            summary="s",
            labels=["a", "b", "c", "d"],
            series=[charts.ChartSeries("fallback rate", "#b03a2e", [0.5, None, 0.25, 1.0])],
            formatter=charts.format_percent,
            y_max=1.0,
        )
    )
    data = series_paths(root)["fallback rate"].get("d", "")
    # Two runs: a lone point, then a line through the last two.
    assert data.count("M") == 2
    assert data.count("L") == 1


def test_line_chart_without_data_draws_no_line() -> None:
    root = parse(
        charts.line_chart(
            chart_id="rate",
            title="t",
            summary="s",
            labels=["a"],
            series=[charts.ChartSeries("fallback rate", "#b03a2e", [None])],
            formatter=charts.format_percent,
        )
    )
    assert "fallback rate" not in series_paths(root)


def test_share_chart_segments_add_up() -> None:
    root = parse(
        charts.share_chart(
            chart_id="share",
            title="Provider share",
            summary="s",
            rows=[
                charts.ShareRow(
                    "Requests", [("anthropic", 3, "#c96442"), ("bedrock", 1, "#2f6fb0")]
                ),
                charts.ShareRow("Cost", [("anthropic", 0, "#c96442"), ("bedrock", 0, "#2f6fb0")]),
            ],
            width=600,
        )
    )
    segments = [rect for rect in root.iter(f"{SVG}rect") if rect.get("data-series")]
    widths = {rect.get("data-series"): float(rect.get("width", 0)) for rect in segments}
    assert widths["anthropic"] == pytest.approx(3 * widths["bedrock"])
    titles = [title.text for title in root.iter(f"{SVG}title")]
    assert "Requests: anthropic 75%" in titles
    assert "no data" in titles


def test_provider_colors_are_stable() -> None:
    assert charts.provider_color("anthropic") == charts.PROVIDER_COLORS["anthropic"]
    builtin = [charts.provider_color(name) for name in charts.PROVIDER_COLORS]
    assert len(set(builtin)) == len(builtin)
    # A generic server keeps its colour whatever else a page shows, and it is not a built-in's.
    assert charts.provider_color("vllm") == charts.provider_color("vllm")
    assert charts.provider_color("vllm") in charts.OTHER_COLORS
    assert {charts.provider_color(f"server{n}") for n in range(40)} == set(charts.OTHER_COLORS)


# --- CSV rows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "safe"),
    [("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"), ("claude", "claude")],
)
def test_safe_text(text: str, safe: str) -> None:
    assert safe_text(text) == safe


def test_series_rows_list_every_bucket_and_provider() -> None:
    query: UsageQuery = usage_query_build(
        start=datetime(2025, 3, 1, tzinfo=UTC), end=datetime(2025, 3, 1, 2, tzinfo=UTC)
    )
    starts = query.plan.local_starts()
    points = [
        SeriesPoint(
            start=starts[0],
            end=starts[1],
            totals=UsageSums(requests=2, cost_usd=Decimal("0.5")),
            by_provider={"bedrock": UsageSums(requests=2, cost_usd=Decimal("0.5"))},
        ),
        SeriesPoint(start=starts[1], end=starts[1], totals=UsageSums(), by_provider={}),
    ]
    report = UsageReport(
        query=query,
        totals=UsageSums(requests=2, cost_usd=Decimal("0.5")),
        by_provider={"bedrock": UsageSums(requests=2, cost_usd=Decimal("0.5"))},
        points=points,
    )
    rows = series_rows(report)
    assert rows[0][:3] == ["bucket_start", "bucket_end", "provider"]
    assert [row[2] for row in rows[1:]] == ["all", "bedrock", "all", "bedrock"]
    assert rows[1][3] == 2
    assert rows[1][-1] == "0.5"
    assert rows[4][3] == 0


# --- Axes ---------------------------------------------------------------------------------------


def y_labels(svg: str) -> list[str]:
    axis = next(g for g in parse(svg).iter(f"{SVG}g") if "y-axis" in g.get("class", ""))
    return [text.text or "" for text in axis.iter(f"{SVG}text")]


def bars(values: list[float], formatter: object) -> str:
    return charts.stacked_bar_chart(
        chart_id="c",
        title="t",
        summary="s",
        labels=[str(index) for index in range(len(values))],
        series=[charts.ChartSeries("anthropic", "#c96442", values)],
        formatter=formatter,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("values", "formatter", "expected"),
    [
        # One token at most: whole ticks, not 0, 0.2, 0.5, 0.8, 1.
        ([1, 0], charts.format_count, ["0", "1"]),
        ([3, 1], charts.format_count, ["0", "1", "2", "3"]),
        ([200, 50], charts.format_count, ["0", "50", "100", "150", "200"]),
        ([1234], charts.format_count, ["0", "250", "500", "750", "1k", "1.25k"]),
        ([2_400_000], charts.format_count, ["0", "500k", "1M", "1.5M", "2M", "2.5M"]),
        # A cent and a bit: $0.01 once, and the half-cents shown as they are.
        ([0.013], charts.format_usd, ["$0", "$0.005", "$0.01", "$0.015"]),
        ([7.3], charts.format_usd, ["$0", "$2", "$4", "$6", "$8"]),
        ([2.2], charts.format_usd, ["$0", "$0.50", "$1", "$1.50", "$2", "$2.50"]),
        ([25_000], charts.format_usd, ["$0", "$5k", "$10k", "$15k", "$20k", "$25k"]),
        ([0.3], charts.format_percent, ["0%", "10%", "20%", "30%"]),
        ([0.025], charts.format_percent, ["0%", "0.5%", "1%", "1.5%", "2%", "2.5%"]),
    ],
)
def test_value_axis_labels_are_exact_round_steps(
    values: list[float], formatter: object, expected: list[str]
) -> None:
    assert y_labels(bars(values, formatter)) == expected


@pytest.mark.parametrize("highest", [0.001, 0.013, 0.07, 0.25, 1, 1.7, 9.99, 12_345, 987_654])
@pytest.mark.parametrize(
    "formatter", [charts.format_count, charts.format_usd, charts.format_percent]
)
def test_value_axis_labels_are_distinct_and_cover_the_data(
    highest: float, formatter: object
) -> None:
    labels = y_labels(bars([highest], formatter))
    assert len(labels) == len(set(labels)) >= 2
    scale = charts.axis_scale(highest, whole=formatter is charts.format_count)
    assert scale.top >= highest
    assert len(scale.ticks) <= charts.MAX_Y_INTERVALS + 1


def test_line_chart_axis_tops_at_the_requested_maximum() -> None:
    svg = charts.line_chart(
        chart_id="rate",
        title="t",
        summary="s",
        labels=["a", "b"],
        series=[charts.ChartSeries("fallback rate", "#b03a2e", [0.1, 0.2])],
        formatter=charts.format_percent,
        y_max=1.0,
    )
    assert y_labels(svg) == ["0%", "20%", "40%", "60%", "80%", "100%"]


def x_label_extents(svg: str, width: int) -> list[tuple[float, float]]:
    root = parse(svg)
    axis = next(g for g in root.iter(f"{SVG}g") if "x-axis" in g.get("class", ""))
    extents = []
    for text in axis.iter(f"{SVG}text"):
        x = float(text.get("x", 0))
        size = charts.label_width(text.text or "")
        anchor = text.get("text-anchor")
        start = {"start": x, "middle": x - size / 2, "end": x - size}[anchor or "start"]
        extents.append((start, start + size))
    return extents


@pytest.mark.parametrize(
    ("count", "width"),
    # 19, 57, 65 at full width and 10, 13 at half width used to cut the last label.
    [(7, 960), (19, 960), (24, 960), (57, 960), (65, 960), (168, 960), (10, 520), (13, 520)],
)
def test_x_labels_stay_inside_the_picture(count: int, width: int) -> None:
    labels = [f"03-{1 + index // 24:02d} {index % 24:02d}:00" for index in range(count)]
    svg = charts.stacked_bar_chart(
        chart_id="c",
        title="t",
        summary="s",
        labels=labels,
        axis_labels=labels,
        series=[charts.ChartSeries("anthropic", "#c96442", [1.0] * count)],
        formatter=charts.format_count,
        width=width,
    )
    extents = x_label_extents(svg, width)
    assert extents
    for start, end in extents:
        assert start >= 0 and end <= width, (start, end)
    # Labels do not run into each other.
    for (_, previous_end), (next_start, _) in zip(extents, extents[1:], strict=False):
        assert previous_end < next_start


def test_a_lone_point_among_many_buckets_is_drawn() -> None:
    values: list[float | None] = [None] * 120
    values[70] = 0.5
    values[100] = 0.25
    values[101] = 0.5
    svg = charts.line_chart(
        chart_id="rate",
        title="t",
        summary="s",
        labels=[str(index) for index in range(120)],
        series=[charts.ChartSeries("fallback rate", "#b03a2e", values)],
        formatter=charts.format_percent,
        y_max=1.0,
    )
    data = series_paths(parse(svg))["fallback rate"].get("d", "")
    # The lone point gets its marker; the pair draws a line (no markers beyond 60 buckets).
    assert data.count("M") == 2 and data.count("L") == 1
    assert data.count("a2.5") == 2  # one marker: two arcs
