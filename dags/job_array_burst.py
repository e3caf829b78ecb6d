"""Seed 001's job array on EC2: hosts that drain an SQS queue, bursting and shrinking with it.

Seed 001's orchestrator config, as seed 001 writes it, drives the DAG (docs/cost.md, "Job-array
burst on EC2"): ``RUNNERS_BURST_CONFIG`` names the YAML file (default: ``ORCHESTRATOR_CONFIG``
below). Auto mode: the DAG runs every ``check_interval`` and each run is one cycle of
:class:`BurstCycleOperator` — read the queue depth, launch ``dedicated_host`` runners (profile
``Burst``) within ``max_cloud_instances`` and the $/hour ``cost_budget``, send every idle host the
drain command (SQS receive -> ``JOB_COMMAND`` -> delete, over SSM), and end idle hosts after
``scale_down_delay`` of a low queue, never below ``min_cloud_instances`` (those stay warm across
cycles). ``mode: manual`` launches nothing on its own; burst by hand with::

    airflow-runners burst --config orchestrator-config.yaml --spec '<SPEC as JSON>' \
        --job-command "$JOB_COMMAND" --count 5

``RUNNERS_BURST_EC2_CONN_ID`` (default ``runners_ec2``) is the runners_ec2 Connection; the spec
uses the catalog's ``dev`` environment. Hosts are EC2 instances tagged ``burst-pool=job-array``:
end them by hand with ``aws ec2 terminate-instances`` if the DAG is removed.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_runners.governance.burst_config import BurstConfig
from airflow_provider_runners.operators.job_array import BurstCycleOperator

ORCHESTRATOR_CONFIG = """
job_array_id: my-pipeline
queue_url: https://sqs.us-east-1.amazonaws.com/123456789012/my-queue
region: us-east-1
burst_policy:
  mode: auto
  queue_depth_threshold: 100
  max_cloud_instances: 20
  min_cloud_instances: 2
  cost_budget: 10.0
  scale_down_delay: 5m
  check_interval: 1m
  instance_type: c5.4xlarge
  spot: true
"""
CONFIG = BurstConfig.load(os.environ.get("RUNNERS_BURST_CONFIG") or ORCHESTRATOR_CONFIG)
SPEC = {
    "runner_class": "dedicated_host",
    "profile": "Burst",
    "environment": "dev",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "research", "pipeline": "job-array", "extra": {"burst-pool": "job-array"}},
    "ttl": "8h",
}
#: One job: the message body is in $RUNNER_JOB_BODY (one line of JSON).
JOB_COMMAND = "python3 -c \"import json, os; print(json.loads(os.environ['RUNNER_JOB_BODY']))\""

with DAG(
    dag_id="job_array_burst",
    schedule=timedelta(seconds=CONFIG.check_interval),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    tags=["runners", "example", "burst", "runners-pool"],
    doc_md=__doc__,
) as dag:
    BurstCycleOperator(
        task_id="cycle",
        config=CONFIG,
        spec=SPEC,
        job_command=JOB_COMMAND,
        conn_id=os.environ.get("RUNNERS_BURST_EC2_CONN_ID", "runners_ec2"),
    )
