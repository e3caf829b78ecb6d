"""DAGs for the budget and reaper integration tests (copied into the test DAGs folder).

``BUDGET_CATALOG`` is the shipped catalog with the local runners priced like a c5.large
($0.085/h) and a $0.10/h budget for tenant ``budget-qa``: one runner fits, two do not.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from airflow.sdk import DAG, task

from airflow_provider_runners import runner
from airflow_provider_runners.core.catalog import DEFAULT_CATALOG
from airflow_provider_runners.operators.burst import BurstPlanOperator
from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
from airflow_provider_runners.operators.work import DaskJobOperator

START = datetime(2026, 1, 1)
BUDGET_CATALOG = Path(os.environ.get("AIRFLOW_HOME", "/tmp")) / "runners" / "budget-catalog.yaml"


def _write_budget_catalog() -> str:
    data = yaml.safe_load(DEFAULT_CATALOG.read_text())
    local = data["environments"]["local"]
    local["prices"]["local"] = {"on_demand": 0.085}
    local["budgets"] = {"tenant": {"budget-qa": 0.10}}
    BUDGET_CATALOG.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data)
    if not BUDGET_CATALOG.exists() or BUDGET_CATALOG.read_text() != text:
        BUDGET_CATALOG.write_text(text)
    return str(BUDGET_CATALOG)


CATALOG = _write_budget_catalog()
BUDGET_SPEC = {
    "runner_class": "dask_cluster",
    "profile": "small",
    "tags": {"tenant": "budget-qa"},
    "ttl": "10m",
}


def count(client: Any) -> int:
    import dask.array as da

    return int(client.compute(da.ones(100, chunks=25).sum(), sync=True))


with DAG("runners_test_budget", schedule=None, start_date=START, catchup=False) as budget_dag:
    with runner(
        "cluster",
        spec=BUDGET_SPEC,
        provision_kwargs={"catalog_path": CATALOG},
    ) as handle:
        DaskJobOperator(task_id="job", handle=handle, python_callable=count)

with DAG("runners_test_budget_wait", schedule=None, start_date=START, catchup=False) as budget_wait_dag:
    with runner(
        "cluster",
        spec=BUDGET_SPEC,
        provision_kwargs={"catalog_path": CATALOG, "budget_wait": 30, "budget_poll_interval": 1},
    ) as handle:
        DaskJobOperator(task_id="job", handle=handle, python_callable=count)


# -- reaper: a run that ends without its teardown --------------------------------------------------
VICTIM_SPEC = {
    "runner_class": "dask_cluster",
    "profile": "small",
    "tags": {"tenant": "qa", "pipeline": "reaper-victim"},
    "ttl": "10m",
}


@task
def sweep_while_running() -> dict[str, Any]:
    """The reaper, run while this DAG run is still running: it must keep this run's runner."""
    from airflow.sdk import get_current_context

    from airflow_provider_runners.governance.reaper import TaskSdkRuns, sweep

    report = sweep(["runners_default"], runs=TaskSdkRuns(get_current_context()["ti"]), use_db=False)
    return {a.resource_id: [a.decision, a.reason] for a in report.actions}


@task
def crash() -> None:
    raise RuntimeError("the work fails and this run has no teardown: only the reaper can end the runner")


with DAG("runners_test_reaper_victim", schedule=None, start_date=START, catchup=False) as victim_dag:
    provision = ProvisionRunnerOperator(task_id="provision", spec=VICTIM_SPEC)
    provision >> sweep_while_running() >> crash()


# -- burst planning: SQS depth (moto server) and scale-down by draining --------------------------------
BURST_SPEC = {
    "runner_class": "dask_cluster",
    "profile": "small",
    "tags": {"tenant": "qa", "pipeline": "burst", "extra": {"burst-pool": "test-pool"}},
    "ttl": "10m",
}

with DAG(
    "runners_test_burst_sqs",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"queue_url": "http://unset"},
) as burst_sqs_dag:
    BurstPlanOperator(
        task_id="plan",
        policy={
            "queue_depth_threshold": 100,
            "max_cloud_instances": 50,
            "cost_budget": 2.0,
            "usd_per_hour": 0.68,
        },
        spec=BURST_SPEC,
        queue_url="{{ params.queue_url }}",
        aws_conn_id="aws_moto",
        local_count=2,
    )

with DAG("runners_test_burst_drain", schedule=None, start_date=START, catchup=False) as burst_drain_dag:
    BurstPlanOperator(
        task_id="plan",
        policy={"queue_depth_threshold": 100, "scale_down_delay": 0},
        spec=BURST_SPEC,
        queue_depth=lambda: 0,
    )
