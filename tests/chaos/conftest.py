"""The fault suite's deployment (tests/chaos).

One real deployment for the package (tests/support/deployment.py, the same one tests/e2e
starts: scheduler, dag-processor, triggerer, api-server and a Celery worker on PostgreSQL and
Redis) with the chaos DAGs (tests/dags/runners_chaos_dags.py) next to ``local_dask_etl``.

Environment knobs (defaults are what CI runs):

* ``RUNNERS_CHAOS_EXECUTOR`` — ``CeleryExecutor`` (default, as tests/e2e) or ``LocalExecutor``;
* ``RUNNERS_CHAOS_PARALLELISM`` — task slots (default 8);
* ``RUNNERS_CHAOS_REPORT`` — also write every measured row as JSON lines to this file;
* ``RUNNERS_CHAOS_BENCHMARK=1`` — run the ``chaos_benchmark`` tests (benchmarks/chaos_load.py
  sets it), skipped otherwise.

Heartbeat thresholds are shortened so that a dead component is noticed in seconds, not minutes
(docs/reliability.md lists the values).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.chaos.census import Sampler, take_census
from tests.chaos.harness import EXECUTOR, PARALLELISM, ROWS
from tests.support.deployment import Stack, deployment

CHAOS_DAG_FILES = (
    "dags/local_dask_etl.py",
    "dags/sales_etl.py",
    "tests/dags/runners_chaos_dags.py",
)
#: Shortened so a killed component is noticed in seconds (Airflow's defaults: 300, 30, 300, 30).
CHAOS_ENV = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
}


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    if os.environ.get("RUNNERS_CHAOS_BENCHMARK"):
        return
    skip = pytest.mark.skip(
        reason="benchmark scale: run benchmarks/chaos_load.py (RUNNERS_CHAOS_BENCHMARK=1)"
    )
    for item in items:
        if item.get_closest_marker("chaos_benchmark"):
            item.add_marker(skip)


@pytest.fixture(scope="package")
def chaos_stack() -> Iterator[Stack]:
    with deployment(
        executor=EXECUTOR,
        parallelism=PARALLELISM,
        dag_files=CHAOS_DAG_FILES,
        extra_env=CHAOS_ENV,
        prefix="runners-chaos-",
    ) as stack:
        for dag_id in (
            "chaos_dask",
            "chaos_host",
            "chaos_dask_timeout",
            "chaos_dask_deferred",
            "local_dask_etl",
        ):
            stack.wait_for_dag(dag_id)
        try:
            yield stack
        finally:
            # A failed test may leave clusters and commands behind: they must not outlive the suite.
            for proc in take_census(stack.home).procs:
                try:
                    psutil.Process(proc.pid).kill()
                except psutil.Error:
                    pass


@pytest.fixture
def sampler(chaos_stack: Stack) -> Iterator[Sampler]:
    """Censuses every 0.5 s while the test runs; no lineage may ever have two live runners."""
    with Sampler(chaos_stack.home) as running:
        yield running
    assert running.samples > 0
    assert not running.duplicates, f"duplicate runners per lineage: {running.duplicates[:5]}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    terminalreporter.section("fault suite (docs/reliability.md)")
    for row in ROWS:
        terminalreporter.line(json.dumps(row, default=str))
