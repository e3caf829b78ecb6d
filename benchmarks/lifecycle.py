"""Lifecycle overhead: provision -> job -> teardown on ``local_dask`` vs the same job on a bare DAG.

Both DAGs (``benchmarks/dags/bench_lifecycle_dags.py``) run through real Airflow ``dag.test()``
in one process, against a fresh AIRFLOW_HOME (SQLite, ``airflow db migrate``) whose DAGS_FOLDER
holds only the benchmark DAG file:

* ``bench_runner``: ``runner("cluster", spec=small)`` + ``DaskJobOperator`` — a ``local_dask``
  daemon process with a LocalCluster, deferred readiness wait (the trigger runs in line in
  ``dag.test``), the job, teardown, and an evidence entry per task;
* ``bench_bare`` (the floor): one task starting an in-process ``LocalCluster`` with the same
  arguments, the identical job, closing the cluster.

One warm-up run of each is discarded (the first ``dag.test`` starts the in-process API server
and imports Dask), then the two alternate (ABBA order) for ``--reps`` repetitions each.

Where the runner's time goes is measured in the same runs: timers wrapped around
``dag.test``'s per-task runner and in-line trigger, the operators' methods, the backend's
create/teardown and the evidence callbacks (a few microseconds each); the daemon's own
``ready_at``/``stopped_at`` from its state file; TaskInstance start/end from the metadata DB;
the evidence chain of every run (verified).

    .venv/bin/python benchmarks/lifecycle.py [--reps 5] [--rows 1000000] [--keep]

Prints Markdown and writes ``benchmarks/results/lifecycle.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO, write_json
from _lifecycle_report import report, say

DAG_SOURCE = REPO / "benchmarks" / "dags" / "bench_lifecycle_dags.py"
RUNNER_DAG, BARE_DAG = "bench_runner", "bench_bare"


# -- instrumentation ---------------------------------------------------------------------------
class Recorder:
    """Spans (name, start, end) on the monotonic clock plus wall-clock marks, reset per run."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self.marks: dict[str, Any] = {}
        self.counts: dict[str, int] = defaultdict(int)

    def total(self, prefix: str) -> float:
        return sum(end - start for name, start, end in self.spans if name.startswith(prefix))


REC = Recorder()


def _wrap(owner: Any, attr: str, label: Callable[[tuple[Any, ...], dict[str, Any]], str]) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            REC.spans.append((label(args, kwargs), started, time.monotonic()))

    setattr(owner, attr, timed)


def install_probes() -> None:
    """Time the steps of a runner's lifecycle. Wraps callables in this process only; no file changes."""
    import airflow.sdk.definitions.dag as dag_module

    from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
    from airflow_provider_runners.evidence.callbacks import EvidenceCallback
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
    from airflow_provider_runners.operators.teardown import TeardownRunnerOperator
    from airflow_provider_runners.operators.work import DaskJobOperator

    _wrap(dag_module, "_run_task", lambda a, k: f"task:{k['ti'].task_id}")
    _wrap(dag_module, "_run_inline_trigger", lambda a, k: "provision.trigger")
    inline_trigger = dag_module._run_inline_trigger

    def marked_trigger(*args: Any, **kwargs: Any) -> Any:
        try:
            return inline_trigger(*args, **kwargs)
        finally:
            REC.marks["trigger_end_wall"] = time.time()

    dag_module._run_inline_trigger = marked_trigger
    _wrap(ProvisionRunnerOperator, "execute", lambda a, k: "provision.execute")
    _wrap(ProvisionRunnerOperator, "execute_complete", lambda a, k: "provision.execute_complete")
    _wrap(TeardownRunnerOperator, "execute", lambda a, k: "teardown.execute")
    _wrap(DaskJobOperator, "execute", lambda a, k: "job.execute")
    _wrap(LocalDaskBackend, "describe", lambda a, k: "backend.describe")
    _wrap(EvidenceCallback, "__call__", lambda a, k: f"evidence:{a[0].event}")

    create, teardown, status = LocalDaskBackend.create, LocalDaskBackend.teardown, LocalDaskBackend.status

    def timed_create(self: Any, request: Any) -> Any:
        REC.marks["create_wall"] = time.time()
        started = time.monotonic()
        handle = create(self, request)
        REC.spans.append(("backend.create", started, time.monotonic()))
        REC.marks["resource_id"] = handle.resource_id
        REC.marks["daemon_pid"] = handle.details.get("pid")
        REC.marks["state_file"] = str(self._state_path(handle.resource_id))
        return handle

    def timed_teardown(self: Any, handle: Any) -> Any:
        REC.marks.setdefault("teardown_wall", time.time())
        started = time.monotonic()
        try:
            return teardown(self, handle)
        finally:
            REC.spans.append(("backend.teardown", started, time.monotonic()))

    def counted_status(self: Any, handle: Any) -> Any:
        REC.counts["backend.status"] += 1
        return status(self, handle)

    LocalDaskBackend.create = timed_create  # type: ignore[method-assign]
    LocalDaskBackend.teardown = timed_teardown  # type: ignore[method-assign]
    LocalDaskBackend.status = counted_status  # type: ignore[method-assign]


