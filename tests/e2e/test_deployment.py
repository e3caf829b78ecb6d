"""End to end on a real deployment: REST-triggered runs, deferral resumed by the triggerer,
work in fresh task processes, teardown, evidence verified, nothing left running."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import local_dask_daemons
from tests.e2e.conftest import DASK_ENV_SECRETS, ERP_SECRET, HOST_SECRET, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ETL_TASKS = (
    "cluster.provision",
    "cluster.generate",
    "cluster.aggregate",
    "cluster.validate",
    "cluster.teardown",
    "cluster.provisioned",
)


def _verify(stack: Stack, dag_id: str, run_id: str) -> list[dict]:
    os.environ["AIRFLOW__RUNNERS__EVIDENCE_PATH"] = stack.env["AIRFLOW__RUNNERS__EVIDENCE_PATH"]
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    chains = list(iter_chains(dag_id=dag_id, run_id=run_id))
    assert len(chains) == 1
    report = verify_chain(chains[0])
    assert report.ok, report.problems
    return report.entries


def test_etl_runs_end_to_end_with_a_real_scheduler_and_triggerer(airflow_stack: Stack) -> None:
    airflow_stack.wait_for_dag("local_dask_etl")
    run_id = airflow_stack.trigger("local_dask_etl", {"rows": 200_000})
    state = airflow_stack.wait_for_run("local_dask_etl", run_id)
    states = airflow_stack.task_states("local_dask_etl", run_id)
    assert state == "success", (states, airflow_stack.log("scheduler")[-3000:])
    assert states == dict.fromkeys(ETL_TASKS, "success")
    # local_dask is ready within the provision's wait_before_defer: the first try succeeded and
    # never deferred (a slower runner defers: test_deferred_provision_is_resumed_by_the_triggerer)
    provision_logs = airflow_stack.home / "logs" / "dag_id=local_dask_etl" / f"run_id={run_id}"
    assert not list((provision_logs / "task_id=cluster.provision").glob("attempt=2*"))
    entries = _verify(airflow_stack, "local_dask_etl", run_id)
    assert [(e["event"], e["outcome"]) for e in entries] == [
        ("provision", "success"),
        ("work", "success"),
        ("work", "success"),
        ("work", "success"),
        ("teardown", "success"),
    ]
    assert entries[0]["facts"]["acquisition"] == "created"
    assert entries[2]["facts"]["result"]["rows_in"] == 200_000
    # the job code (dags/sales_etl.py, next to the DAG file) was shipped to the Dask cluster
    assert "sales_etl" in entries[1]["facts"]["shipped_modules"]
    assert not local_dask_daemons(airflow_stack.home)


def test_deferred_provision_is_resumed_by_the_triggerer(airflow_stack: Stack) -> None:
    """Provisions that defer at once, and whose runner is ready within seconds: the trigger's
    minimum dwell keeps each resume behind the scheduler's processing of the deferring
    process's exit, so no try is failed for a "state mismatch" (apache/airflow #66374)."""
    dag_id = "runners_test_deferred"
    airflow_stack.wait_for_dag(dag_id)
    run_ids = [airflow_stack.trigger(dag_id, {}) for _ in range(3)]
    for run_id in run_ids:
        state = airflow_stack.wait_for_run(dag_id, run_id)
        states = airflow_stack.task_states(dag_id, run_id)
        assert state == "success", (states, airflow_stack.log("scheduler")[-3000:])
        logs = (
            airflow_stack.home
            / "logs"
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / "task_id=cluster.provision"
        )
        trigger_logs = list(logs.glob("attempt=1.log.trigger.*.log"))
        assert trigger_logs, "the provision task never ran a trigger"
        assert not list(logs.glob("attempt=2*")), "a provision try was failed and retried"
        os.environ["AIRFLOW__RUNNERS__EVIDENCE_PATH"] = airflow_stack.env["AIRFLOW__RUNNERS__EVIDENCE_PATH"]
        from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

        (chain,) = list(iter_chains(dag_id=dag_id, run_id=run_id))
        report = verify_chain(chain, complete=True)
        assert report.ok, report.problems
        assert [(e["event"], e["outcome"], bool(e.get("terminal"))) for e in report.entries] == [
            ("provision", "success", False),
            ("work", "success", False),
            ("teardown", "success", True),
        ]
    assert not local_dask_daemons(airflow_stack.home)


def test_failed_work_still_tears_down_on_a_real_deployment(airflow_stack: Stack) -> None:
    airflow_stack.wait_for_dag("local_dask_etl_failure")
    run_id = airflow_stack.trigger("local_dask_etl_failure", {"rows": 50_000})
    assert airflow_stack.wait_for_run("local_dask_etl_failure", run_id) == "failed"
    states = airflow_stack.task_states("local_dask_etl_failure", run_id)
    assert states["cluster.validate"] == "failed"
    assert states["cluster.teardown"] == "success"
    entries = _verify(airflow_stack, "local_dask_etl_failure", run_id)
    assert entries[-1]["event"] == "teardown"
    assert entries[-1]["facts"]["teardown"][0]["existed"] is True
    assert not local_dask_daemons(airflow_stack.home)


