"""DAGs for tests/integration/test_ec2.py: a host from the ``ec2`` backend, one command on it.

They exist only while that test module has pointed ``RUNNERS_EC2_TEST_CATALOG`` at its catalog
(written once moto holds the AMIs the catalog names); otherwise this file defines no DAG.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.operators.command import RunnerCommandOperator

CATALOG = os.environ.get("RUNNERS_EC2_TEST_CATALOG")
CONN_ID = os.environ.get("RUNNERS_EC2_TEST_CONN_ID", "runners_ec2_test")
SPEC: dict[str, Any] = {
    "runner_class": "dedicated_host",
    "profile": "Large",
    "image": "hardened-base@2026.11",
    "driver_bundles": ["hana-jdbc@2.19.16"],
    "tags": {"tenant": "finance", "pipeline": "erp-extract"},
    "ttl": "2h",
}
POOL = {**SPEC, "options": {"teardown": "pool"}}
# (the command is a Jinja template field: no "${#VAR}" here, "{#" opens a Jinja comment)
EXTRACT = (
    'echo "rows=42"; echo "pw=$(printf %s "$DB_PASSWORD" | wc -c) tok=$(printf %s "$API_TOKEN" | wc -c)"; '
    'echo "hana=$RUNNER_DRIVER_HANA_JDBC"'
)
SECRETS = {"DB_PASSWORD": "aws-sm:prod/erp#password", "API_TOKEN": "ssm:/etl/api-token"}

CASES: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "ec2_test_extract": (SPEC, EXTRACT, {"secret_env": SECRETS}),
    "ec2_test_fail": (POOL, "echo about to fail; exit 4", {}),
    "ec2_test_warm": (POOL, "echo warm", {}),
    "ec2_test_timeout": (SPEC, "echo start; sleep 60", {"timeout": 1.5}),
}

if CATALOG and os.path.exists(CATALOG):
    for dag_id, (spec, command, kwargs) in CASES.items():
        with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            with runner(
                "host", conn_id=CONN_ID, spec=spec, provision_kwargs={"catalog_path": CATALOG}
            ) as host:
                RunnerCommandOperator(task_id="extract", handle=host, command=command, **kwargs)
        globals()[dag_id] = dag
