"""Seed 002 locally: borrow a Dask cluster, run a real ETL on it, give it back.

Two DAGs from one factory:

* ``local_dask_etl`` — generate millions of sales rows as Parquet, aggregate them by region
  and product (revenue, quantity, orders) and by day, write the aggregates as Parquet,
  validate them. Runs on ``local_dask`` (Connection ``runners_default``: no setup needed).
* ``local_dask_etl_failure`` — the same, but validation fails on purpose: the teardown
  still runs and the evidence ledger records the failure.

Data goes to ``[runners] data_path`` (env ``AIRFLOW__RUNNERS__DATA_PATH``), default
``$AIRFLOW_HOME/runners/data``, one folder per DAG run, so reruns never clobber each other.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_runners import runner
from airflow_provider_runners.operators.work import DaskJobOperator

CONN_ID = os.environ.get("RUNNERS_ETL_CONN_ID", "runners_default")
REGIONS = ["emea-north", "emea-south", "amer-east", "amer-west", "apac-north", "apac-south", "latam", "mea"]


def data_root(run_id: str) -> str:
    base = os.environ.get("AIRFLOW__RUNNERS__DATA_PATH") or os.path.join(
        os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "runners", "data"
    )
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return os.path.join(base, "local_dask_etl", safe_run)


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


local_dask_etl = build_etl_dag(
    "local_dask_etl", max_return_rate=0.05, doc="Sales ETL on a borrowed local Dask cluster (seed 002)."
)
local_dask_etl_failure = build_etl_dag(
    "local_dask_etl_failure",
    max_return_rate=0.001,
    doc="The same ETL with a validation threshold it cannot meet: shows teardown and evidence on failure.",
)

if __name__ == "__main__":
    local_dask_etl.test()