def test_dedicated_host_extract_restarts_and_tears_down_on_a_real_deployment(airflow_stack: Stack) -> None:
    """Mapped commands on a local_host runner in Celery task processes; the first try of each
    extract dies after chunk 1 and its retry resumes from the checkpoints."""
    airflow_stack.wait_for_dag("dedicated_host_extract")
    conf = {"months": 2, "rows_per_day": 100, "crash_once_after_chunk": 1}
    run_id = airflow_stack.trigger("dedicated_host_extract", conf)
    state = airflow_stack.wait_for_run("dedicated_host_extract", run_id)
    states = airflow_stack.task_states("dedicated_host_extract", run_id)
    assert state == "success", (states, airflow_stack.log("scheduler")[-3000:])
    entries = _verify(airflow_stack, "dedicated_host_extract", run_id)
    events = [(e["event"], e["outcome"]) for e in entries]
    assert events.count(("work", "up_for_retry")) == 2
    assert events.count(("work", "success")) == 2
    assert events[-1] == ("teardown", "success")
    assert not list((airflow_stack.home / "runners" / "local_host").glob("host-*"))
    logs = "".join(p.read_text() for p in (airflow_stack.home / "logs").rglob("*.log"))
    assert "already done" in logs  # the retries skipped the checkpointed chunks
    assert ERP_SECRET not in logs


def test_host_command_secrets_are_masked_in_real_task_logs(airflow_stack: Stack) -> None:
    airflow_stack.wait_for_dag("runners_test_host_commands")
    run_id = airflow_stack.trigger("runners_test_host_commands", {})
    assert airflow_stack.wait_for_run("runners_test_host_commands", run_id) == "failed"
    states = airflow_stack.task_states("runners_test_host_commands", run_id)
    assert states == {
        "host.provision": "success",
        "host.ok": "success",
        "host.fails": "failed",
        "host.slow": "failed",
        "host.teardown": "success",
        "host.provisioned": "success",
    }
    run_logs = airflow_stack.home / "logs" / "dag_id=runners_test_host_commands" / f"run_id={run_id}"
    ok_log = "".join(p.read_text() for p in (run_logs / "task_id=host.ok").rglob("*.log"))
    assert f"token_len={len(HOST_SECRET)}" in ok_log
    assert "token=***" in ok_log
    everything = "".join(p.read_text() for p in airflow_stack.home.rglob("*.log"))
    assert HOST_SECRET not in everything
    slow_log = "".join(p.read_text() for p in (run_logs / "task_id=host.slow").rglob("*.log"))
    assert "did not finish within 2s" in slow_log


def test_worker_env_is_masked_in_the_work_tasks_own_log(airflow_stack: Stack) -> None:
    """The work task runs in its own process, which never built the backend: it still masks the
    local_dask Connection's worker_env values its job prints (stdout and logging)."""
    dag_id = "runners_test_worker_env_masked"
    airflow_stack.wait_for_dag(dag_id)
    run_id = airflow_stack.trigger(dag_id, {})
    state = airflow_stack.wait_for_run(dag_id, run_id)
    states = airflow_stack.task_states(dag_id, run_id)
    assert state == "success", states
    run_logs = airflow_stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    for task_id in ("cluster.print_env", "cluster.print_env_in_process"):
        work_log = "".join(p.read_text() for p in (run_logs / f"task_id={task_id}").rglob("*.log"))
        for key in DASK_ENV_SECRETS:
            assert f"worker_env {key}=***" in work_log, (task_id, work_log[-3000:])  # printed, masked
            assert f"worker_env {key}=*** (logged)" in work_log, (task_id, work_log[-3000:])
    everything = {p: p.read_text(errors="replace") for p in airflow_stack.home.rglob("*.log")}
    for path, text in everything.items():
        for value in DASK_ENV_SECRETS.values():
            assert value not in text, f"worker_env value leaked into {path}"
    entries = _verify(airflow_stack, dag_id, run_id)
    work = {e["task_id"]: e["facts"] for e in entries if e["event"] == "work"}
    keys = ("ETL_API_TOKEN", "WAREHOUSE_URL")  # runners_test_deploy_dags.WORKER_ENV_KEYS
    lengths = {f"env_{i}_len": len(DASK_ENV_SECRETS[k]) for i, k in enumerate(keys)}
    assert work["cluster.print_env"]["result"] == lengths  # the job saw them
    assert work["cluster.print_env"]["computation"]["mode"] == "published"
    assert work["cluster.print_env_in_process"]["result"] == lengths
    assert work["cluster.print_env_in_process"]["computation"]["mode"] == "in_process"
    assert not local_dask_daemons(airflow_stack.home)


