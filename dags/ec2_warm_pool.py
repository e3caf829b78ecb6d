"""EC2 warm pools, every 30 minutes: end hosts idle too long, pre-warm pools below their minimum.

A host that goes back to the pool is stopped, so its own shutdown timer cannot end it; this DAG
(and the reaper's sweep) terminates pooled hosts past their expiry or idle longer than their
pool's ``idle_ttl``, and refills each pool configured in the Connection extra ``warm_pools``
up to ``min_size`` idle hosts (never more than ``max_size`` hosts), so the first run of the day
starts warm (docs/ec2.md, "Warm pool lifecycle").

Connection: ``RUNNERS_EC2_POOL_CONN_ID`` (default ``runners_ec2_default``); catalog:
``RUNNERS_EC2_POOL_CATALOG`` (default: the configured catalog). This DAG provisions no runner
(the ``runners-maintenance`` tag tells the DAG-folder test so). Trigger it with
``{"report_only": true}`` to see what it would do. ``airflow-runners pool`` lists the pools.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_runners.operators.pool import WarmPoolMaintenanceOperator

with DAG(
    dag_id="ec2_warm_pool",
    schedule=timedelta(minutes=30),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=25),
    params={"report_only": Param(False, type="boolean", description="report only: change nothing")},
    tags=["runners", "runners-maintenance", "ec2"],
    doc_md=__doc__,
) as ec2_warm_pool:
    WarmPoolMaintenanceOperator(
        task_id="maintain",
        conn_id=os.environ.get("RUNNERS_EC2_POOL_CONN_ID", "runners_ec2_default"),
        catalog_path=os.environ.get("RUNNERS_EC2_POOL_CATALOG") or None,
        report_only="{{ params.report_only }}",  # type: ignore[arg-type]
    )
