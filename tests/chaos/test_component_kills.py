"""kill -9 of a whole Airflow component with runs in flight, then a restart (as a process
supervisor or Kubernetes would restart it): the triggerer while provisions are deferred, the
scheduler while work runs. Every run still succeeds, no job runs twice, nothing is left after
at most one reaper sweep, and every chain verifies with exactly one terminal entry."""

from __future__ import annotations

import time

import pytest

from tests.chaos.census import Sampler
from tests.chaos.harness import (
    chain_problems,
    clean_up,
    job_starts,
    lineage_of,
    log_lines,
    record,
    wait_until,
)
from tests.support.deployment import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(900)]
RESTART_AFTER_S = 5.0


def _in_state(stack: Stack, dag_id: str, task_id: str, state: str) -> list[str]:
    """Run ids whose ``task_id`` is in ``state`` (one REST call for every run of the DAG)."""
    with stack.client() as http:
        body = http.get(
            f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances",
            params={"task_id": task_id, "state": state, "limit": 100},
        ).json()
    return [ti["dag_run_id"] for ti in body.get("task_instances", [])]


def _judge(
    stack: Stack,
    sampler: Sampler,
    fault: str,
    detail: str,
    fault_at: float,
    runs: list[tuple[str, str]],
    states: dict[tuple[str, str], str],
) -> None:
    run_end = time.monotonic()
    lineages = {lineage_of(*run) for run in runs}
    cleanup = clean_up(stack, sampler, lineages)
    chains = chain_problems(stack, runs, set(sampler.lineages))
    starts = {run_id: job_starts(stack, run_id) for dag_id, run_id in runs if dag_id.startswith("chaos_dask")}
    failed = {run: stack.task_states(*run) for run, state in states.items() if state != "success"}
    record(
        {
            "fault": fault,
            "detail": detail,
            "user_sees": f"{sum(s == 'success' for s in states.values())} of {len(runs)} runs success",
            "left_after_runs": len(cleanup.left_after_runs),
            "reaper_needed": cleanup.reaped,
            "left_after_reap": len(cleanup.left_after_reap),
            "s_fault_to_run_end": round(run_end - fault_at, 1),
            "s_to_cleanup": cleanup.seconds(fault_at, run_end),
            "reap_s": cleanup.reap_s,
            "job_starts": sorted(starts.values()),
            "problems": len(chains) + len(failed),
        }
    )
    problems = [f"run failed: {run}: {tis}" for run, tis in failed.items()]
    if failed:
        problems += log_lines(stack, r"state mismatch|Executor reports|heartbeat|[Aa]dopt", ("scheduler",))
    problems += [f"Dask job of {run_id} started {n} times" for run_id, n in starts.items() if n != 1]
    if cleanup.left_after_reap:
        problems.append(f"left after one reaper sweep: {cleanup.left_after_reap}")
    problems += chains
    assert not problems, f"{fault} ({detail}):\n  " + "\n  ".join(problems)


def test_triggerer_killed_with_provisions_deferred(chaos_stack: Stack, sampler: Sampler) -> None:
    dag_id = "chaos_dask_deferred"
    runs = [(dag_id, chaos_stack.trigger(dag_id, {"work_s": 2})) for _ in range(4)]
    deferred = wait_until(
        "a deferred provision",
        lambda: _in_state(chaos_stack, dag_id, "cluster.provision", "deferred"),
        timeout=240,
        poll=0.1,
    )
    fault_at = time.monotonic()
    chaos_stack.kill("triggerer")
    time.sleep(RESTART_AFTER_S)
    chaos_stack.restart("triggerer")
    detail = f"SIGKILL triggerer process group with {len(deferred)} provision(s) deferred; restarted after {RESTART_AFTER_S:.0f}s"
    states = chaos_stack.wait_for_runs(runs, timeout=480)
    _judge(chaos_stack, sampler, "kill -9 triggerer with provisions deferred", detail, fault_at, runs, states)


def test_scheduler_killed_mid_run(chaos_stack: Stack, sampler: Sampler) -> None:
    runs = [("chaos_dask", chaos_stack.trigger("chaos_dask", {"work_s": 30})) for _ in range(2)]
    runs += [("chaos_host", chaos_stack.trigger("chaos_host", {"work_s": 30})) for _ in range(2)]
    wait_until(
        "a Dask job to run",
        lambda: any(job_starts(chaos_stack, run_id) for _, run_id in runs),
        timeout=300,
        poll=0.3,
    )
    fault_at = time.monotonic()
    chaos_stack.kill("scheduler")
    time.sleep(RESTART_AFTER_S)
    chaos_stack.restart("scheduler")
    detail = f"SIGKILL scheduler process group during work ({chaos_stack.executor}); restarted after {RESTART_AFTER_S:.0f}s"
    states = chaos_stack.wait_for_runs(runs, timeout=480)
    _judge(chaos_stack, sampler, "kill -9 scheduler mid-run", detail, fault_at, runs, states)
