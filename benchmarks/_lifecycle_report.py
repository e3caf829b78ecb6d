"""The report of ``lifecycle.py``: the overhead table, the per-phase breakdown and its attribution.

Split out of ``lifecycle.py`` to keep each benchmark file under 600 lines; it only formats the
runs that ``lifecycle.py`` measured (no Airflow, no processes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

from _common import fmt, machine, machine_line, md_table, summarize

TARGET_OVERHEAD_S = 1.5


def say(text: str = "") -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- report ------------------------------------------------------------------------------------
def _median(runs: list[dict[str, Any]], phase: str) -> float | None:
    values = [r["phases"][phase] for r in runs if phase in r["phases"]]
    return summarize(values)["median"] if values else None


def _db_median(runs: list[dict[str, Any]], task_id: str) -> float | None:
    values = [
        r["task_instances"][task_id]["db_duration_s"]
        for r in runs
        if task_id in r["task_instances"] and r["task_instances"][task_id]["db_duration_s"] is not None
    ]
    return summarize(values)["median"] if values else None


ATTRIBUTION: list[tuple[str, str | None, str | None]] = [
    # label, runner phase, floor phase: the component is runner − floor (a missing side counts 0)
    (
        "cluster start: daemon create → ready vs in-process LocalCluster",
        "daemon.create_to_ready",
        "cluster.start",
    ),
    ("readiness detection: `ready_at` → trigger event", "daemon.ready_to_trigger_event", None),
    ("the job's compute on the daemon's cluster vs in-process", "job.compute", "job.compute"),
    ("cluster stop: teardown (SIGTERM → exit) vs LocalCluster.close", "backend.teardown", "cluster.close"),
    ("evidence callbacks (3 ledger entries)", "evidence:all", None),
]


def attribute(runner: list[dict[str, Any]], bare: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Split each rep's (runner − floor) into matched components; the rest is Airflow task machinery."""
    parts: dict[str, list[float]] = defaultdict(list)
    for x, y in zip(runner, bare, strict=True):
        rp, bp = x["phases"], y["phases"]
        explained = 0.0
        for label, r_phase, b_phase in ATTRIBUTION:
            value = (rp.get(r_phase, 0.0) if r_phase else 0.0) - (bp.get(b_phase, 0.0) if b_phase else 0.0)
            parts[label].append(value)
            explained += value
        parts["rest: 3 task runs + deferral resume vs 1 task run (task runner, API calls, XCom)"].append(
            x["wall_s"] - y["wall_s"] - explained
        )
        parts["**total overhead**"].append(x["wall_s"] - y["wall_s"])
    return {label: summarize(values) for label, values in parts.items()}


BREAKDOWN: list[tuple[str, str | None, str | None, str | None]] = [
    # label, runner phase, bare phase, DB task id (runner)
    (
        "dag.test() before the first task (bundle sync, DAG run)",
        "dag_test.before_first_task",
        "dag_test.before_first_task",
        None,
    ),
    (
        "dag.test() scheduling loop between / after tasks",
        "dag_test.between_and_after_tasks",
        "dag_test.between_and_after_tasks",
        None,
    ),
    (
        "**`cluster.provision` task** (all of it, incl. deferral)",
        "task:cluster.provision",
        None,
        "cluster.provision",
    ),
    ("&nbsp;&nbsp;execute: acquire, spawn daemon, push handle, defer", "provision.execute", None, None),
    ("&nbsp;&nbsp;&nbsp;&nbsp;of which backend.create (state file + Popen)", "backend.create", None, None),
    ("&nbsp;&nbsp;deferral: in-line trigger until READY", "provision.trigger", None, None),
    (
        "&nbsp;&nbsp;&nbsp;&nbsp;daemon: create → `ready_at` (spawn, imports, LocalCluster)",
        "daemon.create_to_ready",
        "cluster.start",
        None,
    ),
    (
        "&nbsp;&nbsp;&nbsp;&nbsp;`ready_at` → trigger event (poll latency)",
        "daemon.ready_to_trigger_event",
        None,
        None,
    ),
    ("&nbsp;&nbsp;resume: execute_complete (describe, XComs)", "provision.execute_complete", None, None),
    ("&nbsp;&nbsp;evidence callback", "evidence:provision", None, None),
    ("**`cluster.job` task** / floor's `job` task", "task:cluster.job", "task:job", "cluster.job"),
    ("&nbsp;&nbsp;in-process LocalCluster start (floor only)", None, "cluster.start", None),
    ("&nbsp;&nbsp;DaskJobOperator.execute (connect, facts, job)", "job.execute", None, None),
    ("&nbsp;&nbsp;&nbsp;&nbsp;the job: groupby compute", "job.compute", "job.compute", None),
    ("&nbsp;&nbsp;in-process LocalCluster close (floor only)", None, "cluster.close", None),
    ("&nbsp;&nbsp;evidence callback", "evidence:work", None, None),
    ("**`cluster.teardown` task**", "task:cluster.teardown", None, "cluster.teardown"),
    ("&nbsp;&nbsp;backend.teardown (SIGTERM → daemon exits)", "backend.teardown", None, None),
    ("&nbsp;&nbsp;evidence callback", "evidence:teardown", None, None),
    ("evidence callbacks, all tasks", "evidence:all", None, None),
    ("**whole DAG run** (`dag.test()` wall)", "total", "total", None),
]


