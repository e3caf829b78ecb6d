"""The DAGs of ``benchmarks/deployed_overhead.py`` (copied into the deployment's DAGs folder).

One trivial work task (``true`` in a shell), with and without a runner group around it:

* ``overhead_bare`` — ``BashOperator(task_id="work", bash_command="true")``;
* ``overhead_host`` — ``runner("host", conn_id="runners_local_host")`` around
  ``RunnerCommandOperator(task_id="work", command="true")``: provision (a ``local_host``
  workspace), the command on it, teardown, evidence entries for each;
* ``overhead_dask`` — ``runner("cluster")`` (``local_dask``, a daemon with a LocalCluster)
  around ``DaskJobOperator(task_id="work")`` whose job returns 1 from one worker;
* ``overhead_bare_py`` — the bare counterpart of ``overhead_dask``: the same callable, no
  cluster (``@task``).

* ``overhead_host_single`` / ``overhead_dask_single`` — the single-task form of the two runner
  DAGs: the work task owns its runner (``spec=``; operators/owned.py), no provision or teardown task.

``max_active_runs`` is above the benchmark's 50 concurrent runs, so that every triggered run
is running at once (Airflow's default is 16 per DAG).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

from airflow_provider_runners import RunnerCommandOperator, runner
from airflow_provider_runners.operators.work import DaskJobOperator

START = datetime(2026, 1, 1)
MAX_ACTIVE_RUNS = 64
HOST = {"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "bench"}, "ttl": "30m"}
CLUSTER = {
    "runner_class": "dask_cluster",
    "profile": "small",
    "image": "dask-runtime@2026.8",
    "tags": {"tenant": "bench", "pipeline": "deployed-overhead"},
    "ttl": "30m",
}


def one() -> int:
    """The trivial work of the Python variants."""
    return 1


def one_on_cluster(client: Any) -> int:
    """``one`` on a Dask worker."""
    return int(client.submit(one, pure=False).result())


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=MAX_ACTIVE_RUNS,
        tags=["benchmark"],
    )


with _dag("overhead_bare") as overhead_bare:
    BashOperator(task_id="work", bash_command="true")

with _dag("overhead_host") as overhead_host, runner("host", conn_id="runners_local_host", spec=HOST) as host:
    RunnerCommandOperator(task_id="work", handle=host, command="true")

with _dag("overhead_bare_py") as overhead_bare_py:
    task(task_id="work")(one)()

with (
    _dag("overhead_dask") as overhead_dask,
    runner("cluster", conn_id="runners_default", spec=CLUSTER) as cluster,
):
    DaskJobOperator(task_id="work", handle=cluster, python_callable=one_on_cluster)

with _dag("overhead_host_single") as overhead_host_single:
    RunnerCommandOperator(task_id="work", spec=HOST, conn_id="runners_local_host", command="true")

with _dag("overhead_dask_single") as overhead_dask_single:
    DaskJobOperator(task_id="work", spec=CLUSTER, conn_id="runners_default", python_callable=one_on_cluster)
