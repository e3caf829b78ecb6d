"""Bench DAGs used by tests/integration/test_hil_bench_suite.py (copied into the test DAGs folder)."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.operators.command import RunnerCommandOperator

CONN_ID = os.environ.get("RUNNERS_HIL_CONN_ID", "runners_bench")

with DAG(dag_id="bench_failing_hil", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    with runner(
        "bench",
        conn_id=CONN_ID,
        spec={
            "runner_class": "bench",
            "profile": "any",
            "tags": {"tenant": "qa"},
            "ttl": "10m",
            "options": {"tags": {"board": "imx8"}},
        },
    ) as bench:
        RunnerCommandOperator(
            task_id="hil", handle=bench, command='echo "flashing $LG_PLACE failed: no DFU device"; exit 7'
        )
