"""The DAGs of the lifecycle benchmarks (copied into a temporary DAGS_FOLDER by ``lifecycle.py``
and ``lifecycle_warm.py``).

* ``bench_runner`` — ``runner("cluster", spec=small dask_cluster)`` + ``DaskJobOperator(job)``:
  provision (a ``local_dask`` daemon process, deferred readiness wait), the job on it, teardown,
  evidence entries for each.
* ``bench_bare`` — the floor: one task that starts an in-process ``distributed.LocalCluster``
  with the same arguments the ``local_dask`` daemon uses for the catalog's ``small`` profile,
  runs the identical job through a Client, and closes the cluster.
* ``bench_threaded`` — the same job on dask's threaded scheduler in one task: no cluster.
* ``bench_runner_warm`` — ``bench_runner`` on Connection ``bench_warm`` (a warm pool).
* ``bench_runner_single`` — ``bench_runner`` in the single-task form: ``DaskJobOperator(spec=...)``
  creates the cluster, runs the job and ends the cluster in one task (operators/owned.py).

All run :func:`groupby_job`: a dask.dataframe groupby over ``BENCH_ROWS`` generated rows
(default 1,000,000) — real work, small enough that the lifecycle overhead stays visible.
Phases measured inside the tasks are appended as JSON lines to ``$BENCH_PROBE_FILE``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_runners import runner
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.operators.work import DaskJobOperator

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
PARTITIONS = 10
SPEC: dict[str, Any] = {
    "runner_class": "dask_cluster",
    "profile": "small",
    "tags": {"tenant": "bench", "pipeline": "lifecycle-bench"},
    "ttl": "15m",
}

# The floor uses exactly what the local_dask backend would ask its daemon for: the catalog's
# profile sizes and the daemon's LocalCluster arguments (backends/local_dask/daemon.py).
_PROFILE = resolve_spec(RunnerSpec.parse(SPEC)).profile
FLOOR_CLUSTER: dict[str, Any] = {
    "n_workers": int(_PROFILE.workers or 1),
    "threads_per_worker": int(_PROFILE.threads_per_worker or 1),
    "memory_limit": f"{_PROFILE.memory_gib or 1}GiB",
    "processes": True,
    "host": "127.0.0.1",
    "scheduler_port": 0,
    "dashboard_address": "127.0.0.1:0",
    "death_timeout": 30,
    "silence_logs": 30,
}


def probe(
    dag_id: str, phase: str, seconds: float | None = None, result: dict[str, Any] | None = None
) -> None:
    """Append one timing (or the job's result) to ``$BENCH_PROBE_FILE`` for lifecycle.py to read."""
    path = os.environ.get("BENCH_PROBE_FILE")
    if path:
        item = {
            "dag": dag_id,
            "phase": phase,
            **({"result": result} if result is not None else {"s": seconds}),
        }
        with open(path, "a") as fh:
            fh.write(json.dumps(item) + "\n")


def groupby_job(client: Any, rows: int = ROWS, dag_id: str = "bench_runner") -> dict[str, Any]:
    """Generate ``rows`` rows (dask.datasets.timeseries, seeded) and aggregate them by name."""
    import dask

    per_partition = -(-rows // PARTITIONS)
    start = datetime(2026, 1, 1)
    started = time.monotonic()
    frame = dask.datasets.timeseries(
        start=start,
        end=start + timedelta(seconds=per_partition * PARTITIONS),
        freq="1s",
        partition_freq=f"{per_partition}s",
        seed=42,
    )
    by_name = frame.groupby("name").agg(
        x_mean=("x", "mean"), y_sum=("y", "sum"), id_max=("id", "max"), n=("id", "count")
    )
    result, count = client.compute([by_name, frame.shape[0]], sync=True)
    elapsed = time.monotonic() - started
    summary = {"rows": int(count), "groups": len(result), "checksum": round(float(result["y_sum"].sum()), 6)}
    probe(dag_id, "job.compute", elapsed)
    probe(dag_id, "job.result", result=summary)
    return {**summary, "compute_s": round(elapsed, 3)}


with (
    DAG(
        dag_id="bench_runner",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["benchmark"],
        doc_md="Lifecycle benchmark: provision -> job -> teardown on local_dask.",
    ) as bench_runner,
    runner("cluster", spec=SPEC) as handle,
):
    DaskJobOperator(task_id="job", handle=handle, python_callable=groupby_job)


with DAG(
    dag_id="bench_runner_single",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["benchmark"],
    doc_md="Lifecycle benchmark: bench_runner in the single-task form (one task owns its cluster).",
) as bench_runner_single:
    DaskJobOperator(task_id="job", spec=SPEC, python_callable=groupby_job)


with DAG(
    dag_id="bench_bare",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["benchmark"],
    doc_md="Lifecycle benchmark floor: the same job on an in-process LocalCluster, one task.",
) as bench_bare:

    @task(task_id="job")
    def bare_job() -> dict[str, Any]:
        from distributed import Client, LocalCluster

        started = time.monotonic()
        cluster = LocalCluster(**FLOOR_CLUSTER)
        probe("bench_bare", "cluster.start", time.monotonic() - started)
        try:
            with Client(cluster, set_as_default=False) as client:
                result = groupby_job(client, dag_id="bench_bare")
        finally:
            closing = time.monotonic()
            cluster.close(timeout=20)
            probe("bench_bare", "cluster.close", time.monotonic() - closing)
        return result

    bare_job()


class _Threaded:
    """Stands in for a Client: the same graph on dask's threaded scheduler (no cluster at all)."""

    def compute(self, items: list[Any], sync: bool = True) -> list[Any]:
        import dask

        return list(dask.compute(*items, scheduler="threads"))


with DAG(
    dag_id="bench_threaded",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["benchmark"],
    doc_md="Lifecycle benchmark: the same job on dask's threaded scheduler, one task (no cluster).",
) as bench_threaded:

    @task(task_id="job")
    def threaded_job() -> dict[str, Any]:
        return groupby_job(_Threaded(), dag_id="bench_threaded")

    threaded_job()


with (
    DAG(
        dag_id="bench_runner_warm",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["benchmark"],
        doc_md="Lifecycle benchmark: bench_runner on a Connection with a warm pool (pool_size 1).",
    ) as bench_runner_warm,
    runner("cluster", spec=SPEC, conn_id="bench_warm") as warm_handle,
):
    DaskJobOperator(task_id="job", handle=warm_handle, python_callable=groupby_job)
