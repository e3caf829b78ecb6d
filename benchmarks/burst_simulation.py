"""Burst planner simulation: cost and queue wait on a synthetic bursty trace, side by side.

    .venv/bin/python benchmarks/burst_simulation.py [--seed 7] [--hours 24] [--warm 2] [--svg docs/burst_simulation.svg]

One seeded trace (a trickle of jobs plus bursts of hundreds), replayed minute by minute against:

* **ours** — :func:`airflow_provider_runners.governance.burst.plan` with a $/hour budget;
* **ours, N kept warm** — the same with ``min_cloud_instances: N`` (``--warm``): N cloud runners stay
  up across cycles, also on an empty queue, as governance/burst_config.py and
  operators/job_array.py keep them; a sweep over N is printed as a second table;
* **static fleet** — as many always-on cloud runners as the budget buys, never scaled;
* **seed 001, no budget** — seed 001's formulas without the cost check (``seed001_plan(budget=False)``);
* **seed 001, its budget check** — seed 001's "stop bursting when cost >= budget", checked
  before a cycle, for reference.

Model: 2 local runners always on; every runner runs ``jobs_per_instance`` (10) jobs at once; a job
takes 5 minutes; a cloud runner takes 2 minutes to boot and bills per second with a 60 s minimum
(EC2 Linux) at c5.4xlarge on-demand, $0.68/h (seed 001's table). The planner runs every minute
(seed 001's ``check_interval``) and sees the visible queue depth (SQS ApproximateNumberOfMessages).
A runner told to end takes no new job and ends when its running jobs finish (the DAG drains it).
Waits are queue waits: from arrival to the start of the job. Pure Python; a few seconds.

Markdown to stdout, JSON to ``benchmarks/results/burst_simulation.json``, the plot (an SVG the
script writes itself) to ``docs/burst_simulation.svg``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, RESULTS, fmt, md_table

from airflow_provider_runners.governance.burst import (
    BurstDecision,
    BurstPolicy,
    BurstState,
    plan,
    seed001_plan,
)

RATE = 0.68  # c5.4xlarge on-demand, seed 001's table
BUDGET = 5.0  # $/hour (seed 001's example budget)
LOCAL = 2
SLOTS = 10  # jobs per runner at once
JOB_MIN = 5  # minutes per job
BOOT_MIN = 2  # minutes from launch to taking jobs
MIN_BILLED_S = 60


@dataclass
class Runner:
    started: int  # minute launched
    local: bool = False
    ended: int | None = None
    draining: bool = False
    busy: list[int] = field(default_factory=list)  # minute each running job finishes

    def ready(self, now: int) -> bool:
        return self.local or now >= self.started + BOOT_MIN


def trace(seed: int, minutes: int) -> list[int]:
    """Jobs arriving each minute: a Poisson trickle (0.8/min) plus ~1 burst per 2.5 h of 150-600 jobs
    spread over 5 minutes."""
    rng = random.Random(seed)
    arrivals = [0] * minutes
    for minute in range(minutes):  # Poisson(0.8) by inversion
        limit, k, p = math.exp(-0.8), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                break
            k += 1
        arrivals[minute] += k
    for _ in range(max(1, minutes // 150)):
        start, size = rng.randrange(0, minutes - 5), rng.randint(150, 600)
        for i in range(size):
            arrivals[start + i % 5] += 1
    return arrivals


Planner = Callable[[BurstState], BurstDecision]


def simulate(arrivals: list[int], planner: Planner | None, static: int = 0) -> dict[str, Any]:
    runners = [Runner(started=0, local=True) for _ in range(LOCAL)]
    runners += [Runner(started=-BOOT_MIN) for _ in range(static)]
    queue: deque[int] = deque()  # arrival minute of each waiting job
    waits: list[int] = []
    low_since: float | None = None
    depth_series, cloud_series, spend_series = [], [], []
    for now, count in enumerate(arrivals):
        queue.extend([now] * count)
        for r in runners:
            r.busy = [t for t in r.busy if t > now]
            if r.draining and not r.busy and r.ended is None:
                r.ended = now
        cloud = [r for r in runners if not r.local and r.ended is None]
        if planner is not None:
            active = [r for r in cloud if not r.draining]
            d = planner(BurstState(len(queue), len(active), LOCAL, now=now * 60.0, low_since=low_since))
            low_since = d.low_since
            runners += [Runner(started=now) for _ in range(d.launch)]
            # end idle runners first, then the newest (least work done)
            for r in sorted(active, key=lambda r: (len(r.busy), -r.started))[: d.terminate]:
                r.draining = True
                if not r.busy:
                    r.ended = now
        for r in runners:
            if r.ended is not None or r.draining or not r.ready(now):
                continue
            while queue and len(r.busy) < SLOTS:
                waits.append(now - queue.popleft())
                r.busy.append(now + JOB_MIN)
        live = [r for r in runners if not r.local and r.ended is None]
        depth_series.append(len(queue))
        cloud_series.append(len(live))
        spend_series.append(len(live) * RATE)
    end = len(arrivals)
    cost = 0.0
    for r in runners:
        if r.local:
            continue
        stop = r.ended if r.ended is not None else end + (max(r.busy) - end if r.busy else 0)
        seconds = max((stop - max(r.started, 0)) * 60, MIN_BILLED_S)
        cost += seconds / 3600 * RATE
    waits_sorted = sorted(waits)
    p95 = waits_sorted[min(len(waits_sorted) - 1, math.ceil(0.95 * len(waits_sorted)) - 1)] if waits else 0
    return {
        "cost_usd": round(cost, 2),
        "p95_wait_min": p95,
        "mean_wait_min": round(sum(waits) / len(waits), 2) if waits else 0.0,
        "max_wait_min": max(waits) if waits else 0,
        "jobs_started": len(waits),
        "jobs_left": len(queue),
        "peak_cloud": max(cloud_series),
        "peak_usd_per_hour": round(max(spend_series), 2),
        "minutes_over_budget": sum(1 for s in spend_series if s > BUDGET + 1e-9),
        "cloud_runner_launches": sum(1 for r in runners if not r.local) - static,
        "series": {"depth": depth_series, "cloud": cloud_series},
    }


def svg(arrivals: list[int], results: dict[str, dict[str, Any]], path: Path) -> None:
    """Two panels (queue depth, cloud runners) over time, one line per strategy: plain SVG."""
    colors = {
        "ours": "#1b7837",
        next(n for n in results if n.endswith("kept warm")): "#762a83",
        "static fleet": "#2166ac",
        "seed 001, no budget": "#b2182b",
        "seed 001, its budget check": "#e08214",
    }
    width, panel, left, top, gap = 960, 190, 60, 40, 60
    minutes = len(arrivals)
    plot_w = width - left - 20
    rows = -(-len(colors) // 2)
    height = top + 2 * panel + gap + 52 + 18 * (rows - 1)

    def polyline(values: list[int], y0: float, vmax: float, color: str) -> str:
        step = max(1, minutes // 720)  # at most ~720 points a line
        pts = " ".join(
            f"{left + i / (minutes - 1) * plot_w:.1f},{y0 + panel - v / vmax * panel:.1f}"
            for i, v in list(enumerate(values))[::step]
        )
        return f'<polyline fill="none" stroke="{color}" stroke-width="1.3" points="{pts}"/>'

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        (
            f'<text x="{left}" y="20" font-size="14">Burst simulation: {minutes // 60} h synthetic bursty '
            f"queue, ${BUDGET:.0f}/h budget, c5.4xlarge ${RATE}/h</text>"
        ),
    ]
    panels = [
        (
            "queue depth (jobs waiting)",
            "depth",
            max(max(r["series"]["depth"]) for r in results.values()) or 1,
        ),
        ("cloud runners", "cloud", max(max(r["series"]["cloud"]) for r in results.values()) or 1),
    ]
    for n, (title, key, vmax) in enumerate(panels):
        y0 = top + n * (panel + gap)
        parts.append(
            f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel}" fill="none" stroke="#999"/>'
        )
        parts.append(f'<text x="{left}" y="{y0 - 6}">{title}</text>')
        for frac in (0, 0.5, 1):
            y = y0 + panel - frac * panel
            parts.append(f'<text x="{left - 6}" y="{y + 4:.0f}" text-anchor="end">{vmax * frac:.0f}</text>')
        if key == "cloud" and vmax >= BUDGET / RATE:
            y = y0 + panel - (BUDGET / RATE) / vmax * panel
            parts.append(
                f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#666" stroke-dasharray="4 3"/>'
            )
            parts.append(
                f'<text x="{left + plot_w - 4}" y="{y - 4:.1f}" text-anchor="end" fill="#666">budget ({BUDGET / RATE:.1f} runners)</text>'
            )
        for name, result in results.items():
            parts.append(polyline(result["series"][key], y0, vmax, colors[name]))
    axis_y = top + 2 * panel + gap
    for hour in range(0, minutes // 60 + 1, 4):
        x = left + hour * 60 / (minutes - 1) * plot_w
        parts.append(f'<text x="{x:.0f}" y="{axis_y + 16}" text-anchor="middle">{hour} h</text>')
    for i, (name, color) in enumerate(colors.items()):  # legend: two a row
        r = results[name]
        x, y = left + (i % 2) * (plot_w // 2), top + 2 * panel + gap + 36 + (i // 2) * 18
        label = f"{name}: ${r['cost_usd']:.0f} cloud cost, p95 queue wait {r['p95_wait_min']} min"
        parts.append(f'<rect x="{x}" y="{y - 6}" width="16" height="4" fill="{color}"/>')
        parts.append(f'<text x="{x + 22}" y="{y}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--warm", type=int, default=2, help="min_cloud_instances of the kept-warm row")
    parser.add_argument("--svg", default=str(REPO / "docs" / "burst_simulation.svg"))
    args = parser.parse_args(argv)
    arrivals = trace(args.seed, args.hours * 60)
    common = {
        "queue_depth_threshold": 50,
        "max_cloud_instances": 20,
        "scale_down_delay": 300.0,
        "usd_per_hour": RATE,
    }
    ours = BurstPolicy(**common, cost_budget=BUDGET)
    seed = BurstPolicy(**common, cost_budget=BUDGET)
    static = math.floor(BUDGET / RATE)
    warm = BurstPolicy(**common, cost_budget=BUDGET, min_cloud_instances=args.warm)
    results = {
        "ours": simulate(arrivals, lambda s: plan(ours, s)),
        f"ours, {args.warm} kept warm": simulate(arrivals, lambda s: plan(warm, s)),
        "static fleet": simulate(arrivals, None, static=static),
        "seed 001, no budget": simulate(arrivals, lambda s: seed001_plan(seed, s, budget=False)),
        "seed 001, its budget check": simulate(arrivals, lambda s: seed001_plan(seed, s, budget=True)),
    }
    base = results["static fleet"]
    rows = [
        [
            name,
            f"${r['cost_usd']:.2f}",
            fmt(r["cost_usd"] / base["cost_usd"], 2, "x"),
            r["p95_wait_min"],
            fmt(r["mean_wait_min"], 1),
            r["max_wait_min"],
            r["peak_cloud"],
            f"${r['peak_usd_per_hour']:.2f}",
            r["minutes_over_budget"],
            r["jobs_left"],
        ]
        for name, r in results.items()
    ]
    total = sum(arrivals)
    print(
        f"### Burst simulation: {args.hours} h, seed {args.seed}, {total} jobs "
        f"({sum(1 for a in arrivals if a > 20)} burst minutes), budget ${BUDGET:.2f}/h, static fleet {static}\n"
    )
    print(
        md_table(
            [
                "strategy",
                "cloud cost",
                "cost vs static",
                "p95 wait (min)",
                "mean wait (min)",
                "max wait (min)",
                "peak cloud runners",
                "peak $/h",
                "minutes over budget",
                "jobs still queued",
            ],
            rows,
        )
    )
    sweep = {}
    for n in sorted({0, 1, 2, 3, 5, static, args.warm}):
        policy = BurstPolicy(**common, cost_budget=BUDGET, min_cloud_instances=n)
        sweep[n] = simulate(arrivals, lambda s, p=policy: plan(p, s))
    seed = results["seed 001, no budget"]
    print(
        f"\n#### Ours with `min_cloud_instances` runners kept warm (same trace; static fleet {static} runners"
        f" ${base['cost_usd']:.2f}, p95 {base['p95_wait_min']} min; seed 001 without budget"
        f" ${seed['cost_usd']:.2f}, p95 {seed['p95_wait_min']} min)\n"
    )
    print(
        md_table(
            [
                "min_cloud_instances",
                "cloud cost",
                "cost vs static",
                "cost vs seed 001 (no budget)",
                "p95 wait (min)",
                "mean wait (min)",
                "max wait (min)",
                "minutes over budget",
                "launches",
            ],
            [
                [
                    n,
                    f"${r['cost_usd']:.2f}",
                    fmt(r["cost_usd"] / base["cost_usd"], 2, "x"),
                    fmt(r["cost_usd"] / seed["cost_usd"], 2, "x"),
                    r["p95_wait_min"],
                    fmt(r["mean_wait_min"], 1),
                    r["max_wait_min"],
                    r["minutes_over_budget"],
                    r["cloud_runner_launches"],
                ]
                for n, r in sweep.items()
            ],
        )
    )
    svg_path = Path(args.svg)
    svg(arrivals, results, svg_path)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "seed": args.seed,
        "hours": args.hours,
        "jobs": total,
        "budget": BUDGET,
        "rate": RATE,
        "results": {k: {kk: vv for kk, vv in v.items() if kk != "series"} for k, v in results.items()},
        "min_cloud_instances_sweep": {
            n: {kk: vv for kk, vv in v.items() if kk != "series"} for n, v in sweep.items()
        },
    }
    (RESULTS / "burst_simulation.json").write_text(json.dumps(out, indent=1))
    sys.stderr.write(f"plot: {svg_path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
