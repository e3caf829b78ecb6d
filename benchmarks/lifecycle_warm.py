"""Side by side in one run: the in-process LocalCluster floor, dask's threaded scheduler, the
runner's cold path and its warm path (issue 18), the same job, real Airflow ``dag.test()``.

DAGs (``benchmarks/dags/bench_lifecycle_dags.py``), all running :func:`groupby_job`:

* ``bench_bare``        floor: one task starting an in-process LocalCluster of the ``small`` shape;
* ``bench_threaded``    one task, dask's threaded scheduler (the cheapest thing a user could do);
* ``bench_runner``      cold: provision (a new local_dask daemon) → job → teardown (Connection
                        ``runners_default``, no pool);
* ``bench_runner_single`` cold, single-task form: ``DaskJobOperator(spec=...)`` creates, uses and
                        ends its cluster in one task (no provision or teardown task);
* ``bench_runner_warm`` warm: the same on Connection ``bench_warm`` (``pool_size`` 1): the provision
                        claims a pre-started cluster. Before each warm rep the benchmark waits until
                        the pool holds a running member (the steady state of a pool; the refill runs
                        in the background, its CPU is counted in "other processes").

One warm-up run of each is discarded; then per rep the four run in a rotating order. Reported:
medians, each DAG's paired (per rep) difference to the floor and its ratio. Then readiness: the
time from a daemon's ``ready_at`` to a waiting provision noticing it, with the runner's FIFO
signal (``wait_for_change``) vs polling every 0.1 s — ``--readiness N`` clusters each.

    .venv/bin/python benchmarks/lifecycle_warm.py [--reps 5] [--rows 1000000] [--readiness 5]

Prints Markdown and writes ``benchmarks/results/lifecycle_warm.json``. Cleans up every daemon it
started (``reap_leftovers``) and its temporary AIRFLOW_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import REPO, fmt, machine, machine_line, md_table, summarize, write_json
from lifecycle import captured_output, prepare_home, reap_leftovers, run_once, say

DAGS = ("bench_bare", "bench_threaded", "bench_runner", "bench_runner_single", "bench_runner_warm")
FLOOR = "bench_bare"
TARGETS = {"bench_runner": 1.0, "bench_runner_single": 1.0, "bench_runner_warm": 0.0}


def _pool_ready(state_dir: Path, timeout: float = 120.0) -> bool:
    """A running, unclaimed warm-pool member exists (read from the state files)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in state_dir.glob("ld-pool-*.json"):
            state = json.loads(path.read_text())
            if state.get("status") == "running" and not path.with_suffix(".claim").exists():
                return True
        time.sleep(0.1)
    return False


def lifecycle(args: argparse.Namespace, home: Path, log: Path) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    with captured_output(log):
        bag = DagBag(dag_folder=str(home / "dags"))
    if bag.import_errors:
        raise SystemExit(f"benchmark DAG file failed to import: {bag.import_errors}")
    dags = {d: bag.dags[d] for d in DAGS}
    state_dir = home / "runners" / "local_dask"
    runs: dict[str, list[dict[str, Any]]] = {d: [] for d in DAGS}
    probe = home / "probe.jsonl"

    def one(dag_id: str, timed: bool = True) -> dict[str, Any]:
        # The warm-up run of bench_runner_warm finds the pool empty (a cold start that fills it).
        if timed and dag_id == "bench_runner_warm" and not _pool_ready(state_dir):
            raise SystemExit("the warm pool never held a running member: see the daemon logs")
        load = os.getloadavg()[0]
        res = run_once(dags[dag_id], probe, log)
        res["load1_before"] = load
        if "success" not in res["state"]:
            raise SystemExit(f"{dag_id} run {res['run_id']} ended {res['state']}: see {log}")
        return res

    for dag_id in DAGS:
        res = one(dag_id, timed=False)
        say(f"warm-up {dag_id:<18} {res['wall_s']:6.2f}s")
    for rep in range(args.reps):
        order = DAGS[rep % len(DAGS) :] + DAGS[: rep % len(DAGS)]
        for dag_id in order:
            res = one(dag_id)
            runs[dag_id].append(res)
            say(
                f"rep {rep + 1}/{args.reps} {dag_id:<18} {res['wall_s']:6.2f}s  load {res['load1_before']:.2f}"
                f"  other processes {res['foreign_cpu_s']:.1f} CPU-s"
            )
    return runs