# -- running -----------------------------------------------------------------------------------
@contextlib.contextmanager
def captured_output(log: Path) -> Iterator[None]:
    """Send fds 1 and 2 (Airflow's task logs, Dask warnings) to ``log`` while a DAG runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _task_instances(dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        return {
            ti.task_id: {
                "state": str(ti.state),
                "try_number": ti.try_number,
                "start_date": ti.start_date.isoformat() if ti.start_date else None,
                "end_date": ti.end_date.isoformat() if ti.end_date else None,
                "db_duration_s": _seconds(ti.start_date, ti.end_date),
            }
            for ti in rows
        }


def _evidence(dag_id: str, run_id: str) -> dict[str, Any]:
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    chains = []
    for chain in iter_chains(dag_id=dag_id, run_id=run_id):
        report = verify_chain(chain)
        chains.append(
            {
                "ok": report.ok,
                "problems": report.problems,
                "entries": [
                    {
                        "seq": e.get("seq"),
                        "event": e.get("event"),
                        "task_id": e.get("task_id"),
                        "outcome": e.get("outcome"),
                        "duration_s": (e.get("timings") or {}).get("duration_s"),
                        "ready_in_s": (e.get("facts") or {}).get("ready_in_s"),
                    }
                    for e in report.entries
                ],
            }
        )
    return {"chains": chains, "ok": bool(chains) and all(c["ok"] for c in chains)}


def _read_probe(path: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """Timings and the job's result, as the benchmark DAG's tasks recorded them."""
    timings: dict[str, float] = {}
    job: dict[str, Any] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            item = json.loads(line)
            if "result" in item:
                job = item["result"]
            else:
                timings[item["phase"]] = item["s"]
        path.write_text("")
    return timings, job


def _iso_to_wall(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _cpu_seconds() -> tuple[float, float]:
    """(CPU-seconds the whole machine has been busy, CPU-seconds of this process and its reaped children)."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def _reap(pid: int | None) -> None:
    """Reap the daemon (our child under dag.test) so that its CPU time is counted as ours."""
    deadline = time.monotonic() + 2
    while pid and time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)


def run_once(dag: Any, probe_file: Path, log: Path) -> dict[str, Any]:
    REC.reset()
    # A process that hosted a LocalCluster(processes=True) keeps __DASK_PARENT_PID in its environment
    # (distributed's Nanny sets it). A local_dask daemon spawned later inherits it, renames itself
    # "dask scheduler [...]" and the backend's liveness check stops recognising it (see
    # docs/benchmarks.md, "Bug found"). In Airflow each task is its own process, so the floor's run
    # could never leak this into a provision task: undo it here to keep the runs independent.
    os.environ.pop("__DASK_PARENT_PID", None)
    probe_file.write_text("")
    busy0, ours0 = _cpu_seconds()
    with captured_output(log):
        started = time.monotonic()
        dag_run = dag.test()
        ended = time.monotonic()
    wall = ended - started
    _reap(REC.marks.get("daemon_pid"))
    busy1, ours1 = _cpu_seconds()
    tasks = [(n.removeprefix("task:"), s, e) for n, s, e in REC.spans if n.startswith("task:")]
    first_task = min((s for _, s, _ in tasks), default=ended)
    in_tasks = sum(e - s for _, s, e in tasks)
    phases: dict[str, float] = {
        "total": wall,
        "dag_test.before_first_task": first_task - started,
        "dag_test.between_and_after_tasks": wall - (first_task - started) - in_tasks,
    }
    for task_id, s, e in tasks:
        phases[f"task:{task_id}"] = phases.get(f"task:{task_id}", 0.0) + (e - s)
    for name in {n for n, _, _ in REC.spans if not n.startswith("task:")}:
        phases[name] = REC.total(name)
    probed, job = _read_probe(probe_file)
    phases.update(probed)
    result: dict[str, Any] = {
        "dag_id": dag.dag_id,
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "wall_s": wall,
        "phases": phases,
        "task_instances": _task_instances(dag.dag_id, dag_run.run_id),
        "job_result": job,
        "status_calls": REC.counts.get("backend.status", 0),
        # CPU the rest of the machine used meanwhile (other users' processes): the noise indicator
        "foreign_cpu_s": max(0.0, (busy1 - busy0) - (ours1 - ours0)),
        "own_cpu_s": ours1 - ours0,
    }
    if dag.dag_id == RUNNER_DAG:
        _runner_details(result, phases)
    return result


