"""The Runners page's cost chart and budget headroom table (docs/ui.md), as plain HTML and inline SVG.

Used by :mod:`airflow_provider_runners.plugins.runners_ui` only. It draws, creates and reads
nothing else: the cost comes from the evidence rows the page already has (``summarize()`` per
chain: tenant, pipeline, ``started_at``, ``usd``), the budgets from the catalog
(``environments.<env>.budgets``) and the live rates from the live-runner rows (``usd_per_hour``).
No JavaScript, no external CSS or fonts: every value is escaped; a bar's ``<title>`` is its tooltip.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.core.catalog import Catalog

#: At most this many time buckets (the latest) and series (the costliest; the rest is "other").
MAX_BUCKETS = 24
MAX_SERIES = 6
#: Colour-blind-safe palette (Okabe-Ito), one per series; "other" is grey.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")
OTHER = "#9aa5b1"
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 56, 34, 12


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _started(row: dict[str, Any]) -> datetime | None:
    value = row.get("started_at")
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cost_series(evidence: list[dict[str, Any]], by: str) -> tuple[list[str], dict[str, list[float]]]:
    """Cost per time bucket per ``by`` (``tenant`` or ``pipeline``; untagged runners are ``(none)``).

    Buckets are UTC hours when every chain started within two days, else UTC days; only buckets
    with a cost appear, the latest :data:`MAX_BUCKETS`. Returns ``(bucket labels, {series: usd
    per bucket})``, the costliest :data:`MAX_SERIES` series first and the others summed as
    ``other``. Chains without a start time are left out (their cost is in the table below).
    """
    if by not in ("tenant", "pipeline"):
        raise ValueError(f"cost chart by={by!r}: allowed values are 'tenant', 'pipeline'")
    dated = [(when, row) for row in evidence if (when := _started(row)) is not None]
    if not dated:
        return [], {}
    span = max(w for w, _ in dated) - min(w for w, _ in dated)
    fmt = "%m-%d %H:00" if span.total_seconds() <= 2 * 86400 else "%Y-%m-%d"
    cells: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for when, row in dated:
        cells[str(row.get(by) or "(none)")][when.astimezone(UTC).strftime(fmt)] += float(
            row.get("usd") or 0.0
        )
    buckets = sorted({b for per in cells.values() for b in per})[-MAX_BUCKETS:]
    totals = {name: sum(per[b] for b in buckets) for name, per in cells.items()}
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    series = {name: [cells[name][b] for b in buckets] for name in ranked[:MAX_SERIES]}
    if len(ranked) > MAX_SERIES:
        series["other"] = [sum(cells[name][b] for name in ranked[MAX_SERIES:]) for b in buckets]
    return buckets, series


def _nice_max(value: float) -> float:
    """The axis top: 1, 2 or 5 x a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if factor * step >= value:
            return factor * step
    return 10 * step


