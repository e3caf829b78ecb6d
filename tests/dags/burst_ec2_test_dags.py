"""DAG for tests/integration/test_job_array_burst.py: one job-array burst cycle on the ``ec2`` backend.

It exists only while that test has pointed ``RUNNERS_BURST_TEST_CONFIG`` at seed 001's
orchestrator YAML and ``RUNNERS_BURST_TEST_CATALOG`` at a catalog naming moto's AMIs.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_runners.operators.job_array import BurstCycleOperator

CONFIG = os.environ.get("RUNNERS_BURST_TEST_CONFIG")
CATALOG = os.environ.get("RUNNERS_BURST_TEST_CATALOG")
SPEC = {
    "runner_class": "dedicated_host",
    "profile": "Burst",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "research", "pipeline": "job-array", "extra": {"burst-pool": "test-array"}},
    "ttl": "2h",
}
JOB = 'echo "$RUNNER_JOB_BODY" >> "$RUNNERS_BURST_TEST_OUT"; sleep 0.05'

if CONFIG and CATALOG and os.path.exists(CATALOG):
    with DAG("burst_ec2_test_cycle", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        BurstCycleOperator(
            task_id="cycle",
            config=CONFIG,
            spec=SPEC,
            job_command=JOB.replace(
                "$RUNNERS_BURST_TEST_OUT", os.environ.get("RUNNERS_BURST_TEST_OUT", "/dev/null")
            ),
            conn_id=os.environ.get("RUNNERS_EC2_TEST_CONN_ID", "runners_ec2_test"),
            catalog_path=CATALOG,
            ready_timeout_s=60,
        )
