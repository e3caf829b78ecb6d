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


def count_workers(client: Any) -> int:
    return len(client.scheduler_info()["workers"])


# -- a spec with templates: checked when rendered, not at parse time --------------------------------
with DAG(
    "runners_test_templated_spec",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"size": "small", "ttl": "10m"},
):
    from airflow_provider_runners import runner
    from airflow_provider_runners.operators.work import DaskJobOperator

    with runner(
        "cluster",
        spec={
            "runner_class": "dask_cluster",
            "profile": "{{ params.size }}",
            "tags": {"tenant": "qa", "pipeline": "{{ dag.dag_id | replace('_', '-') }}"},
            "ttl": "{{ params.ttl }}",
        },
        provision_kwargs={"retries": 2},
    ) as cluster:
        DaskJobOperator(
            task_id="job",
            handle=cluster,
            python_callable=lambda client: len(client.scheduler_info()["workers"]),
        )
