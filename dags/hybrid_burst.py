"""Seed 001 as a DAG: local runners always work the queue; cloud runners burst when it is deep.

One run = one planning cycle (schedule it at the policy's ``check_interval``, docs/cost.md):

* ``local`` — a runner that is always part of the cycle (on-prem capacity: ``local_count``);
* ``plan`` — :class:`BurstPlanOperator` reads the queue depth, counts the pool's live cloud
  runners and returns one launch per cloud runner to start, within ``max_cloud_instances``,
  the $/hour ``cost_budget`` and the per-cycle caps (docs/cost.md);
* ``cloud`` — a mapped task group: one provision -> drain -> teardown per launch. Each drains
  the queue and returns when it is empty (or when a later cycle marks it ``draining``), so the
  teardown ends the runner: cloud runners exist only while there is a backlog.

Locally (the default) the queue is ``dags/burst_jobs.py``'s directory queue and the "cloud"
is ``runners_default`` (local_dask) — the DAG runs anywhere. With ``RUNNERS_BURST_QUEUE_URL``
set, the depth comes from that SQS queue (``RUNNERS_BURST_AWS_CONN_ID``, default
``aws_default``). ``RUNNERS_BURST_CONN_ID`` selects the cloud backend: it must serve
``dask_cluster`` runners (local_dask, dataproc_dask — e.g. ``runners_dataproc`` with
``RUNNERS_BURST_PROFILE=standard`` and ``RUNNERS_BURST_ENVIRONMENT=dev``: ``small`` is a profile
of the ``local`` environment only). ``runners_ec2`` serves ``dedicated_host`` only: for a burst
onto EC2 hosts use ``dags/job_array_burst.py`` (seed 001's job array, docs/cost.md).
The ``jobs`` param enqueues that many demo jobs first (0 = just plan the existing backlog).
Cloud runners here end when the queue is empty; warm ``min_cloud_instances`` kept across cycles
are a feature of ``dags/job_array_burst.py``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task, task_group
from burst_jobs import LocalQueue, drain

from airflow_provider_runners import runner
from airflow_provider_runners.operators.burst import BurstPlanOperator
from airflow_provider_runners.operators.work import DaskJobOperator

QUEUE = "hybrid-burst"
CLOUD_CONN_ID = os.environ.get("RUNNERS_BURST_CONN_ID", "runners_default")
QUEUE_URL = os.environ.get("RUNNERS_BURST_QUEUE_URL")
TAGS = {"tenant": "research", "pipeline": "hybrid-burst"}
LOCAL_SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": TAGS, "ttl": "1h"}
CLOUD_SPEC = {
    "runner_class": "dask_cluster",
    "profile": os.environ.get("RUNNERS_BURST_PROFILE", "small"),
    "environment": os.environ.get("RUNNERS_BURST_ENVIRONMENT") or None,
    "tags": {**TAGS, "extra": {"burst-pool": "hybrid-burst-cloud"}},
    "ttl": "1h",
    "idle_timeout": "10m",
    "spot": True,
}
POLICY = {
    "queue_depth_threshold": 20,
    "max_cloud_instances": 3,
    "min_cloud_instances": 0,
    "jobs_per_instance": 10,
    "cost_budget": 10.0,
    "scale_down_delay": "5m",
}


def local_queue_depth() -> int:
    return LocalQueue(QUEUE).depth()


@task
def enqueue() -> int:
    jobs = int(get_current_context()["params"]["jobs"])
    return LocalQueue(QUEUE).put([{"id": i, "size": 20_000} for i in range(jobs)])


with DAG(
    dag_id="hybrid_burst",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    params={"jobs": Param(60, type="integer", minimum=0, description="demo jobs to enqueue first")},
    tags=["runners", "example", "burst"],
    doc_md=__doc__,
) as hybrid_burst:
    queue_kwargs: dict[str, Any] = (
        {"queue_url": QUEUE_URL, "aws_conn_id": os.environ.get("RUNNERS_BURST_AWS_CONN_ID", "aws_default")}
        if QUEUE_URL
        else {"queue_depth": local_queue_depth}
    )
    plan = BurstPlanOperator(
        task_id="plan", policy=POLICY, spec=CLOUD_SPEC, conn_id=CLOUD_CONN_ID, local_count=1, **queue_kwargs
    )

    with runner("local", spec=LOCAL_SPEC) as local:
        # drain claims jobs from a queue on this Airflow worker and reads the runner registry: it
        # needs the worker's local state, so it runs in the task process (no re-attach).
        DaskJobOperator(
            task_id="drain", handle=local, python_callable=drain, op_kwargs={"queue": QUEUE}, reattach=False
        )

    @task_group
    def cloud(launch: dict[str, Any]) -> None:
        with runner("runner", conn_id=CLOUD_CONN_ID, spec=CLOUD_SPEC) as handle:
            DaskJobOperator(
                task_id="drain",
                handle=handle,
                python_callable=drain,
                op_kwargs={"queue": QUEUE, "handle": handle, "launch": launch},
                reattach=False,
            )

    bursts = cloud.expand(launch=plan.output)
    enqueue() >> plan >> [bursts, hybrid_burst.task_group_dict["local"]]

if __name__ == "__main__":
    hybrid_burst.test()
