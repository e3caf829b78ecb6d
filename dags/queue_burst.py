"""Burst when work arrives: :class:`RunnerQueueDepthSensor` in front of the burst planner.

``wait_for_backlog`` waits — deferred, one ``GetQueueAttributes`` per tick shared by every sensor
on the same AWS Connection — until the SQS queue ``params.queue_url`` holds at least
``MIN_MESSAGES`` jobs. Then ``plan`` (:class:`BurstPlanOperator`, docs/cost.md)
decides how many runners to start, and each mapped ``cloud`` group borrows one, drains the queue
on it (``dags/burst_jobs.py``'s ``drain_sqs``) and gives it back. Schedule it like
``dags/hybrid_burst.py`` (one run per planning cycle); the sensor makes an empty cycle cheap:
it waits in the triggerer instead of starting anything. The AWS Connection is
``RUNNERS_QUEUE_AWS_CONN_ID`` (default ``aws_default``). The runners are local_dask
(``runners_default``, profile ``small`` of the ``local`` environment) and end when the queue is
empty (``min_cloud_instances: 0``); for EC2 hosts that drain SQS and stay warm across cycles,
see ``dags/job_array_burst.py``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task_group
from burst_jobs import drain_sqs

from airflow_provider_runners import runner
from airflow_provider_runners.operators.burst import BurstPlanOperator
from airflow_provider_runners.operators.work import DaskJobOperator
from airflow_provider_runners.sensors.runners import RunnerQueueDepthSensor

AWS_CONN_ID = os.environ.get("RUNNERS_QUEUE_AWS_CONN_ID", "aws_default")
MIN_MESSAGES = 20
SPEC = {
    "runner_class": "dask_cluster",
    "profile": "small",
    "tags": {"tenant": "research", "pipeline": "queue-burst", "extra": {"burst-pool": "queue-burst"}},
    "ttl": "1h",
    "idle_timeout": "10m",
}
POLICY = {
    "queue_depth_threshold": MIN_MESSAGES,
    "max_cloud_instances": 2,
    "min_cloud_instances": 0,
    "jobs_per_instance": 10,
    "cost_budget": 10.0,
    "scale_down_delay": "5m",
}

with DAG(
    dag_id="queue_burst",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    params={
        "queue_url": Param("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs", type="string"),
    },
    tags=["runners", "example", "burst", "sensor"],
    doc_md=__doc__,
) as dag:
    backlog = RunnerQueueDepthSensor(
        task_id="wait_for_backlog",
        queue_url="{{ params.queue_url }}",
        aws_conn_id=AWS_CONN_ID,
        min_messages=MIN_MESSAGES,
        poke_interval=1.0,
        timeout=timedelta(hours=1),
    )
    plan = BurstPlanOperator(
        task_id="plan",
        policy=POLICY,
        spec=SPEC,
        queue_url="{{ params.queue_url }}",
        aws_conn_id=AWS_CONN_ID,
    )

    @task_group
    def cloud(launch: dict[str, Any]) -> None:
        with runner("runner", spec=SPEC) as handle:
            DaskJobOperator(
                task_id="drain",
                handle=handle,
                python_callable=drain_sqs,
                op_kwargs={
                    "queue_url": "{{ params.queue_url }}",
                    "aws_conn_id": AWS_CONN_ID,
                    "handle": handle,
                    "launch": launch,
                },
            )

    backlog >> plan
    cloud.expand(launch=plan.output)
