"""Seed 002's sales ETL as plain Dask jobs, shared by the example pipelines.

Each job takes a ``distributed.Client`` first (the way ``DaskJobOperator`` calls it). This module
lives next to the pipeline files, so the cluster cannot import it: the operator ships it to the
Dask scheduler and workers by value before the job runs (``dask_modules.ship_modules``).
Data goes to ``[runners] data_path`` (env ``AIRFLOW__RUNNERS__DATA_PATH``), default
``$AIRFLOW_HOME/runners/data``, one folder per pipeline and run, so reruns never clobber each other.
"""

from __future__ import annotations

import os
from typing import Any

REGIONS = ["emea-north", "emea-south", "amer-east", "amer-west", "apac-north", "apac-south", "latam", "mea"]


def data_root(dataset: str, run_id: str) -> str:
    """One folder per pipeline run under ``[runners] data_path`` (env ``AIRFLOW__RUNNERS__DATA_PATH``)."""
    base = os.environ.get("AIRFLOW__RUNNERS__DATA_PATH") or os.path.join(
        os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "runners", "data"
    )
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return os.path.join(base, dataset, safe_run)


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


def generate_sales(
    client: Any, rows: int | str, run_id: str, dataset: str, partitions: int = 16
) -> dict[str, Any]:
    """Extract stand-in: write ``rows`` synthetic sales rows as Parquet, one file per partition."""
    import dask
    import dask.dataframe as dd

    rows = int(rows)
    per = -(-rows // partitions)
    sizes = [min(per, rows - i * per) for i in range(partitions) if rows - i * per > 0]
    parts = [dask.delayed(_partition)(seed, n) for seed, n in enumerate(sizes)]
    meta = _partition(0, 1).iloc[:0]
    out = os.path.join(data_root(dataset, run_id), "raw")
    dd.from_delayed(parts, meta=meta).to_parquet(out, write_index=False, overwrite=True)
    return {"rows": rows, "partitions": len(sizes), "path": out}


def aggregate_sales(client: Any, run_id: str, dataset: str) -> dict[str, Any]:
    """Transform + load: revenue by region and product, and by day; written as Parquet."""
    import dask.dataframe as dd

    root = data_root(dataset, run_id)
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


def validate_aggregates(client: Any, run_id: str, dataset: str, max_return_rate: float) -> dict[str, Any]:
    """Check the load: every kept row is counted once, and returns stay under the threshold."""
    import pandas as pd

    root = data_root(dataset, run_id)
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


def sales_etl_tasks(cluster: Any, dataset: str, max_return_rate: float) -> None:
    """The three job tasks (generate >> aggregate >> validate) on ``cluster``, a runner handle."""
    from airflow_provider_runners.operators.work import DaskJobOperator

    run = {"run_id": "{{ run_id }}", "dataset": dataset}
    generate = DaskJobOperator(
        task_id="generate",
        handle=cluster,
        python_callable=generate_sales,
        op_kwargs={"rows": "{{ params.rows }}", **run},
    )
    aggregate = DaskJobOperator(
        task_id="aggregate", handle=cluster, python_callable=aggregate_sales, op_kwargs=run
    )
    validate = DaskJobOperator(
        task_id="validate",
        handle=cluster,
        python_callable=validate_aggregates,
        op_kwargs={**run, "max_return_rate": max_return_rate},
    )
    generate >> aggregate >> validate
