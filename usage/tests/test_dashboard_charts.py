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
    assert charts.provider_color("openai", 0) != charts.provider_color("gemini", 1)


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
