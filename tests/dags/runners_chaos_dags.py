"""DAGs the fault suite (tests/chaos) runs on a real deployment and breaks on purpose.

* ``chaos_dask`` — a ``local_dask`` cluster and one ``DaskJobOperator`` whose job sleeps
  ``work_s`` seconds on a worker; every start of the job appends a line to
  ``$AIRFLOW_HOME/runners/chaos-jobs/<run_id>.log`` (how the suite counts double work);
* ``chaos_host`` — a ``local_host`` runner and one command that sleeps ``work_s`` seconds;
* ``chaos_dask_timeout`` — ``chaos_dask`` with a ``dagrun_timeout`` shorter than its work;
* ``chaos_dask_deferred`` — ``chaos_dask`` whose provision defers at once (``wait_before_defer=0``;
  the default first waits 20 s in the task, and a quiet machine's cluster is ready by then), so
  that the suite can break things while provisions are deferred.

* ``chaos_single_host`` / ``chaos_single_dask`` — the same work in the single-task form: the
  work task (``work``) owns its runner (``spec=``), no provision or teardown task.

Work tasks retry once (1 s apart), as a production DAG's would.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_runners import RunnerCommandOperator, runner
from airflow_provider_runners.operators.work import DaskJobOperator

START = datetime(2026, 1, 1)
CLUSTER = {
    "runner_class": "dask_cluster",
    "profile": "small",
    "image": "dask-runtime@2026.8",
    "tags": {"tenant": "chaos", "pipeline": "fault-suite"},
    "ttl": "30m",
    "idle_timeout": "10m",
}
HOST = {"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "chaos"}, "ttl": "30m"}
WORK = {"retries": 1, "retry_delay": timedelta(seconds=1)}


def job_log(run_id: str) -> str:
    """Where the job records each start (one line per execution on a worker)."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return os.path.join(home, "runners", "chaos-jobs", f"{safe}.log")


def _sleep_on_worker(seconds: float, log_path: str) -> int:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"start pid={os.getpid()}\n")
    time.sleep(seconds)
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"end pid={os.getpid()}\n")
    return os.getpid()


def sleep_job(client: Any, seconds: float | str, run_id: str) -> dict[str, Any]:
    """Sleep ``seconds`` on one Dask worker; return which process did."""
    future = client.submit(_sleep_on_worker, float(seconds), job_log(run_id), pure=False)
    return {"worker_pid": future.result(), "seconds": float(seconds)}


#: The work task of every chaos DAG, on a runner group's handle or on its own runner (spec=).
DASK_WORK: dict[str, Any] = {
    "task_id": "work",
    "python_callable": sleep_job,
    "op_kwargs": {"seconds": "{{ params.work_s }}", "run_id": "{{ run_id }}"},
    **WORK,
}
HOST_WORK: dict[str, Any] = {
    "task_id": "work",
    "command": "sleep {{ params.work_s }}; echo slept {{ params.work_s }}s in $RUNNER_ID",
    "timeout": "20m",
    **WORK,
}


def _chaos_dag(dag_id: str, dagrun_timeout: timedelta | None = None, default_work_s: float = 0) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        dagrun_timeout=dagrun_timeout,
        params={"work_s": Param(default_work_s, type="number", minimum=0)},
        tags=["runners", "chaos"],
    )


def _dask_dag(
    dag_id: str, dagrun_timeout: timedelta | None, default_work_s: float, **provision_kwargs: Any
) -> DAG:
    with (
        _chaos_dag(dag_id, dagrun_timeout, default_work_s) as dag,
        runner(
            "cluster", conn_id="runners_default", spec=CLUSTER, provision_kwargs=provision_kwargs
        ) as cluster,
    ):
        DaskJobOperator(handle=cluster, **DASK_WORK)
    return dag


chaos_dask = _dask_dag("chaos_dask", None, 0)
chaos_dask_timeout = _dask_dag("chaos_dask_timeout", timedelta(seconds=60), 600)
chaos_dask_deferred = _dask_dag("chaos_dask_deferred", None, 0, wait_before_defer=0)

with (
    _chaos_dag("chaos_host") as chaos_host,
    runner("host", conn_id="runners_local_host", spec=HOST) as host,
):
    RunnerCommandOperator(handle=host, **HOST_WORK)

with _chaos_dag("chaos_single_host") as chaos_single_host:
    RunnerCommandOperator(spec=HOST, conn_id="runners_local_host", **HOST_WORK)

with _chaos_dag("chaos_single_dask") as chaos_single_dask:
    DaskJobOperator(spec=CLUSTER, conn_id="runners_default", **DASK_WORK)
