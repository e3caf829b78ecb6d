"""Seed 002 on Google Cloud: the sales ETL on an ephemeral Dataproc cluster running Dask.

``dataproc_dask_etl`` borrows a Dask cluster (catalog profile ``standard``: n2-standard-4
master, 2-10 n2-standard-4 workers), generates sales rows as Parquet, aggregates them by
region/product and by day, validates the result and deletes the cluster — the same steps as
``local_dask_etl``.

Which backend runs it is the Connection's business, not the DAG's: the Connection id comes
from ``RUNNERS_DATAPROC_ETL_CONN_ID`` (default ``runners_default``, i.e. ``local_dask`` with no
setup). Point it at a ``runners_dataproc_dask`` Connection (see docs/dataproc.md) for Dataproc;
the test suite points it at one whose fake Dataproc cluster's scheduler is a real LocalCluster.

On Dataproc, set ``[runners] data_path`` (env ``AIRFLOW__RUNNERS__DATA_PATH``) to a ``gs://``
prefix the cluster's service account may write: workers and the Airflow worker must share it.

The ETL jobs are the ones of ``local_dask_etl``, from ``dags/sales_etl.py``; the operator ships
that module to the cluster by value, so the cluster needs pandas/pyarrow/dask but not this code.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param
from sales_etl import sales_etl_tasks

from airflow_provider_runners import runner

CONN_ID = os.environ.get("RUNNERS_DATAPROC_ETL_CONN_ID", "runners_default")
#: Provision retries replace a cluster that ended in ERROR (it is deleted first: it bills).
PROVISION_RETRIES = int(os.environ.get("RUNNERS_DATAPROC_ETL_RETRIES", "1"))
PROVISION_RETRY_DELAY = timedelta(seconds=float(os.environ.get("RUNNERS_DATAPROC_ETL_RETRY_DELAY_S", "60")))
#: No ``backend`` pin: the same DAG runs on local_dask when its Connection says so. Profile and
#: options are checked at parse time by the backends that serve dask_cluster (docs/architecture.md).
SPEC = {
    "runner_class": "dask_cluster",
    "profile": "standard",
    "environment": os.environ.get("RUNNERS_DATAPROC_ETL_ENVIRONMENT", "dev"),
    "image": "dask-runtime@2026.8",
    "tags": {"tenant": "analytics", "pipeline": "sales-etl", "cost_center": "cc-1234"},
    "ttl": "2h",
}


def build_etl_dag(dag_id: str, max_return_rate: float) -> DAG:
    with (
        DAG(
            dag_id=dag_id,
            schedule=None,
            start_date=datetime(2026, 1, 1),
            catchup=False,
            dagrun_timeout=timedelta(hours=1),
            params={"rows": Param(4_000_000, type="integer", minimum=1_000, description="rows to generate")},
            tags=["runners", "example", "dataproc_dask"],
            doc_md=__doc__,
        ) as dag,
        runner(
            "cluster",
            conn_id=CONN_ID,
            spec=SPEC,
            ready_timeout=timedelta(minutes=20),
            provision_kwargs={"retries": PROVISION_RETRIES, "retry_delay": PROVISION_RETRY_DELAY},
        ) as cluster,
    ):
        sales_etl_tasks(cluster, dataset=dag_id, max_return_rate=max_return_rate)
    return dag


dataproc_dask_etl = build_etl_dag("dataproc_dask_etl", max_return_rate=0.05)

if __name__ == "__main__":
    dataproc_dask_etl.test()
