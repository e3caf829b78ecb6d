"""Yardsticks of the fault suite: evidence checks, cleanup accounting, the processes to kill,
and the rows of the reliability table (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.chaos.census import Census, Sampler, take_census
from tests.support.deployment import Stack

EXECUTOR = os.environ.get("RUNNERS_CHAOS_EXECUTOR", "CeleryExecutor")
PARALLELISM = int(os.environ.get("RUNNERS_CHAOS_PARALLELISM", "8"))
#: Evidence events that end a runner besides a teardown that found it (docs/evidence.md).
END_EVENTS = frozenset({"reap"})
ROWS: list[dict[str, Any]] = []


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} CPUs"


def lineage_of(dag_id: str, run_id: str) -> str:
    """The lineage key of the run's runner (chaos DAGs and local_dask_etl: one runner each)."""
    from airflow_provider_runners.lineage import Lineage

    group = "host" if dag_id == "chaos_host" else "cluster"
    return Lineage(dag_id, run_id, f"{group}.provision").key


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, poll: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- evidence ------------------------------------------------------------------------------------
def is_terminal(entry: dict[str, Any]) -> bool:
    """An entry that says the runner ended: a teardown that found it, or the reaper."""
    if entry.get("event") in END_EVENTS:
        return True
    if entry.get("event") == "teardown" and entry.get("outcome") == "success":
        return any(item.get("existed") for item in (entry.get("facts") or {}).get("teardown", []))
    return False


@dataclass
class ChainCheck:
    lineage_key: str
    events: list[tuple[str, str, Any]]
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_chains(stack: Stack, dag_id: str, run_id: str, created: set[str]) -> list[ChainCheck]:
    """Verify every chain of the run. Each runner that existed (``created`` lineage keys, or a
    provision entry naming a runner) has a chain with exactly one terminal entry, and nothing
    claims provision or work after it."""
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    base = stack.env["AIRFLOW__RUNNERS__EVIDENCE_PATH"]
    checks = []
    seen = set()
    for chain in iter_chains(dag_id=dag_id, run_id=run_id, base_url=base):
        report = verify_chain(chain)
        events = [(e["event"], e["outcome"], e.get("try_number")) for e in report.entries]
        check = ChainCheck(
            chain.name, events, report.entries, [f"does not verify: {p}" for p in report.problems]
        )
        seen.add(chain.name)
        # appends are idempotent per (task, map index, try, event): a callback run twice is one entry
        keys = Counter(
            (e["event"], e.get("task_id"), e.get("map_index"), e.get("try_number"))
            for e in report.entries
            if e.get("task_id") and e.get("try_number") is not None
        )
        doubled = [key for key, count in keys.items() if count > 1]
        if doubled:
            check.problems.append(f"entries written twice for one try: {doubled} in {events}")
        terminal = [i for i, e in enumerate(report.entries) if is_terminal(e)]
        had_runner = chain.name in created or any(
            e["event"] == "provision" and e.get("runner") for e in report.entries
        )
        if had_runner:
            if len(terminal) != 1:
                check.problems.append(f"{len(terminal)} terminal entries (want 1): {events}")
            if terminal:
                after = report.entries[terminal[-1] + 1 :]
                late = [(e["event"], e["outcome"]) for e in after if e["event"] in ("provision", "work")]
                if late:
                    check.problems.append(f"entries after the runner ended: {late} in {events}")
        checks.append(check)
    for key in sorted(created - seen):
        checks.append(ChainCheck(key, [], [], ["no evidence chain for a runner that existed"]))
    return checks


def chain_problems(stack: Stack, runs: list[tuple[str, str]], lineages_seen: set[str]) -> list[str]:
    problems = []
    for dag_id, run_id in runs:
        key = lineage_of(dag_id, run_id)
        created = {key} if key in lineages_seen else set()
        for check in check_chains(stack, dag_id, run_id, created):
            problems += [f"{dag_id}/{run_id} chain {check.lineage_key}: {p}" for p in check.problems]
    return problems