def _runner_details(result: dict[str, Any], phases: dict[str, float]) -> None:
    marks = REC.marks
    state: dict[str, Any] = {}
    if marks.get("state_file") and Path(marks["state_file"]).exists():
        state = json.loads(Path(marks["state_file"]).read_text())
    ready_wall = _iso_to_wall(state.get("ready_at"))
    stopped_wall = _iso_to_wall(state.get("stopped_at"))
    if ready_wall and marks.get("create_wall"):
        phases["daemon.create_to_ready"] = ready_wall - marks["create_wall"]
        if marks.get("trigger_end_wall"):
            phases["daemon.ready_to_trigger_event"] = marks["trigger_end_wall"] - ready_wall
    if stopped_wall and marks.get("teardown_wall"):
        phases["daemon.sigterm_to_stopped"] = stopped_wall - marks["teardown_wall"]
    phases["evidence:all"] = REC.total("evidence:")
    result["resource_id"] = marks.get("resource_id")
    result["daemon_state"] = {
        k: state.get(k) for k in ("status", "stop_reason", "created_at", "ready_at", "stopped_at", "pid")
    }
    result["evidence"] = _evidence(result["dag_id"], result["run_id"])


# -- main --------------------------------------------------------------------------------------
def prepare_home(rows: int) -> Path:
    home = Path(tempfile.mkdtemp(prefix="runners-bench-lifecycle-"))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAG_SOURCE, dags / DAG_SOURCE.name)
    for key in (
        "AIRFLOW__RUNNERS__CATALOG_PATH",
        "AIRFLOW__RUNNERS__ENVIRONMENT",
        "AIRFLOW__RUNNERS__DATA_PATH",
    ):
        os.environ.pop(key, None)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__RUNNERS__EVIDENCE_PATH": "file://" + str(home / "runners" / "evidence"),
            "BENCH_ROWS": str(rows),
            "BENCH_PROBE_FILE": str(home / "probe.jsonl"),
        }
    )
    with (home / "migrate.log").open("wb") as log:
        subprocess.run(
            [str(PYTHON.with_name("airflow")), "db", "migrate"],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return home


def load_dags(dags_folder: Path) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES
    if bag.import_errors:
        raise SystemExit(f"benchmark DAG file failed to import: {bag.import_errors}")
    return {RUNNER_DAG: bag.dags[RUNNER_DAG], BARE_DAG: bag.dags[BARE_DAG]}


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie child of ours is reaped here).

    ``dag.test()`` runs the provision task in this process, so the daemons are our children:
    one that exited stays a zombie until reaped (an Airflow task process would have exited).
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def reap_leftovers(home: Path) -> list[str]:
    """Stop any local_dask daemon still running under this AIRFLOW_HOME (there should be none).

    Reads the pids from the state files and checks /proc directly, not the backend's own
    liveness check, so that a daemon the backend lost track of is found too.
    """
    import signal

    left = []
    for path in sorted((home / "runners" / "local_dask").glob("*.json")):
        state = json.loads(path.read_text())
        pid = int(state.get("pid") or 0)
        if not pid or not _running(pid):
            continue
        try:
            if os.getpgid(pid) != pid:  # the daemon leads its own session; anything else is not ours
                continue
        except ProcessLookupError:
            continue
        left.append(f"{state.get('resource_id')} (pid {pid}, state file says {state.get('status')!r})")
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _running(pid):
            os.killpg(pid, signal.SIGKILL)
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each DAG (default 5)")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows the job generates (default 1,000,000)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME (logs, ledger)")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    home = prepare_home(args.rows)
    log = home / "dag_test.log"
    probe_file = home / "probe.jsonl"
    say(f"AIRFLOW_HOME={home} (db migrated in {time.monotonic() - t0:.1f}s; task logs: {log})")
    runner_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    warmup: list[dict[str, Any]] = []
    leftovers: list[str] = []
    try:
        with captured_output(log):
            dags = load_dags(home / "dags")
        install_probes()
        for dag_id in (BARE_DAG, RUNNER_DAG):
            res = run_once(dags[dag_id], probe_file, log)
            warmup.append(res)
            say(f"warm-up {dag_id:<13} {res['wall_s']:6.2f}s  {res['state']}")
        for rep in range(args.reps):
            order = (RUNNER_DAG, BARE_DAG) if rep % 2 == 0 else (BARE_DAG, RUNNER_DAG)  # ABBA
            for dag_id in order:
                res = run_once(dags[dag_id], probe_file, log)
                (runner_runs if dag_id == RUNNER_DAG else bare_runs).append(res)
                say(
                    f"rep {rep + 1}/{args.reps} {dag_id:<13} {res['wall_s']:6.2f}s  {res['state']}  "
                    f"(other processes used {res['foreign_cpu_s']:.1f} CPU-s meanwhile)"
                )
                if "success" not in res["state"]:
                    raise SystemExit(f"{dag_id} run {res['run_id']} ended {res['state']}: see {log}")
    finally:
        leftovers = reap_leftovers(home)
        if leftovers:
            say(f"WARNING: runners left alive after the benchmark (torn down now): {leftovers}")
    summary = report(runner_runs, bare_runs, args)
    summary["checks"]["leftover_runners"] = leftovers
    path = write_json(
        "lifecycle",
        {
            "args": vars(args),
            "airflow_home": str(home) if args.keep else None,
            "summary": summary,
            "warmup": warmup,
            "runner_runs": runner_runs,
            "bare_runs": bare_runs,
            "elapsed_s": time.monotonic() - t0,
        },
    )
    say(f"\nwrote {path.relative_to(REPO)} in {time.monotonic() - t0:.0f}s total")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
