"""Issue 18, items 2 and 3, on a real deployment: what a runner group costs a DAG run, in wall
time and scheduler hops, and how soon its teardown follows the last work task.

    .venv/bin/python benchmarks/deployed_overhead.py
    .venv/bin/python benchmarks/deployed_overhead.py --variant dask --reps 5 --concurrent 20
    .venv/bin/python benchmarks/deployed_overhead.py --idle-sleep 0.2   # a deployment setting

Starts the deployment of tests/support/deployment.py (scheduler, dag-processor, triggerer and
api-server as separate processes, LocalExecutor, PostgreSQL at 127.0.0.1:5432 with trust auth,
a database of its own that is dropped afterwards) with benchmarks/dags/deployed_overhead_dags.py,
then:

1. **A/B, interleaved**: ``--reps`` runs of the bare DAG and of the runner DAG, one run at a
   time, alternating which goes first in each pair. Wall time is the DAG run's
   ``end_date − queued_at`` (the scheduler's timestamps). Scheduler hops: the critical path of
   the run in task-instance transitions — 1 for each task instance the executor ran, +2 for each
   deferral (defer → trigger event → resume), 0 for one the scheduler marked done itself (an
   empty task) — over the DAG's dependency graph.
2. **Teardown latency**: last work task's ``end_date`` → the teardown's ``end_date``, split into
   scheduler noticed (→ ``scheduled_when``), queued (→ ``queued_when``), started (→ ``start_date``)
   and its own run (→ ``end_date``). "Alone" is the runner runs of step 1 (one run at a time);
   then ``--concurrent`` runner runs are triggered at once. In the single-task form
   (``--variant host-single`` / ``dask-single``) the work task ends its own runner: the latency is
   the work's end (its ``work`` evidence entry, written when the command or job returned) → the
   runner ended (the terminal ``end`` entry), both from the evidence ledger.

Needs PostgreSQL (and Redis, which the harness checks; scripts/ensure-services.sh starts both).
Not part of CI. Prints Markdown; the rows go to ``benchmarks/results/deployed_overhead.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from _common import REPO, git_state, machine, machine_line, md_table, uptime, write_json

sys.path.insert(0, str(REPO))

DAG_FILE = "benchmarks/dags/deployed_overhead_dags.py"
#: variant -> (bare DAG, runner DAG, the runner's task group; None: the single-task form)
VARIANTS: Mapping[str, tuple[str, str, str | None]] = {
    "host": ("overhead_bare", "overhead_host", "host"),
    "dask": ("overhead_bare_py", "overhead_dask", "cluster"),
    "host-single": ("overhead_bare", "overhead_host_single", None),
    "dask-single": ("overhead_bare_py", "overhead_dask_single", None),
}
PHASES = ("notice", "queue", "start", "run")


def ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile, interpolated between order statistics (inclusive); None when empty."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    pos = q * (len(data) - 1)
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def critical_path(graph: Mapping[str, Iterable[str]], weight: Mapping[str, int]) -> int:
    """The largest sum of ``weight`` along any path of ``graph`` (task -> its downstream tasks)."""
    memo: dict[str, int] = {}

    def longest(task: str) -> int:
        if task not in memo:
            below = [longest(d) for d in graph.get(task, ())]
            memo[task] = weight.get(task, 0) + max(below, default=0)
        return memo[task]

    return max((longest(t) for t in graph), default=0)


class Bench:
    """The measurements, against one running deployment (a ``tests.support.deployment.Stack``)."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.http = stack.client()
        self.graphs: dict[str, dict[str, list[str]]] = {}

    def graph(self, dag_id: str) -> dict[str, list[str]]:
        if dag_id not in self.graphs:
            body = self.http.get(f"/api/v2/dags/{dag_id}/tasks").json()
            self.graphs[dag_id] = {t["task_id"]: list(t["downstream_task_ids"]) for t in body["tasks"]}
        return self.graphs[dag_id]

    def deferrals(self, dag_id: str, run_id: str, task_id: str) -> int:
        """How often the task instance deferred, from its log files (every try)."""
        folder = self.stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sum(
            path.read_text(errors="replace").count("Pausing task as DEFERRED")
            for path in folder.glob("attempt=*.log")
        )

    def wait(self, runs: Sequence[tuple[str, str]], timeout: float, poll: float = 0.5) -> None:
        pending = set(runs)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for dag_id in sorted({d for d, _ in pending}):
                response = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1000})
                if response.status_code != 200:  # an api-server busy under load: ask again
                    print(f"  dagRuns: HTTP {response.status_code}, retrying", file=sys.stderr)
                    continue
                for run in response.json()["dag_runs"]:
                    if run["state"] in ("success", "failed"):
                        pending.discard((dag_id, run["dag_run_id"]))
            if pending:
                time.sleep(poll)
        if pending:
            raise SystemExit(f"{len(pending)} runs did not finish in {timeout}s, e.g. {sorted(pending)[:3]}")

    def record(self, dag_id: str, run_id: str, group: str | None) -> dict[str, Any]:
        """Wall time, hops and (runner DAGs) the teardown's latency of one finished run."""
        run = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
        tis = {
            ti["task_id"]: ti
            for ti in self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()[
                "task_instances"
            ]
        }
        graph = self.graph(dag_id)
        weight = {}
        deferred = 0
        for task_id, ti in tis.items():
            n = self.deferrals(dag_id, run_id, task_id) if ti.get("queued_when") else 0
            deferred += n
            weight[task_id] = (1 if ti.get("queued_when") else 0) + 2 * n
        out: dict[str, Any] = {
            "dag_id": dag_id,
            "run_id": run_id,
            "state": run["state"],
            "wall_s": seconds(ts(run["end_date"]), ts(run["queued_at"])),
            "queued_to_start_s": seconds(ts(run["start_date"]), ts(run["queued_at"])),
            "hops": critical_path(graph, weight),
            "deferrals": deferred,
            "task_states": {t: ti["state"] for t, ti in tis.items()},
        }
        if group is not None:
            out.update(self.teardown_latency(tis, graph, group))
        elif dag_id.endswith("_single"):
            out.update(self.owned_teardown_latency(dag_id, run_id))
        return out

    def owned_teardown_latency(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Single-task form: the work's end → its runner's end, from the run's evidence chain."""
        from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

        base = self.stack.env["AIRFLOW__RUNNERS__EVIDENCE_PATH"]
        entries = [
            e
            for c in iter_chains(dag_id=dag_id, run_id=run_id, base_url=base)
            for e in verify_chain(c).entries
        ]
        work = [
            ts(e["timings"]["ended_at"])
            for e in entries
            if e["event"] == "work" and e["outcome"] == "success"
        ]
        end = [ts(e["timings"]["ended_at"]) for e in entries if e["event"] == "end"]
        if not work or not end:
            return {"teardown_s": None}
        return {"teardown_s": seconds(max(end), max(work)), **{f"td_{name}_s": None for name in PHASES}}

    @staticmethod
    def teardown_latency(
        tis: Mapping[str, Any], graph: Mapping[str, list[str]], group: str
    ) -> dict[str, Any]:
        teardown = f"{group}.teardown"
        work = [t for t, down in graph.items() if teardown in down and t != f"{group}.provision"]
        last_end = max((ts(tis[t]["end_date"]) for t in work if tis[t].get("end_date")), default=None)
        td = tis[teardown]
        marks = [
            last_end,
            ts(td.get("scheduled_when")),
            ts(td.get("queued_when")),
            ts(td.get("start_date")),
            ts(td.get("end_date")),
        ]
        phases = {f"td_{name}_s": seconds(marks[i + 1], marks[i]) for i, name in enumerate(PHASES)}
        return {"teardown_s": seconds(marks[-1], marks[0]), **phases}

    def trigger(self, dag_id: str) -> str:
        return str(self.stack.trigger(dag_id, {}))


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while a phase runs (max and median)."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> Self:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        return {"median": round(statistics.median(self.samples), 2), "max": round(max(self.samples), 2)}


def ab(bench: Bench, bare: str, with_runner: str, group: str | None, reps: int) -> list[dict[str, Any]]:
    """``reps`` pairs, one run at a time; the pair's first DAG alternates."""
    rows = []
    for rep in range(reps):
        order = (bare, with_runner) if rep % 2 == 0 else (with_runner, bare)
        for dag_id in order:
            run_id = bench.trigger(dag_id)
            bench.wait([(dag_id, run_id)], timeout=600)
            row = bench.record(dag_id, run_id, group if dag_id == with_runner else None)
            row.update(rep=rep, uptime=uptime())
            rows.append(row)
            print(
                f"  rep {rep} {dag_id}: {row['state']} wall {row['wall_s']:.2f}s hops {row['hops']}"
                + (f" teardown {row['teardown_s']:.2f}s" if row.get("teardown_s") is not None else ""),
                file=sys.stderr,
            )
    return rows


def concurrent(bench: Bench, with_runner: str, group: str | None, n: int) -> tuple[list[dict[str, Any]], Any]:
    with LoadSampler() as load:
        runs = [(with_runner, bench.trigger(with_runner)) for _ in range(n)]
        bench.wait(runs, timeout=1800, poll=2)
    rows = [bench.record(dag_id, run_id, group) for dag_id, run_id in runs]
    return rows, load.summary()


def stat_row(label: str, values: Sequence[float | None], target: str = "") -> list[str]:
    data = [v for v in values if v is not None]
    if not data:
        return [label, "0", "-", "-", "-", "-", target]
    return [
        label,
        str(len(data)),
        f"{statistics.median(data):.2f}",
        f"{quantile(data, 0.95):.2f}",
        f"{min(data):.2f}",
        f"{max(data):.2f}",
        target,
    ]


def report(result: dict[str, Any]) -> str:
    rows = result["ab"]
    bare, with_runner = result["dags"]
    a = [r for r in rows if r["dag_id"] == bare]
    b = [r for r in rows if r["dag_id"] == with_runner]
    med_a = statistics.median(r["wall_s"] for r in a)
    med_b = statistics.median(r["wall_s"] for r in b)
    hops_a = statistics.median(r["hops"] for r in a)
    hops_b = statistics.median(r["hops"] for r in b)
    paired = [rb["wall_s"] - ra["wall_s"] for ra, rb in zip(a, b, strict=False)]
    lines = [
        f"**Machine:** {machine_line(result['machine'])}; commit {result['git'].get('commit')}; "
        f"LocalExecutor, parallelism {result['parallelism']}"
        + (f", scheduler_idle_sleep_time {result['idle_sleep']}" if result["idle_sleep"] else ""),
        (
            f"**Load:** before `{result['uptime_before']}`; after A/B `{result['uptime_after_ab']}`; "
            f"during {result['concurrent']} concurrent runs 1-min load median {result['load_concurrent']['median']}"
            f" (max {result['load_concurrent']['max']}); after `{result['uptime_after']}`"
        ),
        "",
        md_table(
            ["DAG", "runs", "wall median (s)", "wall min … max (s)", "hops (critical path)", "deferrals"],
            [
                [
                    f"`{dag}`",
                    len(rs),
                    f"{statistics.median(r['wall_s'] for r in rs):.2f}",
                    f"{min(r['wall_s'] for r in rs):.2f} … {max(r['wall_s'] for r in rs):.2f}",
                    "/".join(sorted({str(r["hops"]) for r in rs})),
                    sum(r["deferrals"] for r in rs),
                ]
                for dag, rs in ((bare, a), (with_runner, b))
            ],
        ),
        "",
        (
            f"Ratio of medians {med_b / med_a:.2f}x; runner − bare, paired median "
            f"{statistics.median(paired):+.2f} s; extra hops {hops_b - hops_a:+g} (target ≤ +1)."
        ),
        "",
        md_table(
            ["teardown latency", "n", "median (s)", "p95 (s)", "min (s)", "max (s)", "target p95"],
            [
                stat_row("alone (one run at a time)", [r["teardown_s"] for r in b], "≤ 1 s"),
                stat_row(
                    f"{result['concurrent']} concurrent runs",
                    [r["teardown_s"] for r in result["concurrent_rows"]],
                    "≤ 2 s",
                ),
            ],
        ),
        "",
        md_table(
            ["teardown phase, median (p95) s", "alone", f"{result['concurrent']} concurrent"],
            [
                [
                    label,
                    *(_med_p95([r[f"td_{name}_s"] for r in rs]) for rs in (b, result["concurrent_rows"])),
                ]
                for name, label in zip(
                    PHASES,
                    (
                        "work end → scheduled (scheduler loop)",
                        "scheduled → queued (critical section)",
                        "queued → started (executor, task process)",
                        "started → ended (the teardown's run)",
                    ),
                    strict=True,
                )
            ],
            align="lrr",
        ),
    ]
    return "\n".join(lines)


def _med_p95(values: Sequence[float | None]) -> str:
    data = [v for v in values if v is not None]
    if not data:
        return "-"
    return f"{statistics.median(data):.2f} ({quantile(data, 0.95):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="host")
    parser.add_argument("--reps", type=int, default=7, help="A/B pairs (one run at a time)")
    parser.add_argument("--concurrent", type=int, default=50, help="runner runs triggered at once")
    parser.add_argument("--parallelism", type=int, default=8, help="LocalExecutor task slots")
    parser.add_argument(
        "--idle-sleep",
        type=float,
        default=None,
        help="[scheduler] scheduler_idle_sleep_time (default: Airflow's, 1 s)",
    )
    parser.add_argument("--out", default="deployed_overhead", help="results/<out>.json")
    args = parser.parse_args(argv)

    from tests.support.deployment import deployment  # sets nothing up at import

    bare, with_runner, group = VARIANTS[args.variant]
    extra_env = {}
    if args.idle_sleep is not None:
        extra_env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] = str(args.idle_sleep)
    result: dict[str, Any] = {
        "variant": args.variant,
        "dags": [bare, with_runner],
        "parallelism": args.parallelism,
        "idle_sleep": args.idle_sleep,
        "concurrent": args.concurrent,
        "machine": machine(),
        "git": git_state(),
    }
    with deployment(
        executor="LocalExecutor",
        parallelism=args.parallelism,
        dag_files=(DAG_FILE,),
        extra_env=extra_env,
        prefix="runners-deploybench-",
        database_prefix="runners_deploybench_",
    ) as stack:
        for dag_id in (bare, with_runner):
            stack.wait_for_dag(dag_id, timeout=300)
        bench = Bench(stack)
        print("warm-up: one run of each DAG (not counted)", file=sys.stderr)
        for dag_id in (bare, with_runner):
            bench.wait([(dag_id, bench.trigger(dag_id))], timeout=600)
        result["uptime_before"] = uptime()
        result["ab"] = ab(bench, bare, with_runner, group, args.reps)
        result["uptime_after_ab"] = uptime()
        print(f"{args.concurrent} concurrent {with_runner} runs", file=sys.stderr)
        result["concurrent_rows"], result["load_concurrent"] = concurrent(
            bench, with_runner, group, args.concurrent
        )
        result["uptime_after"] = uptime()
    failed = [r for r in result["ab"] + result["concurrent_rows"] if r["state"] != "success"]
    path = write_json(args.out, result)
    print(report(result))
    print(f"\nrows: {Path(path).relative_to(REPO)}; failed runs: {len(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
