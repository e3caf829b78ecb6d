"""Faults that hit one DAG run, injected at the moment named, on a real deployment.

They are independent of each other, so one module fixture starts them all at once (it saves
minutes on a 2-core machine) and each test then judges its own scenario:

* kill -9 of the task runner (``airflow worker -- <ti id>``) and of its supervisor, during work,
  on ``local_dask`` and ``local_host``;
* the run marked failed over the REST API while its provision is deferred, and during work;
* a ``dagrun_timeout`` shorter than the work.

For every scenario: the run ends, no lineage ever has two live runners, nothing is left after
at most **one** reaper sweep (the time from the fault to an empty census is reported), and the
evidence chain verifies with exactly one terminal entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.chaos.census import Sampler
from tests.chaos.harness import (
    Cleanup,
    chain_entries,
    chain_problems,
    clean_up_many,
    host_command_running,
    job_starts,
    lineage_of,
    record,
    story,
    task_processes,
    wait_until,
    work_task_id,
)
from tests.support.deployment import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(900)]
WORK_S = 25


@dataclass
class Scenario:
    name: str
    fault: str
    dag_id: str
    conf: dict[str, Any]
    inject: Callable[[Stack, Scenario], None]
    expect_state: str
    expect_once: bool = False  # the Dask job must not run twice
    expect_killed_entry: bool = False  # the killed try has its own work entry
    run_id: str = ""
    fault_at: float | None = None
    run_end: float | None = None
    fault_detail: str = ""
    state: str = ""
    task_states: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    cleanup: Cleanup | None = None


def _work_running(stack: Stack, s: Scenario) -> dict[str, Any]:
    ti = stack.wait_for_task(s.dag_id, s.run_id, work_task_id(s.dag_id), {"running"}, timeout=240)
    if s.dag_id in ("chaos_host", "chaos_single_host"):
        wait_until("the host command to start", lambda: host_command_running(stack, s.dag_id, s.run_id), 120)
    else:
        wait_until("the Dask job to start", lambda: job_starts(stack, s.run_id) > 0, 120)
    return ti


def kill_task_runner(stack: Stack, s: Scenario) -> None:
    ti = _work_running(stack, s)
    runner, supervisor = wait_until("the task runner process", lambda: task_processes(ti["id"]), 30)
    s.fault_at = time.monotonic()
    runner.kill()
    s.fault_detail = (
        f"SIGKILL task runner pid {runner.pid} (supervisor {supervisor.pid}) of try {ti['try_number']}"
    )


def kill_supervisor(stack: Stack, s: Scenario) -> None:
    ti = _work_running(stack, s)
    runner, supervisor = wait_until("the task runner process", lambda: task_processes(ti["id"]), 30)
    s.fault_at = time.monotonic()
    supervisor.kill()
    s.fault_detail = (
        f"SIGKILL supervisor pid {supervisor.pid} (task runner {runner.pid}) of try {ti['try_number']}"
    )


def fail_run_during_provision(stack: Stack, s: Scenario) -> None:
    key = lineage_of(s.dag_id, s.run_id)
    state_dir = stack.home / "runners" / "local_dask"

    def deferred_with_a_runner() -> bool:
        states = stack.task_states(s.dag_id, s.run_id)
        return states.get("cluster.provision") == "deferred" and any(
            key in p.name for p in state_dir.glob("ld-*.json")
        )

    wait_until("the provision to defer with its cluster created", deferred_with_a_runner, 240, poll=0.1)
    s.fault_at = time.monotonic()
    stack.set_run_state(s.dag_id, s.run_id, "failed")
    s.fault_detail = "PATCH dagRun state=failed while cluster.provision was deferred"


def fail_run_during_work(stack: Stack, s: Scenario) -> None:
    _work_running(stack, s)
    s.fault_at = time.monotonic()
    stack.set_run_state(s.dag_id, s.run_id, "failed")
    s.fault_detail = "PATCH dagRun state=failed while the work task ran"


def wait_for_timeout(stack: Stack, s: Scenario) -> None:
    wait_until("the dagrun_timeout", lambda: stack.run_state(s.dag_id, s.run_id) == "failed", 300, poll=0.5)
    s.fault_at = time.monotonic()
    s.fault_detail = f"dagrun_timeout=60s passed; job started: {job_starts(stack, s.run_id) > 0}"


SCENARIOS = [
    Scenario(
        "runner_kill_dask",
        "kill -9 task runner during Dask work",
        "chaos_dask",
        {"work_s": WORK_S},
        kill_task_runner,
        "success",
        expect_once=True,
        expect_killed_entry=True,
    ),
    Scenario(
        "runner_kill_host",
        "kill -9 task runner during a host command",
        "chaos_host",
        {"work_s": WORK_S},
        kill_task_runner,
        "success",
        expect_killed_entry=True,
    ),
    Scenario(
        "supervisor_kill_dask",
        "kill -9 supervisor during Dask work",
        "chaos_dask",
        {"work_s": WORK_S},
        kill_supervisor,
        "success",
        expect_once=True,
        expect_killed_entry=True,
    ),
    Scenario(
        "supervisor_kill_host",
        "kill -9 supervisor during a host command",
        "chaos_host",
        {"work_s": WORK_S},
        kill_supervisor,
        "success",
        expect_killed_entry=True,
    ),
    Scenario(
        "failed_in_provision",
        "run marked failed (REST) during provision",
        "chaos_dask_deferred",
        {"work_s": WORK_S},
        fail_run_during_provision,
        "failed",
    ),
    Scenario(
        "failed_in_work_dask",
        "run marked failed (REST) during Dask work",
        "chaos_dask",
        {"work_s": 120},
        fail_run_during_work,
        "failed",
        expect_killed_entry=True,
    ),
    Scenario(
        "failed_in_work_host",
        "run marked failed (REST) during a host command",
        "chaos_host",
        {"work_s": 120},
        fail_run_during_work,
        "failed",
        expect_killed_entry=True,
    ),
    Scenario(
        "single_runner_kill_host",
        "kill -9 task runner during a host command, single-task form",
        "chaos_single_host",
        {"work_s": WORK_S},
        kill_task_runner,
        "success",
        expect_killed_entry=True,
    ),
    Scenario(
        "single_failed_in_work_host",
        "run marked failed (REST) during a host command, single-task form",
        "chaos_single_host",
        {"work_s": 120},
        fail_run_during_work,
        "failed",
        expect_killed_entry=True,
    ),
    Scenario(
        "single_failed_in_work_dask",
        "run marked failed (REST) during Dask work, single-task form",
        "chaos_single_dask",
        {"work_s": 120},
        fail_run_during_work,
        "failed",
        expect_killed_entry=True,
    ),
    Scenario(
        "dagrun_timeout",
        "dagrun_timeout (60 s) shorter than the work",
        "chaos_dask_timeout",
        {},
        wait_for_timeout,
        "failed",
    ),
]


def _play(stack: Stack, s: Scenario) -> None:
    s.run_id = stack.trigger(s.dag_id, s.conf)
    try:
        s.inject(stack, s)
    except AssertionError as exc:
        s.problems.append(f"fault not injected: {exc}")
    s.state = stack.wait_for_run(s.dag_id, s.run_id, timeout=480)
    s.run_end = time.monotonic()
    s.task_states = stack.task_states(s.dag_id, s.run_id)


#: The scenario each test judges: the fixture plays only those of the selected tests (``-k``).
TEST_SCENARIO = {
    "test_task_runner_killed_during_dask_work": "runner_kill_dask",
    "test_task_runner_killed_during_host_command": "runner_kill_host",
    "test_supervisor_killed_during_dask_work": "supervisor_kill_dask",
    "test_supervisor_killed_during_host_command": "supervisor_kill_host",
    "test_run_marked_failed_during_provision": "failed_in_provision",
    "test_run_marked_failed_during_dask_work": "failed_in_work_dask",
    "test_run_marked_failed_during_host_command": "failed_in_work_host",
    "test_dagrun_timeout_shorter_than_the_work": "dagrun_timeout",
    "test_single_task_form_task_runner_killed_during_host_command": "single_runner_kill_host",
    "test_single_task_form_run_marked_failed_during_host_command": "single_failed_in_work_host",
    "test_single_task_form_run_marked_failed_during_dask_work": "single_failed_in_work_dask",
}


@pytest.fixture(scope="module")
def played(request: pytest.FixtureRequest, chaos_stack: Stack) -> dict[str, Scenario]:
    selected = {TEST_SCENARIO.get(getattr(item, "originalname", item.name)) for item in request.session.items}
    scenarios = {s.name: s for s in SCENARIOS if s.name in selected}
    with Sampler(chaos_stack.home) as sampler:
        with ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
            for future in [pool.submit(_play, chaos_stack, s) for s in scenarios.values()]:
                future.result()
        groups = {s.name: {lineage_of(s.dag_id, s.run_id)} for s in scenarios.values()}
        cleanups = clean_up_many(chaos_stack, sampler, groups)
    for s in scenarios.values():
        _judge(chaos_stack, s, sampler, cleanups[s.name])
    return scenarios


def _judge(stack: Stack, s: Scenario, sampler: Sampler, cleanup: Cleanup) -> None:
    s.cleanup = cleanup
    key = lineage_of(s.dag_id, s.run_id)
    if s.state != s.expect_state:
        s.problems.append(f"run ended {s.state}, expected {s.expect_state}: {s.task_states}")
    dupes = [d for _, d in sampler.duplicates if key in d]
    if dupes:
        s.problems.append(f"two live runners for the lineage at once: {dupes[:3]}")
    if cleanup.left_after_reap:
        s.problems.append(f"left after one reaper sweep: {cleanup.left_after_reap}")
    s.problems += chain_problems(stack, [(s.dag_id, s.run_id)], set(sampler.lineages))
    entries = chain_entries(stack, s.dag_id, s.run_id)
    if s.expect_once:
        starts = job_starts(stack, s.run_id)
        if starts != 1:
            s.problems.append(f"the Dask job started {starts} times (double work after the kill)")
    if s.expect_killed_entry:
        work = [(e["outcome"], e.get("try_number")) for e in entries if e["event"] == "work"]
        if not any(try_number == 1 for _, try_number in work):
            s.problems.append(f"no work entry for the killed try 1 (work entries: {work})")
    record(
        {
            "fault": s.fault,
            "detail": s.fault_detail,
            "user_sees": f"run {s.state}; "
            + ", ".join(f"{t}={st}" for t, st in sorted(s.task_states.items())),
            "left_after_runs": len(cleanup.left_after_runs),
            "reaper_needed": cleanup.reaped,
            "left_after_reap": len(cleanup.left_after_reap),
            "s_fault_to_run_end": None if s.fault_at is None else round(s.run_end - s.fault_at, 1),
            "s_to_cleanup": cleanup.seconds(s.fault_at, s.run_end),
            "reap_s": cleanup.reap_s,
            "evidence": story(entries),
            "problems": len(s.problems),
        }
    )


def _verdict(s: Scenario) -> None:
    assert not s.problems, f"{s.fault} ({s.fault_detail}):\n  " + "\n  ".join(s.problems)


def test_task_runner_killed_during_dask_work(played: dict[str, Scenario]) -> None:
    _verdict(played["runner_kill_dask"])


def test_task_runner_killed_during_host_command(played: dict[str, Scenario]) -> None:
    _verdict(played["runner_kill_host"])


def test_supervisor_killed_during_dask_work(played: dict[str, Scenario]) -> None:
    _verdict(played["supervisor_kill_dask"])


def test_supervisor_killed_during_host_command(played: dict[str, Scenario]) -> None:
    _verdict(played["supervisor_kill_host"])


def test_run_marked_failed_during_provision(played: dict[str, Scenario]) -> None:
    _verdict(played["failed_in_provision"])


def test_run_marked_failed_during_dask_work(played: dict[str, Scenario]) -> None:
    _verdict(played["failed_in_work_dask"])


def test_run_marked_failed_during_host_command(played: dict[str, Scenario]) -> None:
    _verdict(played["failed_in_work_host"])


def test_dagrun_timeout_shorter_than_the_work(played: dict[str, Scenario]) -> None:
    _verdict(played["dagrun_timeout"])


def test_single_task_form_task_runner_killed_during_host_command(played: dict[str, Scenario]) -> None:
    # The retry adopts the runner the killed try left (same lineage) and ends it; no second runner.
    _verdict(played["single_runner_kill_host"])


def test_single_task_form_run_marked_failed_during_host_command(played: dict[str, Scenario]) -> None:
    # on_kill ends the task's own host first, which kills the command with it.
    _verdict(played["single_failed_in_work_host"])


def test_single_task_form_run_marked_failed_during_dask_work(played: dict[str, Scenario]) -> None:
    # on_kill ends the task's own cluster.
    _verdict(played["single_failed_in_work_dask"])
