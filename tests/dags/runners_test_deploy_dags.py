"""DAGs the end-to-end tests (tests/e2e) run on the real deployment, next to dags/."""

from __future__ import annotations

import logging
import os
import signal
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.operators.work import DaskJobOperator

START = datetime(2026, 1, 1)
SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}
#: worker_env keys of the runners_dask_secret Connection (tests/e2e/conftest.py): one whose name
#: looks secret to Airflow's masker and one whose name does not.
WORKER_ENV_KEYS = ("ETL_API_TOKEN", "WAREHOUSE_URL")


def print_worker_env(client: Any) -> dict[str, int]:
    """A careless job: reads its worker's environment and prints it into the task log."""

    def probe() -> dict[str, str]:
        return {key: os.environ.get(key, "") for key in WORKER_ENV_KEYS}

    seen = client.submit(probe, pure=False).result()
    for key, value in seen.items():
        print(f"worker_env {key}={value}")
        logging.getLogger("airflow.task").warning("worker_env %s=%s (logged)", key, value)
    # keys that do not look secret: the evidence redactor masks values of keys like *_TOKEN_len
    return {f"env_{i}_len": len(seen[key]) for i, key in enumerate(WORKER_ENV_KEYS)}


def counted_body(client: Any, counter: str, hold_s: float) -> dict[str, Any]:
    """Counts its runs in ``counter`` (on the Dask worker), then works a while."""
    import time

    os.makedirs(os.path.dirname(counter), exist_ok=True)
    with open(counter, "a") as fh:
        fh.write("run\n")
    print("body started", flush=True)
    time.sleep(hold_s)
    total = int(client.submit(sum, range(100), pure=False).result())
    with open(counter) as fh:
        return {"runs": len(fh.read().splitlines()), "total": total}


class SigkilledOnceDaskJob(DaskJobOperator):
    """Try 1's task process is killed with SIGKILL as soon as its job runs on the cluster."""

    def execute(self, context: Any) -> Any:
        self._try = context["ti"].try_number
        return super().execute(context)

    def _job_output(self, line: str) -> None:
        super()._job_output(line)
        if self._try == 1 and "body started" in line:
            os.kill(os.getpid(), signal.SIGKILL)


with DAG("runners_test_reattach_after_sigkill", schedule=None, start_date=START, catchup=False) as kill_dag:
    with runner("cluster", spec=SPEC) as handle:
        SigkilledOnceDaskJob(
            task_id="job",
            handle=handle,
            python_callable=counted_body,
            op_kwargs={
                "counter": os.path.join(
                    os.environ.get("AIRFLOW_HOME", "/tmp"), "reattach-counts", "{{ run_id }}"
                ),
                "hold_s": 5,
            },
            retries=1,
            retry_delay=timedelta(seconds=0),
        )

with DAG("runners_test_worker_env_masked", schedule=None, start_date=START, catchup=False) as masked_dag:
    with runner("cluster", conn_id="runners_dask_secret", spec=SPEC) as handle:
        # on the cluster (re-attach, the default): the job's output is forwarded to the task log
        DaskJobOperator(task_id="print_env", handle=handle, python_callable=print_worker_env)
        # in the task process: the job prints straight into the task log
        DaskJobOperator(
            task_id="print_env_in_process", handle=handle, python_callable=print_worker_env, reattach=False
        )