def report(
    runner: list[dict[str, Any]], bare: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    r, b = summarize(x["wall_s"] for x in runner), summarize(x["wall_s"] for x in bare)
    paired = [x["wall_s"] - y["wall_s"] for x, y in zip(runner, bare, strict=True)]
    d = summarize(paired)
    diff_of_medians = r["median"] - b["median"]
    ratio = r["median"] / b["median"]
    verdict = "meets" if d["median"] <= TARGET_OVERHEAD_S else "misses"
    results = {json.dumps(x["job_result"], sort_keys=True) for x in runner + bare}
    checks = {
        "all_success": all("success" in x["state"] for x in runner + bare),
        "evidence_ok": all(x.get("evidence", {}).get("ok") for x in runner),
        "daemons_stopped": all(x.get("daemon_state", {}).get("status") == "stopped" for x in runner),
        "identical_job_results": len(results) == 1,
    }
    say("")
    print(
        f"## Lifecycle overhead — {args.reps} reps, {args.rows:,} rows, local_dask `small` (2 workers x 1 thread)\n"
    )
    print(f"Machine: {machine_line(machine())}\n")
    print(
        md_table(
            ["DAG", "median (s)", "p90 (s)", "min (s)", "max (s)", "ratio to floor (median)"],
            [
                [
                    "`bench_bare` (floor: in-process LocalCluster)",
                    fmt(b["median"]),
                    fmt(b["p90"]),
                    fmt(b["min"]),
                    fmt(b["max"]),
                    "1.00x",
                ],
                [
                    "`bench_runner` (provision → job → teardown)",
                    fmt(r["median"]),
                    fmt(r["p90"]),
                    fmt(r["min"]),
                    fmt(r["max"]),
                    f"{ratio:.2f}x",
                ],
                [
                    "**overhead** (runner − floor, paired per rep)",
                    f"**{fmt(d['median'])}**",
                    fmt(d["p90"]),
                    fmt(d["min"]),
                    fmt(d["max"]),
                    f"target ≤ {TARGET_OVERHEAD_S} s: **{verdict}**",
                ],
            ],
        )
    )
    print(
        f"\nDifference of the medians: {diff_of_medians:.2f} s. Checks: all runs succeeded: "
        f"{checks['all_success']}; every evidence chain verified: {checks['evidence_ok']}; every daemon "
        f"stopped: {checks['daemons_stopped']}; both DAGs computed the same result: "
        f"{checks['identical_job_results']} ({runner[0]['job_result']})."
    )
    print("\n### Where the runner's time goes (medians over the timed reps)\n")
    rows = []
    for label, rp, bp, db_task in BREAKDOWN:
        rv = _median(runner, rp) if rp else None
        bv = _median(bare, bp) if bp else None
        dbv = _db_median(runner, db_task) if db_task else None
        rows.append([label, fmt(rv), fmt(bv), fmt(dbv)])
    print(md_table(["phase", "runner (s)", "floor (s)", "TI start→end in DB (s)"], rows))
    attribution = attribute(runner, bare)
    print("\n### The overhead, attributed (per rep: runner part − matching floor part; medians)\n")
    print(
        md_table(
            ["component of (runner − floor)", "median (s)", "p90 (s)"],
            [[label, fmt(v["median"]), fmt(v["p90"])] for label, v in attribution.items()],
        )
    )
    print(
        "\nWall times per rep (s): runner "
        + ", ".join(f"{x['wall_s']:.2f}" for x in runner)
        + "; floor "
        + ", ".join(f"{x['wall_s']:.2f}" for x in bare)
        + f". Readiness polls per provision (median): {summarize(x['status_calls'] for x in runner)['median']:.0f}."
    )
    fr, fb = summarize(x["foreign_cpu_s"] for x in runner), summarize(x["foreign_cpu_s"] for x in bare)
    print(
        "\nNoise: CPU-seconds used by *other* processes on the machine during each run (2 cores = 2 CPU-s per s): "
        f"runner runs median {fr['median']:.2f} (max {fr['max']:.2f}), floor runs median {fb['median']:.2f} "
        f"(max {fb['max']:.2f}); per rep runner "
        + ", ".join(f"{x['foreign_cpu_s']:.2f}" for x in runner)
        + "; floor "
        + ", ".join(f"{x['foreign_cpu_s']:.2f}" for x in bare)
        + "."
    )
    return {
        "foreign_cpu_s": {"runner": fr, "bare": fb},
        "attribution": attribution,
        "runner": r,
        "bare": b,
        "overhead_paired": d,
        "overhead_diff_of_medians_s": diff_of_medians,
        "ratio_of_medians": ratio,
        "target_overhead_s": TARGET_OVERHEAD_S,
        "meets_target": d["median"] <= TARGET_OVERHEAD_S,
        "checks": checks,
        "breakdown_medians": {
            label: {
                "runner": _median(runner, rp) if rp else None,
                "bare": _median(bare, bp) if bp else None,
                "db_task_duration": _db_median(runner, db_task) if db_task else None,
            }
            for label, rp, bp, db_task in BREAKDOWN
        },
    }
