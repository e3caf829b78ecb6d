"""Seed 002 locally: borrow a Dask cluster, run a real ETL on it, give it back.

Two DAGs from one factory:

* ``local_dask_etl`` — generate millions of sales rows as Parquet, aggregate them by region
  and product (revenue, quantity, orders) and by day, write the aggregates as Parquet,
  validate them. Runs on ``local_dask`` (Connection ``runners_default``: no setup needed).
* ``local_dask_etl_failure`` — the same, but validation fails on purpose: the teardown
  still runs and the evidence ledger records the failure.

The jobs live in ``dags/sales_etl.py`` (shared with ``dataproc_dask_etl``); the operator ships
that module to the Dask cluster. Data goes to ``[runners] data_path`` (env
``AIRFLOW__RUNNERS__DATA_PATH``), default ``$AIRFLOW_HOME/runners/data``, one folder per DAG run.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param
from sales_etl import sales_etl_tasks

from airflow_provider_runners import runner

CONN_ID = os.environ.get("RUNNERS_ETL_CONN_ID", "runners_default")


def build_etl_dag(dag_id: str, max_return_rate: float, doc: str) -> DAG:
    with (
        DAG(
            dag_id=dag_id,
            schedule=None,
            start_date=datetime(2026, 1, 1),
            catchup=False,
            dagrun_timeout=timedelta(minutes=30),
            params={"rows": Param(4_000_000, type="integer", minimum=1_000, description="rows to generate")},
            tags=["runners", "example", "local_dask"],
            doc_md=doc,
        ) as dag,
        runner(
            "cluster",
            conn_id=CONN_ID,
            spec={
                "runner_class": "dask_cluster",
                "profile": "small",
                "image": "dask-runtime@2026.8",
                "tags": {"tenant": "analytics", "pipeline": "sales-etl", "cost_center": "cc-1234"},
                "ttl": "30m",
                "idle_timeout": "10m",
            },
        ) as cluster,
    ):
        sales_etl_tasks(cluster, dataset=dag_id, max_return_rate=max_return_rate)
    return dag


local_dask_etl = build_etl_dag(
    "local_dask_etl", max_return_rate=0.05, doc="Sales ETL on a borrowed local Dask cluster."
)
local_dask_etl_failure = build_etl_dag(
    "local_dask_etl_failure",
    max_return_rate=0.001,
    doc="The same ETL with a validation threshold it cannot meet: shows teardown and evidence on failure.",
)

if __name__ == "__main__":
    local_dask_etl.test()
