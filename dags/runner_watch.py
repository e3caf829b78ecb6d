"""Use a runner another DAG owns: :class:`RunnerReadySensor`.

A "shared cluster" DAG keeps a Dask cluster for hours; this consumer DAG borrows nothing itself.
``wait_for_cluster`` waits — deferred, on the same batched poller as provision tasks — until the
runner of the task instance named by the params (``dag_id``, ``run_id``, ``task_id``: the owner's
provision task) exists and is ready, and returns its handle. ``job`` runs on it, ``announce``
logs its dashboard. The sensor never creates, adopts or tears down that runner: its owner does.
Instead of a lineage, a sensor may be given ``handle=`` (the owner's XCom) or ``lineage_key=``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_runners.operators.work import DaskJobOperator
from airflow_provider_runners.sensors.runners import RunnerReadySensor


def total(client: Any) -> int:
    import dask.array as da

    return int(client.compute(da.arange(1000, chunks=100).sum(), sync=True))


@task
def announce(handle: dict[str, Any]) -> str:
    dashboard = handle["endpoints"].get("dashboard", "(no dashboard)")
    print(f"runner {handle['resource_id']} is ready; dashboard: {dashboard}")
    return str(handle["resource_id"])


with DAG(
    dag_id="runner_watch",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    dagrun_timeout=timedelta(minutes=30),
    params={
        "dag_id": Param("shared_cluster", type="string", description="DAG that owns the runner"),
        "run_id": Param("scheduled__2026-01-01T00:00:00+00:00", type="string", description="its run"),
        "task_id": Param("cluster.provision", type="string", description="its provision task"),
    },
    tags=["runners", "example", "sensor", "runners-consumer"],
    doc_md=__doc__,
) as dag:
    wait = RunnerReadySensor(
        task_id="wait_for_cluster",
        conn_id="runners_default",
        lineage={
            "dag_id": "{{ params.dag_id }}",
            "run_id": "{{ params.run_id }}",
            "task_id": "{{ params.task_id }}",
        },
        timeout=timedelta(minutes=10),
        poll_interval=0.5,
    )
    DaskJobOperator(task_id="job", handle=wait.output, python_callable=total)
    announce(wait.output)
