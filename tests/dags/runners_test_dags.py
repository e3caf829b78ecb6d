"""DAGs used by the integration tests (copied into the test DAGs folder)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
from airflow_provider_runners.operators.teardown import TeardownRunnerOperator
from airflow_provider_runners.operators.work import DaskJobOperator

SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}
START = datetime(2026, 1, 1)
#: Where runners_test_reattach counts the runs of its job body (one file per DAG run).
COUNTS = os.path.join(os.environ.get("AIRFLOW_HOME", "/tmp"), "reattach-counts")


class CrashAfterCreateProvision(ProvisionRunnerOperator):
    """Try 1 creates the runner and then dies before pushing its handle (a worker crash)."""

    def execute(self, context: Any) -> Any:
        if context["ti"].try_number == 1:
            from airflow_provider_runners.core.backend import ProvisionRequest
            from airflow_provider_runners.core.catalog import resolve_spec
            from airflow_provider_runners.core.lineage import Lineage

            lineage = Lineage.from_context(context)
            backend = get_backend(self.conn_id)
            request = ProvisionRequest.build(
                resolve_spec(self.spec, backend.name), lineage, lineage.attempt_token(1), self.conn_id, {}
            )
            acquire(backend, request)
            raise RuntimeError("simulated worker crash right after the create call")
        return super().execute(context)


def count_rows(client: Any, rows: int) -> dict[str, Any]:
    import dask.array as da

    return {"sum": int(client.compute(da.ones(rows, chunks=rows // 4).sum(), sync=True))}


def read_secret(client: Any) -> dict[str, Any]:
    """Runs on the Dask worker: the secret reached it at run time through the Connection."""
    import hashlib

    def probe() -> str:
        return os.environ.get("ETL_API_TOKEN", "")

    token = client.submit(probe, pure=False).result()
    return {"token_len": len(token), "token_sha256": hashlib.sha256(token.encode()).hexdigest()}


with DAG("runners_test_retry", schedule=None, start_date=START, catchup=False) as retry_dag:
    provision = CrashAfterCreateProvision(
        task_id="provision", spec=SPEC, retries=1, retry_delay=timedelta(seconds=0)
    )
    job = DaskJobOperator(
        task_id="job", handle=provision.output, python_callable=count_rows, op_kwargs={"rows": 1000}
    )
    teardown = TeardownRunnerOperator(task_id="teardown", provision_task_id="provision")
    provision >> job >> teardown.as_teardown(setups=provision)

with DAG("runners_test_secret", schedule=None, start_date=START, catchup=False) as secret_dag:
    with runner("cluster", conn_id="runners_secret_test", spec=SPEC) as handle:
        DaskJobOperator(task_id="use_secret", handle=handle, python_callable=read_secret)

with DAG("runners_test_abandoned", schedule=None, start_date=START, catchup=False) as abandoned_dag:
    # ttl long enough for a loaded machine to start the cluster, short enough to watch it end
    ProvisionRunnerOperator(task_id="provision", spec={**SPEC, "ttl": "25s"}, retries=0, min_deferral=0)

with DAG("runners_test_double_teardown", schedule=None, start_date=START, catchup=False) as double_dag:
    with runner("cluster", spec=SPEC) as handle:
        DaskJobOperator(task_id="job", handle=handle, python_callable=count_rows, op_kwargs={"rows": 1000})
    again = TeardownRunnerOperator(task_id="teardown_again", handle=handle)
    double_dag.task_dict["cluster.teardown"] >> again

with DAG("runners_test_bad_runtime", schedule=None, start_date=START, catchup=False) as bad_runtime_dag:
    with runner(
        "cluster",
        spec={**SPEC, "options": {"memory_limit": "not-a-size"}},
        ready_timeout=60,
        provision_kwargs={"retries": 0},  # each retry would fail alike; one try shows the cleanup
    ) as handle:
        DaskJobOperator(task_id="job", handle=handle, python_callable=count_rows, op_kwargs={"rows": 1000})

with DAG("runners_test_sync_wait", schedule=None, start_date=START, catchup=False) as sync_dag:
    with runner("cluster", spec=SPEC, deferrable=False) as handle:
        DaskJobOperator(task_id="job", handle=handle, python_callable=count_rows, op_kwargs={"rows": 1000})

with DAG("runners_test_bad_extra", schedule=None, start_date=START, catchup=False) as bad_extra_dag:
    # AIRFLOW_CONN_RUNNERS_BAD_EXTRA is set by tests/integration/test_connections.py (malformed extra)
    with runner("cluster", conn_id="runners_bad_extra", spec=SPEC) as handle:
        DaskJobOperator(task_id="job", handle=handle, python_callable=count_rows, op_kwargs={"rows": 1000})


def counted_body(client: Any, counter: str, hold_s: float) -> dict[str, Any]:
    """Runs on the Dask worker (re-attach mode): counts its runs in ``counter``, then works a while."""
    import time

    os.makedirs(os.path.dirname(counter), exist_ok=True)
    with open(counter, "a") as fh:
        fh.write("run\n")
    print("body started", flush=True)
    time.sleep(hold_s)
    total = int(client.submit(sum, range(100), pure=False).result())
    with open(counter) as fh:
        runs = len(fh.read().splitlines())
    print("body done", flush=True)
    return {"runs": runs, "total": total}


class KilledOnceDaskJob(DaskJobOperator):
    """Try 1 is killed (``on_kill``, then the process dies) as soon as its job runs on the cluster."""

    def execute(self, context: Any) -> Any:
        self._try = context["ti"].try_number
        return super().execute(context)

    def _job_output(self, line: str) -> None:
        super()._job_output(line)
        if self._try == 1 and "body started" in line:
            self.on_kill()
            raise RuntimeError("simulated: the task process was killed while its Dask job ran")


with DAG("runners_test_reattach", schedule=None, start_date=START, catchup=False) as reattach_dag:
    with runner("cluster", spec=SPEC) as handle:
        KilledOnceDaskJob(
            task_id="job",
            handle=handle,
            python_callable=counted_body,
            op_kwargs={"counter": os.path.join(COUNTS, "{{ run_id }}"), "hold_s": 4},
            retries=1,
            retry_delay=timedelta(seconds=0),
        )

with DAG("runners_test_warm_pool", schedule=None, start_date=START, catchup=False) as warm_pool_dag:
    # AIRFLOW_CONN_RUNNERS_POOL_TEST (pool_size 1) is set by tests/integration/test_local_dask_pool.py
    with runner("cluster", conn_id="runners_pool_test", spec=SPEC, deferrable=False) as handle:
        DaskJobOperator(task_id="job", handle=handle, python_callable=count_rows, op_kwargs={"rows": 1000})