def cost_chart_svg(evidence: list[dict[str, Any]], by: str) -> str:
    """A stacked bar chart of :func:`cost_series` as inline SVG (with a legend), or a note."""
    buckets, series = cost_series(evidence, by)
    if not buckets:
        return f'<p class="note">No cost per {_e(by)} yet.</p>'
    stacks = [sum(values[i] for values in series.values()) for i in range(len(buckets))]
    top = _nice_max(max(stacks))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / len(buckets)
    bar = max(min(slot * 0.7, 48.0), 2.0)
    parts = [
        (
            f'<svg class="chart" role="img" aria-label="cost in USD per {_e(by)} over time" '
            f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">'
        ),
        f"<title>Cost in USD per {_e(by)} over time</title>",
    ]
    for frac in (0.0, 0.5, 1.0):  # axis and grid
        y = TOP + plot_h * (1 - frac)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" stroke="#d9e2ec"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#52606d">'
            f"${top * frac:.4g}</text>"
        )
    colours = {
        name: (OTHER if name == "other" else PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)
    }
    label_every = max(1, len(buckets) // 8)
    for i, bucket in enumerate(buckets):
        x = LEFT + slot * i + (slot - bar) / 2
        y = TOP + plot_h
        for name, values in series.items():
            if values[i] <= 0:
                continue
            h = plot_h * values[i] / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}" fill="{colours[name]}">'
                f"<title>{_e(name)} {_e(bucket)}: ${values[i]:.4f}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                f'fill="#52606d">{_e(bucket)}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{colours[name]}"></i>{_e(name)} ${sum(values):.4f}</span>'
        for name, values in series.items()
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def budget_headroom(catalog: Catalog | None, runners: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One row per catalog budget: environment, scope (tenant / pipeline), name, limit $/h, the live
    runners' $/h (from the live-runner rows, matched by environment and tag), headroom and use in %.

    ``runners`` None (the user may not see live runners): the live sum is unknown (None)."""
    if catalog is None:
        return []
    rows = []
    for env_name, env in sorted(catalog.environments.items()):
        for scope in ("tenant", "pipeline"):
            for name, limit in sorted(getattr(env.budgets, scope).items()):
                live = None
                if runners is not None:
                    live = sum(
                        float(r.get("usd_per_hour") or 0.0)
                        for r in runners
                        if not r.get("error") and r.get("environment") == env_name and r.get(scope) == name
                    )
                rows.append(
                    {
                        "environment": env_name,
                        "scope": scope,
                        "name": name,
                        "limit": float(limit),
                        "live_usd_per_hour": live,
                        "headroom": None if live is None else float(limit) - live,
                        "used_pct": None if live is None or not limit else 100.0 * live / float(limit),
                    }
                )
    return rows


def headroom_table(rows: list[dict[str, Any]]) -> str:
    """The budget headroom as a table with a bar per budget (red over 90 % used)."""
    if not rows:
        return (
            '<p class="note">No budgets in the catalog (<code>environments.&lt;env&gt;.budgets</code>).</p>'
        )
    body = []
    for r in rows:
        if r["live_usd_per_hour"] is None:
            live = headroom = use = '<span class="note">needs read access to Connections</span>'
        else:
            pct = r["used_pct"] if r["used_pct"] is not None else 100.0
            tone = "bad" if pct > 90 else "ok"
            live = f"${r['live_usd_per_hour']:.4f}/h"
            headroom = f'<span class="{tone}">${r["headroom"]:.4f}/h</span>'
            use = (
                f'<span class="meter" title="{pct:.0f}% used"><b class="{tone}" '
                f'style="width:{min(pct, 100.0):.0f}%"></b></span> {pct:.0f}%'
            )
        body.append(
            f"<tr><td>{_e(r['environment'])}</td><td>{_e(r['scope'])}</td><td>{_e(r['name'])}</td>"
            f'<td class="num">${r["limit"]:.4f}/h</td><td class="num">{live}</td>'
            f'<td class="num">{headroom}</td><td>{use}</td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Environment", "Budget", "Name", "Limit", "Live runners", "Headroom", "Used")
    )
    return f'<table class="budgets"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


CSS = """
svg.chart{display:block;max-width:100%;height:auto;margin:.3rem 0}
.legend{font-size:.85rem;margin:.2rem 0 .6rem}.legend .key{margin-right:1rem;white-space:nowrap}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
.charts{display:flex;flex-wrap:wrap;gap:0 2rem}h3{font-size:.95rem;margin:.6rem 0 .2rem}
.meter{display:inline-block;width:8rem;height:.6rem;background:#e4e7eb;vertical-align:middle}
.meter b{display:block;height:100%}.meter b.ok{background:#0b7a3e}.meter b.bad{background:#b42318}
span.ok{color:#0b7a3e}span.bad{color:#b42318;font-weight:600}
"""


def render_cost_section(
    evidence: list[dict[str, Any]], runners: list[dict[str, Any]] | None, catalog: Catalog | None
) -> str:
    """The page's "Cost and budgets" section: a chart per tenant and per pipeline, then headroom."""
    charts = "".join(
        f"<div><h3>Cost per {by}</h3>{cost_chart_svg(evidence, by)}</div>" for by in ("tenant", "pipeline")
    )
    return (
        f'<h2>Cost and budgets</h2><div class="charts">{charts}</div>'
        f"<h3>Budget headroom ($/hour of live runners)</h3>{headroom_table(budget_headroom(catalog, runners))}"
    )
