"""End to end on a real deployment: REST-triggered runs, deferral resumed by the triggerer,
work in fresh task processes, teardown, evidence verified, nothing left running."""

from __future__ import annotations

import os

import pytest

from tests.conftest import local_dask_daemons
from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ETL_TASKS = (
    "cluster.provision",
    "cluster.generate",
    "cluster.aggregate",
    "cluster.validate",
    "cluster.teardown",
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
    # the provision task deferred and the triggerer resumed it
    provision_logs = airflow_stack.home / "logs" / "dag_id=local_dask_etl" / f"run_id={run_id}"
    trigger_logs = list((provision_logs / "task_id=cluster.provision").glob("attempt=1.log.trigger.*.log"))
    assert trigger_logs, "the provision task never ran a trigger"
    assert (
        "Trigger fired event" in trigger_logs[0].read_text()
        or "trigger completed" in trigger_logs[0].read_text()
    )
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