def test_a_sigkilled_dask_job_try_is_taken_over_by_its_retry(airflow_stack: Stack) -> None:
    """Try 1's task process dies by SIGKILL while its job runs; try 2 re-attaches: one run."""
    dag_id = "runners_test_reattach_after_sigkill"
    airflow_stack.wait_for_dag(dag_id)
    run_id = airflow_stack.trigger(dag_id, {})
    state = airflow_stack.wait_for_run(dag_id, run_id)
    states = airflow_stack.task_states(dag_id, run_id)
    assert state == "success", (states, airflow_stack.log("scheduler")[-3000:])
    counter = airflow_stack.home / "reattach-counts" / run_id
    assert counter.read_text().splitlines() == ["run"]  # the job body ran once over both tries
    job_logs = airflow_stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=cluster.job"
    second = (job_logs / "attempt=2.log").read_text()
    assert "re-attached to airflow-runners-job-" in second
    assert "started by try 1" in second
    assert "[before this try attached] body started" in second
    entries = _verify(airflow_stack, dag_id, run_id)
    work = [e for e in entries if e["event"] == "work" and e["outcome"] == "success"]
    assert len(work) == 1
    computation = work[0]["facts"]["computation"]
    assert (computation["reattached"], computation["started_by_try"], computation["this_try"]) == (True, 1, 2)
    assert work[0]["facts"]["result"] == {"runs": 1, "total": 4950}
    assert not local_dask_daemons(airflow_stack.home)


def test_reaper_removes_the_host_of_a_run_that_hit_dagrun_timeout(airflow_stack: Stack) -> None:
    """dagrun_timeout skips the teardown; the next reaper sweep (CLI, metadata DB) removes the host."""
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    dag_id = "runners_test_dagrun_timeout"
    airflow_stack.wait_for_dag(dag_id)
    run_id = airflow_stack.trigger(dag_id, {})
    assert airflow_stack.wait_for_run(dag_id, run_id) == "failed"
    states = airflow_stack.task_states(dag_id, run_id)
    assert states["host.provision"] == "success", states
    assert states["host.teardown"] != "success", states  # nobody tore it down
    hosts = airflow_stack.home / "runners" / "local_host"
    assert [p.name for p in hosts.glob("host-*.json")], "the host should have outlived its run"
    cli = str(Path(sys.executable).with_name("airflow-runners"))
    env = {**airflow_stack.env}
    dry = subprocess.run(
        [cli, "reap", "--dry-run"], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert "would reap" in dry.stdout, dry.stdout + dry.stderr
    assert [p.name for p in hosts.glob("host-*.json")]  # a dry run changes nothing
    done = subprocess.run([cli, "reap"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert "reaped" in done.stdout, done.stdout + done.stderr
    deadline = time.monotonic() + 10
    while list(hosts.glob("host-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(hosts.glob("host-*")), list(hosts.iterdir())
    entries = _verify(airflow_stack, dag_id, run_id)
    reap = [e for e in entries if e["event"] == "reap"]
    assert len(reap) == 1, json.dumps(entries)[:2000]
    assert "ended" in json.dumps(reap[0])


def test_hil_suite_reserves_and_releases_benches_on_a_real_deployment(airflow_stack: Stack) -> None:
    """Reservations kept alive by the real triggerer, HIL commands in Celery task processes."""
    from airflow_provider_runners.backends.labgrid.client import CoordinatorClient

    airflow_stack.wait_for_dag("hil_bench_suite")
    run_id = airflow_stack.trigger("hil_bench_suite", {"hold_s": 0})
    state = airflow_stack.wait_for_run("hil_bench_suite", run_id)
    states = airflow_stack.task_states("hil_bench_suite", run_id)
    assert state == "success", (states, airflow_stack.log("triggerer")[-3000:])
    assert set(states.values()) == {"success"}
    os.environ["AIRFLOW__RUNNERS__EVIDENCE_PATH"] = airflow_stack.env["AIRFLOW__RUNNERS__EVIDENCE_PATH"]
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    reports = [verify_chain(c) for c in iter_chains(dag_id="hil_bench_suite", run_id=run_id)]
    assert len(reports) == 2  # one runner (bench) per board
    assert all(r.ok for r in reports), [r.problems for r in reports]
    benches = {e["runner"]["resource_id"] for r in reports for e in r.entries if e["event"] == "provision"}
    assert len(benches) == 2
    conn = json.loads(airflow_stack.env["AIRFLOW_CONN_RUNNERS_HIL_E2E"])
    client = CoordinatorClient(f"127.0.0.1:{conn['port']}")
    try:
        assert [p.name for p in client.places() if p.acquired] == []  # every bench released
    finally:
        client.close()
