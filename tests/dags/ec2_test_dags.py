"""DAGs for tests/integration/test_ec2.py: a host from the ``ec2`` backend, one command on it.

They exist only while that test module has pointed ``RUNNERS_EC2_TEST_CATALOG`` at its catalog
(written once moto holds the AMIs the catalog names); otherwise this file defines no DAG.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.operators.command import RunnerCommandOperator
from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
from airflow_provider_runners.operators.teardown import TeardownRunnerOperator

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


class CrashAfterLaunchProvision(ProvisionRunnerOperator):
    """Try 1 launches the host and dies before pushing its handle (a worker crash)."""

    def execute(self, context: Any) -> Any:
        if context["ti"].try_number == 1:
            from airflow_provider_runners.backends.registry import get_backend
            from airflow_provider_runners.core.backend import ProvisionRequest
            from airflow_provider_runners.core.catalog import resolve_spec
            from airflow_provider_runners.core.lifecycle import acquire
            from airflow_provider_runners.core.lineage import Lineage

            lineage = Lineage.from_context(context)
            backend = get_backend(self.conn_id)
            resolved = resolve_spec(self.spec, backend.name, catalog_path=self.catalog_path)
            request = ProvisionRequest.build(resolved, lineage, lineage.attempt_token(1), self.conn_id, {})
            acquire(backend, request)
            raise RuntimeError("simulated worker crash right after RunInstances")
        return super().execute(context)


if CATALOG and os.path.exists(CATALOG):
    for dag_id, (spec, command, kwargs) in CASES.items():
        with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            with runner(
                "host", conn_id=CONN_ID, spec=spec, provision_kwargs={"catalog_path": CATALOG}
            ) as host:
                RunnerCommandOperator(task_id="extract", handle=host, command=command, **kwargs)
        globals()[dag_id] = dag

    with DAG("ec2_test_crash_retry", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        provision = CrashAfterLaunchProvision(
            task_id="provision",
            spec=SPEC,
            conn_id=CONN_ID,
            catalog_path=CATALOG,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
        work = RunnerCommandOperator(task_id="extract", handle=provision.output, command="echo adopted")
        teardown = TeardownRunnerOperator(task_id="teardown", conn_id=CONN_ID, provision_task_id="provision")
        again = TeardownRunnerOperator(task_id="teardown_again", conn_id=CONN_ID, handle=provision.output)
        provision >> work >> teardown.as_teardown(setups=provision) >> again
    globals()["ec2_test_crash_retry"] = dag
