"""The Runners page's cost chart and budget headroom (plugins/runners_charts.py, docs/ui.md)."""

from __future__ import annotations

import re
import xml.dom.minidom
from typing import Any

import pytest

from airflow_provider_runners.core.catalog import Catalog
from airflow_provider_runners.plugins import runners_charts, runners_ui


def _row(tenant: str | None, pipeline: str | None, started: str | None, usd: float) -> dict[str, Any]:
    return {"tenant": tenant, "pipeline": pipeline, "started_at": started, "usd": usd}


EVIDENCE = [
    _row("analytics", "sales-etl", "2026-01-05T10:15:00+00:00", 0.5),
    _row("analytics", "sales-etl", "2026-01-05T10:45:00+00:00", 0.25),
    _row("qa", None, "2026-01-05T12:00:00+00:00", 1.0),
    _row("<script>", "x", "2026-01-06T01:00:00+00:00", 0.125),
    _row("analytics", None, None, 9.0),  # no start time: not in the chart
]


def test_cost_series_buckets_hours_within_two_days_and_sums_per_tag() -> None:
    buckets, series = runners_charts.cost_series(EVIDENCE, "tenant")
    assert buckets == ["01-05 10:00", "01-05 12:00", "01-06 01:00"]
    assert series == {"qa": [0.0, 1.0, 0.0], "analytics": [0.75, 0.0, 0.0], "<script>": [0.0, 0.0, 0.125]}
    _buckets, by_pipeline = runners_charts.cost_series(EVIDENCE, "pipeline")
    assert by_pipeline["(none)"] == [0.0, 1.0, 0.0]


def test_cost_series_buckets_days_over_longer_spans_and_folds_small_series() -> None:
    rows = [_row(f"t{i}", None, f"2026-01-{i + 1:02d}T00:00:00+00:00", float(i + 1)) for i in range(8)]
    buckets, series = runners_charts.cost_series(rows, "tenant")
    assert buckets[0] == "2026-01-01"
    assert len(buckets) == 8
    assert list(series)[:2] == ["t7", "t6"]
    assert len(series) == runners_charts.MAX_SERIES + 1
    assert sum(series["other"]) == 1.0 + 2.0  # t0 and t1


def test_cost_series_refuses_an_unknown_grouping() -> None:
    with pytest.raises(ValueError, match=r"by='dag'.*'tenant', 'pipeline'"):
        runners_charts.cost_series(EVIDENCE, "dag")


def test_chart_is_well_formed_escaped_svg_with_a_legend() -> None:
    html = runners_charts.cost_chart_svg(EVIDENCE, "tenant")
    svg = html[: html.index("</svg>") + len("</svg>")]
    xml.dom.minidom.parseString(svg)  # well-formed
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert html.count("<rect ") == 3
    assert "<title>qa 01-05 12:00: $1.0000</title>" in html
    assert "analytics $0.7500" in html  # legend with the total
    assert re.search(r">\$1<", html)  # the axis top
    assert runners_charts.cost_chart_svg([], "pipeline") == '<p class="note">No cost per pipeline yet.</p>'


CATALOG = Catalog.model_validate(
    {
        "default_environment": "dev",
        "environments": {"dev": {"budgets": {"tenant": {"analytics": 2.0}, "pipeline": {"sales-etl": 0.5}}}},
    }
)


def test_budget_headroom_sums_live_runners_of_the_environment_and_tag() -> None:
    live = [
        {"environment": "dev", "tenant": "analytics", "pipeline": "sales-etl", "usd_per_hour": 0.45},
        {"environment": "dev", "tenant": "analytics", "pipeline": None, "usd_per_hour": 0.3},
        {"environment": "prod", "tenant": "analytics", "pipeline": None, "usd_per_hour": 5.0},
        {"conn_id": "x", "error": "down"},
    ]
    rows = runners_charts.budget_headroom(CATALOG, live)
    assert [(r["scope"], r["name"], r["limit"]) for r in rows] == [
        ("tenant", "analytics", 2.0),
        ("pipeline", "sales-etl", 0.5),
    ]
    assert rows[0]["live_usd_per_hour"] == pytest.approx(0.75)
    assert rows[0]["headroom"] == pytest.approx(1.25)
    assert rows[1]["used_pct"] == pytest.approx(90.0)
    table = runners_charts.headroom_table(rows)
    assert '<span class="ok">$1.2500/h</span>' in table
    assert 'style="width:90%"' in table
    over = runners_charts.headroom_table(
        runners_charts.budget_headroom(CATALOG, [{**live[0], "usd_per_hour": 0.6}])
    )
    assert '<span class="bad">$-0.1000/h</span>' in over


def test_headroom_without_access_to_live_runners_or_budgets() -> None:
    rows = runners_charts.budget_headroom(CATALOG, None)
    assert rows[0]["live_usd_per_hour"] is None
    assert "needs read access to Connections" in runners_charts.headroom_table(rows)
    assert runners_charts.budget_headroom(None, []) == []
    assert "No budgets in the catalog" in runners_charts.headroom_table([])


def test_the_page_has_the_cost_section() -> None:
    page = runners_ui.render_page([], [], catalog=CATALOG)
    assert "<h2>Cost and budgets</h2>" in page
    assert "No cost per tenant yet." in page
    assert "<td>analytics</td>" in page
