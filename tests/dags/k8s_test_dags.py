"""One pod, one command: the ``kubernetes`` backend's failure paths under dag.test() (tests/integration/test_kubernetes.py)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.backends.kubernetes.backend import POD_COMMAND, validate_spec
from airflow_provider_runners.operators.command import RunnerCommandOperator

SPEC = validate_spec(
    {
        "runner_class": "pod",
        "profile": "small",
        "environment": "dev",
        "image": "hardened-base@2026.11",
        "tags": {"tenant": "qa", "pipeline": "k8s-once"},
        "ttl": "10m",
        "options": {"command": "echo suite starts; echo workspace=$RUNNERS_WORKSPACE; echo suite passed"},
    }
)

with DAG(
    "k8s_pod_once", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["runners-test"]
):
    with runner(
        "pod",
        conn_id=os.environ.get("RUNNERS_EKS_SIL_CONN_ID", "runners_kubernetes_default"),
        spec=SPEC,
        ready_timeout=timedelta(minutes=2),
        provision_kwargs={"retries": 2, "retry_delay": timedelta(seconds=0)},
    ) as pod:
        RunnerCommandOperator(task_id="run", handle=pod, command=POD_COMMAND, timeout="5m")