def report_lifecycle(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    floor = [r["wall_s"] for r in runs[FLOOR]]
    results = {json.dumps(r["job_result"], sort_keys=True) for rs in runs.values() for r in rs}
    rows, summary = [], {}
    for dag_id in DAGS:
        walls = [r["wall_s"] for r in runs[dag_id]]
        s = summarize(walls)
        paired = summarize(w - f for w, f in zip(walls, floor, strict=True))
        ratio = s["median"] / summarize(floor)["median"]
        target = TARGETS.get(dag_id)
        verdict = "" if target is None else ("meets" if paired["median"] <= target else "misses")
        summary[dag_id] = {"wall": s, "minus_floor": paired, "ratio": ratio, "target_s": target}
        rows.append(
            [
                f"`{dag_id}`",
                fmt(s["median"]),
                fmt(s["p90"]),
                f"{paired['median']:+.2f}",
                f"{paired['min']:+.2f} … {paired['max']:+.2f}",
                f"{ratio:.2f}x",
                f"≤ {target:+.1f} s: **{verdict}**" if target is not None else "",
            ]
        )
    loads = [r["load1_before"] for rs in runs.values() for r in rs]
    foreign = [r["foreign_cpu_s"] for rs in runs.values() for r in rs]
    print(
        f"## Lifecycle side by side — {args.reps} reps, {args.rows:,} rows, `small` (2 workers x 1 thread)\n"
    )
    print(f"Machine: {machine_line(machine())}\n")
    print(
        md_table(
            [
                "DAG",
                "median (s)",
                "p90 (s)",
                "− floor, paired median (s)",
                "− floor min … max",
                "ratio",
                "target",
            ],
            rows,
        )
    )
    print(
        f"\nLoad average (1 min) before the runs: median {summarize(loads)['median']:.2f}, max {max(loads):.2f}; "
        f"CPU-s used by other processes per run: median {summarize(foreign)['median']:.2f}, max {max(foreign):.2f} "
        "(the machine is shared). Identical job results in every DAG: "
        f"{len(results) == 1}."
    )
    return {"dags": summary, "load1": summarize(loads), "foreign_cpu_s": summarize(foreign)}


def readiness(n: int, home: Path) -> dict[str, Any]:
    """``ready_at`` → noticed, for ``n`` cold clusters each: FIFO signal vs a 0.1 s poll loop."""
    from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
    from airflow_provider_runners.core.backend import ConnectionConfig, ProvisionRequest, RunnerState
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec

    backend = LocalDaskBackend(
        ConnectionConfig(
            "bench",
            "runners_local_dask",
            extra={"state_dir": str(home / "runners" / "local_dask"), "dashboard": False},
        )
    )
    spec = resolve_spec(
        RunnerSpec.parse(
            {"runner_class": "dask_cluster", "profile": "small", "ttl": "10m", "tags": {"tenant": "bench"}}
        )
    )
    out: dict[str, list[float]] = {"signal": [], "poll_0.1s": []}
    for i in range(n):
        for mode, values in out.items():
            lineage = Lineage("readiness", f"run-{i}-{mode}", "provision")
            handle = backend.create(
                ProvisionRequest.build(spec, lineage, lineage.attempt_token(1), "bench", {})
            )
            deadline = time.monotonic() + 120
            while (
                status := backend.status(handle)
            ).state is RunnerState.PENDING and time.monotonic() < deadline:
                if mode == "signal":
                    backend.wait_for_change([handle], 5.0)
                else:
                    time.sleep(0.1)
            noticed = time.time()
            state = json.loads(backend._state_path(handle.resource_id).read_text())
            if status.state is RunnerState.READY and state.get("ready_at"):
                values.append(noticed - datetime.fromisoformat(state["ready_at"]).timestamp())
            backend.teardown(handle)
    print(f"\n### Readiness: daemon `ready_at` → the waiting provision noticed it ({n} clusters each)\n")
    rows = []
    for mode, values in out.items():
        s = summarize(values)
        rows.append([mode, fmt(s["median"] * 1000, 1), fmt(s["max"] * 1000, 1), len(values)])
    print(md_table(["wait between polls", "median (ms)", "max (ms)", "clusters"], rows))
    return {mode: summarize(values) for mode, values in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--readiness", type=int, default=5, help="clusters per readiness mode (0: skip)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    home = prepare_home(args.rows)
    extra = {"pool_size": 1, "pool_idle": 900, "state_dir": str(home / "runners" / "local_dask")}
    os.environ["AIRFLOW_CONN_BENCH_WARM"] = json.dumps({"conn_type": "runners_local_dask", "extra": extra})
    log = home / "dag_test.log"
    say(f"AIRFLOW_HOME={home}; task logs: {log}")
    data: dict[str, Any] = {"args": vars(args), "load_start": os.getloadavg()}
    try:
        runs = lifecycle(args, home, log)
        data["lifecycle"] = report_lifecycle(runs, args)
        data["runs"] = {
            d: [{k: r[k] for k in ("wall_s", "load1_before", "foreign_cpu_s")} for r in rs]
            for d, rs in runs.items()
        }
        if args.readiness:
            data["readiness"] = readiness(args.readiness, home)
    finally:
        left = reap_leftovers(home)
        data["leftovers_ended_at_exit"] = left  # the warm pool's last member is expected here
        say(f"ended at exit: {left}")
        shutil.rmtree(home, ignore_errors=True)
    data["load_end"] = os.getloadavg()
    path = write_json("lifecycle_warm", data)
    say(f"wrote {path.relative_to(REPO)} in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
