"""DAGs the end-to-end tests (tests/e2e) run on the real deployment, next to dags/."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.operators.work import DaskJobOperator

START = datetime(2026, 1, 1)
SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}
#: worker_env keys of the runners_dask_secret Connection (tests/e2e/conftest.py): one whose name
#: looks secret to Airflow's masker and one whose name does not.
WORKER_ENV_KEYS = ("ETL_API_TOKEN", "WAREHOUSE_URL")


def print_worker_env(client: Any) -> dict[str, int]:
    """A careless job: reads its worker's environment and prints it into the task log."""

    def probe() -> dict[str, str]:
        return {key: os.environ.get(key, "") for key in WORKER_ENV_KEYS}

    seen = client.submit(probe, pure=False).result()
    for key, value in seen.items():
        print(f"worker_env {key}={value}")
        logging.getLogger("airflow.task").warning("worker_env %s=%s (logged)", key, value)
    return {f"{key}_len": len(value) for key, value in seen.items()}


with DAG("runners_test_worker_env_masked", schedule=None, start_date=START, catchup=False) as masked_dag:
    with runner("cluster", conn_id="runners_dask_secret", spec=SPEC) as handle:
        # on the cluster (re-attach, the default): the job's output is forwarded to the task log
        DaskJobOperator(task_id="print_env", handle=handle, python_callable=print_worker_env)
        # in the task process: the job prints straight into the task log
        DaskJobOperator(
            task_id="print_env_in_process", handle=handle, python_callable=print_worker_env, reattach=False
        )
