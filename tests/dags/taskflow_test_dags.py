"""DAGs for tests/integration/test_taskflow_runner.py (copied into the test DAGs folder)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}


@task.runner(spec=SPEC, retries=0)
def explode(client: Any) -> None:
    workers = len(client.scheduler_info()["workers"])
    raise RuntimeError(f"job failed on purpose with {workers} workers")


with DAG("runners_test_taskflow_failure", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    explode()
