"""DAGs for tests/integration/test_single_task_form.py: work tasks that own their runner (spec=)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from airflow_provider_runners import DaskJobOperator, RunnerCommandOperator

START = datetime(2026, 1, 1)
HOST = {"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "qa"}, "ttl": "10m"}
CLUSTER = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}


def raises(client: Any) -> None:
    raise ValueError("the job failed on purpose")


with DAG("single_task_test_failures", schedule=None, start_date=START, catchup=False) as failures:
    # Each fails in a different place; every runner must be gone after its task, with evidence.
    RunnerCommandOperator(
        task_id="command_fails",
        spec=HOST,
        conn_id="runners_local_host",
        command="echo about to fail; exit 3",
    )
    DaskJobOperator(task_id="job_fails", spec=CLUSTER, conn_id="runners_default", python_callable=raises)
    RunnerCommandOperator(task_id="no_connection", spec=HOST, conn_id="runners_no_such_conn", command="true")