def chain_entries(stack: Stack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    base = stack.env["AIRFLOW__RUNNERS__EVIDENCE_PATH"]
    return [
        e for c in iter_chains(dag_id=dag_id, run_id=run_id, base_url=base) for e in verify_chain(c).entries
    ]


# -- cleanup -------------------------------------------------------------------------------------
def reap_once(stack: Stack) -> tuple[str, float]:
    """One sweep of ``airflow-runners reap`` against the deployment (CLI, metadata DB)."""
    cli = str(Path(sys.executable).with_name("airflow-runners"))
    started = time.monotonic()
    done = subprocess.run(
        [cli, "reap"], check=False, env=stack.env, capture_output=True, text=True, timeout=300
    )
    return done.stdout + done.stderr, time.monotonic() - started


def wait_empty(sampler: Sampler, lineages: set[str], timeout: float) -> tuple[Census, list[str]]:
    deadline = time.monotonic() + timeout
    census = take_census(sampler.home, sampler.known)
    while census.left(lineages, sampler.baseline_pids) and time.monotonic() < deadline:
        time.sleep(0.5)
        census = take_census(sampler.home, sampler.known)
    return census, census.left(lineages, sampler.baseline_pids)


@dataclass
class Cleanup:
    left_after_runs: list[str]
    reaped: bool
    reap_output: str
    left_after_reap: list[str]
    done_at: float | None  # monotonic time everything of the lineages was gone

    def seconds_since(self, since: float | None) -> float | None:
        return None if self.done_at is None or since is None else round(self.done_at - since, 1)


def clean_up_many(
    stack: Stack, sampler: Sampler, groups: dict[str, set[str]], settle_s: float = 20.0
) -> dict[str, Cleanup]:
    """After the runs ended: what each group of lineages left (waiting ``settle_s`` for
    processes to exit); if anything, **one** reaper sweep for all; what is left then."""
    everything = set().union(*groups.values())
    census, _ = wait_empty(sampler, everything, settle_s)
    left = {name: census.left(keys, sampler.baseline_pids) for name, keys in groups.items()}
    results: dict[str, Cleanup] = {}
    for name, keys in groups.items():
        if not left[name]:
            seen = [sampler.last_seen[k] for k in keys if k in sampler.last_seen]
            results[name] = Cleanup([], False, "", [], max(seen, default=census.at))
    if len(results) == len(groups):
        return results
    output, _ = reap_once(stack)
    after, _ = wait_empty(sampler, everything, settle_s)
    for name, keys in groups.items():
        if name not in results:
            still = after.left(keys, sampler.baseline_pids)
            results[name] = Cleanup(left[name], True, output, still, None if still else after.at)
    return results


def clean_up(stack: Stack, sampler: Sampler, lineages: set[str], settle_s: float = 20.0) -> Cleanup:
    """:func:`clean_up_many` for one group."""
    return clean_up_many(stack, sampler, {"all": lineages}, settle_s)["all"]


# -- the processes of a task ----------------------------------------------------------------------
def task_processes(ti_id: str) -> tuple[psutil.Process, psutil.Process] | None:
    """(task runner, supervisor) of a running task instance: the task runner titles itself
    ``airflow worker -- <ti id>`` (Task SDK); its parent is the supervisor."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            title = " ".join(proc.info["cmdline"] or [])
            if "airflow worker --" in title and ti_id in title:
                parent = proc.parent()
                if parent is not None:
                    return proc, parent
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def job_starts(stack: Stack, run_id: str) -> int:
    """How often the chaos_dask job started on a worker (tests/dags/runners_chaos_dags.py)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    path = stack.home / "runners" / "chaos-jobs" / f"{safe}.log"
    try:
        return sum(1 for line in path.read_text().splitlines() if line.startswith("start"))
    except FileNotFoundError:
        return 0


def host_command_running(stack: Stack, dag_id: str, run_id: str) -> bool:
    """A command of the run's local_host runner is running (its pid file exists)."""
    key = lineage_of(dag_id, run_id)
    for record in (stack.home / "runners" / "local_host").glob("host-*.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if data.get("handle", {}).get("lineage_key") == key:
            pids = stack.home / "runners" / "local_host" / f"{record.stem}.pids"
            return pids.is_dir() and any(pids.iterdir())
    return False


def log_lines(
    stack: Stack, pattern: str, services: tuple[str, ...] = ("scheduler",), limit: int = 8
) -> list[str]:
    regex = re.compile(pattern)
    found = []
    for service in services:
        try:
            text = stack.log(service)
        except FileNotFoundError:
            continue
        found += [f"{service}: {line.strip()[:300]}" for line in text.splitlines() if regex.search(line)]
    return found[-limit:]


def record(row: dict[str, Any]) -> None:
    """One row of the reliability table (printed at the end; docs/reliability.md)."""
    row = {"executor": EXECUTOR, "load": load_average(), **row}
    ROWS.append(row)
    path = os.environ.get("RUNNERS_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
