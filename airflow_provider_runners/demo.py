"""``airflow-runners demo``: the README's first command.

Uses a project-local AIRFLOW_HOME (``./.airflow-home`` unless AIRFLOW_HOME is set), runs
``airflow db migrate`` and ``airflow dags test local_dask_etl`` as subprocesses, then reads
the evidence ledger and prints a short summary: the runner, step durations, cost, where the
evidence is, whether its hash chain verifies, and that no runner is left running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _airflow(args: list[str], env: dict[str, str], log: Path) -> int:
    airflow = Path(sys.executable).with_name("airflow")
    with log.open("ab") as fh:
        return subprocess.call([str(airflow), *args], env=env, stdout=fh, stderr=subprocess.STDOUT)


PROGRESS_EVERY_S = 10.0


def _current_task(log: Path, offset: int) -> str | None:
    """The task ``airflow dags test`` started last, from its log after ``offset``."""
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = re.findall(r"\[DAG TEST\] starting task_id=(\S+)", text)
    return found[-1] if found else None


def _airflow_with_progress(
    args: list[str],
    env: dict[str, str],
    log: Path,
    every: float = PROGRESS_EVERY_S,
    command: list[str] | None = None,
) -> int:
    """:func:`_airflow`, printing a progress line (elapsed, current task) every ``every`` seconds.
    ``command``: what to run instead of ``airflow`` (tests)."""
    airflow = command or [str(Path(sys.executable).with_name("airflow"))]
    offset = log.stat().st_size if log.exists() else 0
    started = time.monotonic()
    with log.open("ab") as fh:
        proc = subprocess.Popen([*airflow, *args], env=env, stdout=fh, stderr=subprocess.STDOUT)
        while True:
            try:
                return proc.wait(timeout=every)
            except subprocess.TimeoutExpired:
                task = _current_task(log, offset)
                _say(
                    f"    ... {time.monotonic() - started:.0f}s, {f'running {task}' if task else 'starting'}"
                )
            except BaseException:
                proc.terminate()  # Ctrl-C: stop the DAG run (its teardown runs on SIGTERM)
                proc.wait(timeout=60)
                raise


def demo_env(home: Path, dags: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
    }


def run_demo(rows: int, dag_id: str = "local_dask_etl") -> int:
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.cwd() / ".airflow-home").resolve()
    dags = Path(os.environ.get("RUNNERS_DAGS_FOLDER") or Path.cwd() / "dags").resolve()
    if not (dags / "local_dask_etl.py").exists():
        _say(
            f"cannot find the example DAGs in {dags}: run from the repository root or set RUNNERS_DAGS_FOLDER"
        )
        return 2
    home.mkdir(parents=True, exist_ok=True)
    env = demo_env(home, dags)
    os.environ.update({k: env[k] for k in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER")})
    log = home / "demo.log"
    _say(f"AIRFLOW_HOME={home}  (full log: {log})")
    started = time.monotonic()
    _say("1/3 airflow db migrate ...")
    if _airflow(["db", "migrate"], env, log) != 0:
        _say(f"db migrate failed; see {log}")
        return 1
    _say(f"2/3 airflow dags test {dag_id} (rows={rows:,}) ...")
    t0 = time.monotonic()
    code = _airflow_with_progress(["dags", "test", dag_id, "--conf", json.dumps({"rows": rows})], env, log)
    dag_seconds = time.monotonic() - t0
    _say("3/3 reading the evidence ledger ...")
    return _summary(dag_id, code, dag_seconds, time.monotonic() - started)


def _latest_chain(dag_id: str) -> tuple[Any, Any] | None:
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    best = None
    for chain in iter_chains(dag_id=dag_id):
        report = verify_chain(chain)
        if report.entries:
            first = report.entries[0]["recorded_at"]
            if best is None or first > best[2]:
                best = (chain, report, first)
    return (best[0], best[1]) if best else None


def _summary(dag_id: str, code: int, dag_seconds: float, total_seconds: float) -> int:
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.evidence.summary import summarize

    found = _latest_chain(dag_id)
    if found is None:
        _say(f"no evidence was recorded for {dag_id}: the DAG did not run (exit {code}); see the log")
        return 1
    chain, report = found
    s = summarize(report.entries)
    provision: dict[str, Any] = next((e for e in report.entries if e["event"] == "provision"), {})
    facts = provision.get("facts") or {}
    live = [h.resource_id for h in get_backend().list_managed()]
    _say("")
    _say(
        f"DAG          {dag_id}  run {s['run_id']}  -> {'success' if code == 0 else f'FAILED (exit {code})'}"
    )
    _say(
        f"runner       {s['resource_id']} on {s['backend']} "
        f"({facts.get('workers')} workers x {facts.get('threads_per_worker')} threads, "
        f"scheduler {facts.get('scheduler_address')}, ready in {facts.get('ready_in_s')}s)"
    )
    for step in s["steps"]:
        dur = f"{step['duration_s']:.1f}s" if step["duration_s"] is not None else "-"
        _say(f"  {step['event']:<10} {step['task_id']:<22} {step['outcome']:<8} {dur:>7}")
    work = [e for e in report.entries if e["event"] == "work" and e.get("task_id", "").endswith("aggregate")]
    _say(f"cost         ${s['usd']:.4f} (catalog price for local runners: $0/h)")
    _say(f"evidence     {chain}  ({len(report.entries)} entries)")
    _say(f"verify       {'OK: hash chain intact' if report.ok else 'FAILED: ' + '; '.join(report.problems)}")
    _say(f"left running {live or 'nothing'}")
    _say(f"time         DAG {dag_seconds:.1f}s, total {total_seconds:.1f}s")
    if work:
        _say(f"             aggregate took {work[0]['timings'].get('duration_s')}s on the cluster")
    ok = code == 0 and report.ok and s["torn_down"] and not live
    return 0 if ok else 1
