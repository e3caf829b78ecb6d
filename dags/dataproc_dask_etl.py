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

The ETL functions are defined here rather than imported from ``local_dask_etl``: functions of
a DAG file are shipped to the Dask cluster by value, which works only for the DAG file's own
module (a sibling DAG file is not importable on the cluster).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_runners import runner
from airflow_provider_runners.backends.dataproc_dask import validate_spec
from airflow_provider_runners.operators.work import DaskJobOperator

CONN_ID = os.environ.get("RUNNERS_DATAPROC_ETL_CONN_ID", "runners_default")
#: Provision retries replace a cluster that ended in ERROR (it is deleted first: it bills).
PROVISION_RETRIES = int(os.environ.get("RUNNERS_DATAPROC_ETL_RETRIES", "1"))
PROVISION_RETRY_DELAY = timedelta(seconds=float(os.environ.get("RUNNERS_DATAPROC_ETL_RETRY_DELAY_S", "60")))
SPEC = validate_spec(  # parse time: profile, options and region are checked before anything is created
    {
        "runner_class": "dask_cluster",
        "profile": "standard",
        "environment": os.environ.get("RUNNERS_DATAPROC_ETL_ENVIRONMENT", "dev"),
        "image": "dask-runtime@2026.8",
        "tags": {"tenant": "analytics", "pipeline": "sales-etl", "cost_center": "cc-1234"},
        "ttl": "2h",
    },
    region=os.environ.get("RUNNERS_DATAPROC_ETL_REGION") or None,
)

REGIONS = ["emea-north", "emea-south", "amer-east", "amer-west", "apac-north", "apac-south", "latam", "mea"]


def data_root(run_id: str) -> str:
    base = os.environ.get("AIRFLOW__RUNNERS__DATA_PATH") or os.path.join(
        os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "runners", "data"
    )
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return os.path.join(base, "dataproc_dask_etl", safe_run)


def _partition(seed: int, rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-10-01T00:00:00")
    return pd.DataFrame(
        {
            "event_time": start + rng.integers(0, 31 * 86400, rows).astype("timedelta64[s]"),
            "customer_id": rng.integers(1, 200_000, rows),
            "region": pd.Categorical.from_codes(rng.integers(0, len(REGIONS), rows), REGIONS),
            "product_id": rng.integers(1, 500, rows).astype("int32"),
            "quantity": rng.integers(1, 20, rows).astype("int32"),
            "unit_price": rng.gamma(2.0, 15.0, rows).round(2),
            "returned": rng.random(rows) < 0.03,
        }
    )


def generate_sales(client: Any, rows: int | str, run_id: str, partitions: int = 16) -> dict[str, Any]:
    """Extract stand-in: write ``rows`` synthetic sales rows as Parquet, one file per partition."""
    import dask
    import dask.dataframe as dd

    rows = int(rows)
    per = -(-rows // partitions)
    sizes = [min(per, rows - i * per) for i in range(partitions) if rows - i * per > 0]
    parts = [dask.delayed(_partition)(seed, n) for seed, n in enumerate(sizes)]
    meta = _partition(0, 1).iloc[:0]
    out = os.path.join(data_root(run_id), "raw")
    dd.from_delayed(parts, meta=meta).to_parquet(out, write_index=False, overwrite=True)
    return {"rows": rows, "partitions": len(sizes), "path": out}


def aggregate_sales(client: Any, run_id: str) -> dict[str, Any]:
    """Transform + load: revenue by region and product, and by day; written as Parquet."""
    import dask.dataframe as dd

    root = data_root(run_id)
    sales = dd.read_parquet(os.path.join(root, "raw"))
    kept = sales[~sales["returned"]]
    kept = kept.assign(revenue=kept["quantity"] * kept["unit_price"], day=kept["event_time"].dt.floor("D"))
    by_product = (
        kept.groupby(["region", "product_id"], observed=True)
        .agg(revenue=("revenue", "sum"), quantity=("quantity", "sum"), orders=("revenue", "count"))
        .reset_index()
    )
    by_day = kept.groupby(["day", "region"], observed=True)["revenue"].sum().reset_index()
    by_product, by_day, rows_in, returned = client.compute(
        [by_product, by_day, sales.shape[0], sales["returned"].sum()], sync=True
    )
    by_product.to_parquet(os.path.join(root, "revenue_by_region_product.parquet"), index=False)
    by_day.to_parquet(os.path.join(root, "revenue_by_day.parquet"), index=False)
    return {
        "rows_in": int(rows_in),
        "rows_returned": int(returned),
        "groups": len(by_product),
        "days": int(by_day["day"].nunique()),
        "revenue": round(float(by_product["revenue"].sum()), 2),
        "orders": int(by_product["orders"].sum()),
    }


def validate_aggregates(client: Any, run_id: str, max_return_rate: float) -> dict[str, Any]:
    """Check the load: every kept row is counted once, and returns stay under the threshold."""
    import pandas as pd

    root = data_root(run_id)
    by_product = pd.read_parquet(os.path.join(root, "revenue_by_region_product.parquet"))
    by_day = pd.read_parquet(os.path.join(root, "revenue_by_day.parquet"))
    rows_in = client.submit(
        lambda p: len(pd.read_parquet(p, columns=["returned"])), os.path.join(root, "raw")
    )
    total = rows_in.result()
    orders = int(by_product["orders"].sum())
    return_rate = 1 - orders / total
    if abs(by_product["revenue"].sum() - by_day["revenue"].sum()) > 0.01 * max(1.0, by_day["revenue"].sum()):
        raise ValueError("revenue by product and by day disagree")
    if return_rate > max_return_rate:
        raise ValueError(f"return rate {return_rate:.2%} is above the allowed {max_return_rate:.2%}")
    return {"rows": total, "orders": orders, "return_rate": round(return_rate, 5)}


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
        generate = DaskJobOperator(
            task_id="generate",
            handle=cluster,
            python_callable=generate_sales,
            op_kwargs={"rows": "{{ params.rows }}", "run_id": "{{ run_id }}"},
        )
        aggregate = DaskJobOperator(
            task_id="aggregate",
            handle=cluster,
            python_callable=aggregate_sales,
            op_kwargs={"run_id": "{{ run_id }}"},
        )
        validate = DaskJobOperator(
            task_id="validate",
            handle=cluster,
            python_callable=validate_aggregates,
            op_kwargs={"run_id": "{{ run_id }}", "max_return_rate": max_return_rate},
        )
        generate >> aggregate >> validate
    return dag


dataproc_dask_etl = build_etl_dag("dataproc_dask_etl", max_return_rate=0.05)

if __name__ == "__main__":
    dataproc_dask_etl.test()
