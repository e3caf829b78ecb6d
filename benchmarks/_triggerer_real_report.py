"""The report of ``triggerer_real.py``: its Markdown table from the measured rows.

Split out of ``triggerer_real.py`` to keep each benchmark file under 600 lines; it only reads the
garbage-collection logs and formats the rows that ``triggerer_real.py`` measured (no Airflow, no
processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import fmt, machine_line, md_table

ROLES = ("supervisor", "runner")  # the triggerer's processes that the rows split by


def full_collections(log_dir: Path, procs: list[dict[str, Any]], w0: float, w1: float) -> dict[str, Any]:
    """Per role, the generation-2 collections that began in the window [w0, w1] (epoch s), from
    the log benchmarks/sitecustomize.py writes per process: count, total and longest ms."""
    out: dict[str, Any] = {}
    for role in ROLES:
        durations = []
        for proc in procs:
            path = log_dir / f"{proc['pid']}.gc"
            if proc["role"] != role or not path.exists():
                continue
            for line in path.read_text(encoding="ascii").splitlines():
                began, ms, _freed = line.split()
                if w0 <= float(began) <= w1:
                    durations.append(float(ms))
        out[role] = {"count": len(durations), "ms": sum(durations), "max_ms": max(durations, default=0.0)}
    return out


def full_gcs(row: dict[str, Any]) -> str:
    """The trigger runner's generation-2 collections in the window: count, total ms (longest)."""
    gcs = (row.get("full_gcs") or {}).get("runner")
    if not gcs:
        return "–"
    return f"{gcs['count']}, {fmt(gcs['ms'], 0)} ({fmt(gcs['max_ms'], 0)})"


def report(result: dict[str, Any]) -> str:
    rows = []
    for r in result["rows"]:
        lat = r["latency"]
        rows.append(
            [
                r["n"],
                r["side"],
                fmt(r["rss_per_waiter_kib"], 1),
                f"{fmt(r['uss_per_waiter_kib'], 1)} / {fmt(r['pss_per_waiter_kib'], 1)}",
                f"{fmt(r['baseline']['rss'] / 2**20, 0)} → {fmt(r['rss_window_median'] / 2**20, 0)}",
                f"{fmt(r['cpu_ms_per_waiter_poll'], 3)} / {fmt(r.get('net_cpu_ms_per_waiter_poll'), 3)}",
                " / ".join(
                    f"{fmt(r['split_per_waiter'][role]['rss_kib'], 1)} KiB, "
                    f"{fmt(r['split_per_waiter'][role].get('net_cpu_ms_per_poll'), 3)} ms"
                    for role in ROLES
                ),
                fmt(r["status_calls_per_poll"], 1),
                f"{fmt(lat['median'], 2)} / {fmt(lat['p90'], 2)}",
                " / ".join(
                    f"{fmt(r[part]['median'], 2)}, {fmt(r[part]['p90'], 2)}" if r.get(part) else "–"
                    for part in ("detection", "handover")
                ),
                f"{r['resumed']}/{r['n']}",
                full_gcs(r),
            ]
        )
    return "\n".join(
        [
            (
                f"**Machine:** {machine_line(result['machine'])}; commit {result['git'].get('commit')}; "
                f"poll interval {result['poll_interval']} s for both sides; steady window "
                f"{result['window_polls']} intervals"
            ),
            f"**Load:** before `{result['uptime_before']}`; during the windows: "
            + "; ".join(f"{r['side']} N={r['n']} `{r['uptime_during']}`" for r in result["rows"])
            + f"; after `{result['uptime_after']}`",
            "",
            md_table(
                [
                    "N",
                    "pattern",
                    "RSS / waiter (KiB)",
                    "USS / PSS per waiter (KiB)",
                    "triggerer RSS 0 → N (MiB)",
                    "CPU ms / waiter / poll: gross / net of idle",
                    "per waiter: supervisor / trigger runner (RSS, net CPU per poll)",
                    "status calls / poll",
                    "ready → left DEFERRED median / p90 (s)",
                    "of which detection / handover: median, p90 (s)",
                    "left DEFERRED",
                    "full GCs in the window, trigger runner: count, ms (longest)",
                ],
                rows,
                align="llrrrrrrrrrr",
            ),
        ]
    )
