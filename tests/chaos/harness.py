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

    return Lineage(dag_id, run_id, runner_task_id(dag_id)).key


def runner_task_id(dag_id: str) -> str:
    """The task whose lineage the run's runner carries: the group's provision, or the work task
    itself in the single-task form (``chaos_single_*``)."""
    if dag_id.startswith("chaos_single_"):
        return "work"
    return "host.provision" if dag_id == "chaos_host" else "cluster.provision"


def work_task_id(dag_id: str) -> str:
    if dag_id.startswith("chaos_single_"):
        return "work"
    return "host.work" if dag_id == "chaos_host" else "cluster.work"


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
    """An entry that records the runner's end: marked ``terminal`` by the ledger, or (entries
    written before that mark existed) a teardown that found the runner, or the reaper's."""
    if entry.get("terminal") is True or entry.get("event") in END_EVENTS:
        return True
    if entry.get("event") == "teardown" and entry.get("outcome") == "success":
        return any(item.get("existed") for item in (entry.get("facts") or {}).get("teardown", []))
    return False


def _short(entry: dict[str, Any]) -> str:
    mark = "*" if is_terminal(entry) else ""
    return f"{entry['event']}/{entry['outcome']}/t{entry.get('try_number')}{mark}"


def story(entries: list[dict[str, Any]]) -> str:
    """A chain in one line: ``event/outcome/t<try>``, ``*`` on terminal entries."""
    return " ".join(_short(e) for e in entries)


@dataclass
class ChainCheck:
    lineage_key: str
    events: list[tuple[str, str, Any]]
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def round_problems(entries: list[dict[str, Any]], had_runner: bool, max_rounds: int | None) -> list[str]:
    """The chain tells the runner's story once (docs/evidence.md): it is cut into rounds at each
    terminal entry (a provision entry after one starts the next round, e.g. a retry making a new
    runner). Each round that had a runner ends with exactly one terminal entry; a new round
    starts with a provision of a *later* try (not a resumed try reporting success for a runner
    already ended); nothing reports provision or work success after its round's end."""
    told = story(entries)
    problems = []
    rounds: list[list[dict[str, Any]]] = [[]]
    for entry in entries:
        if entry["event"] == "provision" and any(is_terminal(e) for e in rounds[-1]):
            rounds.append([])
        rounds[-1].append(entry)
    if max_rounds is not None and len(rounds) > max_rounds:
        problems.append(f"{len(rounds)} rounds (want {max_rounds}): {told}")
    tries_before: list[int] = []
    for index, entries_of_round in enumerate(rounds):
        provisions = [e for e in entries_of_round if e["event"] == "provision"]
        runner_here = any(e.get("runner") for e in provisions) or (index == 0 and had_runner)
        ends = [i for i, e in enumerate(entries_of_round) if is_terminal(e)]
        if (
            index
            and provisions
            and tries_before
            and (provisions[0].get("try_number") or 0) <= max(tries_before)
        ):
            problems.append(
                f"a provision entry of try {provisions[0].get('try_number')} after the runner ended: {told}"
            )
        tries_before += [e.get("try_number") or 0 for e in provisions]
        if runner_here and not provisions:
            problems.append(f"no provision entry for a runner that existed: {told}")
        if runner_here and len(ends) != 1:
            problems.append(f"round {index + 1}: {len(ends)} terminal entries (want 1): {told}")
        if ends:
            late = [
                _short(e)
                for e in entries_of_round[ends[0] + 1 :]
                if e["event"] in ("provision", "work") and e["outcome"] == "success"
            ]
            if late:
                problems.append(f"success reported after the runner ended: {late} in {told}")
    return problems


def check_chains(
    stack: Stack, dag_id: str, run_id: str, created: set[str], max_rounds: int | None = None
) -> list[ChainCheck]:
    """Verify every chain of the run; a runner that existed (``created`` lineage keys, or a
    provision entry naming a runner) has a chain, and its story passes :func:`round_problems`;
    no try of a task is recorded twice for one event."""
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
        check.problems += round_problems(report.entries, chain.name in created, max_rounds)
        checks.append(check)
    for key in sorted(created - seen):
        checks.append(ChainCheck(key, [], [], ["no evidence chain for a runner that existed"]))
    return checks


def chain_problems(
    stack: Stack, runs: list[tuple[str, str]], lineages_seen: set[str], max_rounds: int | None = None
) -> list[str]:
    problems = []
    for dag_id, run_id in runs:
        key = lineage_of(dag_id, run_id)
        created = {key} if key in lineages_seen else set()
        for check in check_chains(stack, dag_id, run_id, created, max_rounds):
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
    done_at: float | None  # monotonic time everything of the lineages was gone (no reaper needed)
    reap_s: float = 0.0  # how long the one sweep took

    def seconds(self, fault_at: float | None, run_end: float | None) -> float | None:
        """Fault -> nothing left: by the teardown path when no reaper was needed; else the run's
        end plus one sweep (as if the reaper ran the moment the run ended)."""
        if fault_at is None or self.left_after_reap:
            return None
        if not self.reaped:
            return None if self.done_at is None else round(max(self.done_at - fault_at, 0.0), 1)
        return None if run_end is None else round(run_end - fault_at + self.reap_s, 1)


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
    output, reap_s = reap_once(stack)
    after, _ = wait_empty(sampler, everything, settle_s)
    for name, keys in groups.items():
        if name not in results:
            still = after.left(keys, sampler.baseline_pids)
            results[name] = Cleanup(
                left[name], True, output, still, None if still else after.at, round(reap_s, 1)
            )
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
