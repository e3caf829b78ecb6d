"""Every example DAG imports cleanly, and a bad spec is a parse-time error that creates nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.conftest import live_daemons, state_files

pytestmark = pytest.mark.integration


def test_every_file_in_dags_imports_without_errors(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"local_dask_etl", "local_dask_etl_failure"} <= set(bag.dag_ids)
    for dag in bag.dags.values():
        setups = [t for t in dag.tasks if t.is_setup]
        # each runner(): the teardown task, plus 'provisioned' (a failed provision fails the run)
        teardowns = [t for t in dag.tasks if t.is_teardown and not t.task_id.endswith(".provisioned")]
        assert len(setups) == len(teardowns), f"{dag.dag_id}: every provision needs a teardown"
        if "runners-maintenance" in dag.tags:
            # The reaper provisions nothing: it ends runners other DAGs left behind.
            assert not setups, f"{dag.dag_id}: a maintenance DAG must not provision"
            continue
        if "runners-consumer" in dag.tags:
            # A consumer uses a runner another DAG owns (RunnerReadySensor): it provisions nothing.
            assert not setups, f"{dag.dag_id}: a consumer DAG must not provision"
            assert any(t.task_type == "RunnerReadySensor" for t in dag.tasks), dag.dag_id
            continue
        if "runners-pool" in dag.tags:
            # The job-array burst's hosts belong to the pool across runs (docs/cost.md): no teardown.
            assert any(t.task_type == "BurstCycleOperator" for t in dag.tasks), dag.dag_id
            continue
        if "runners-single-task" in dag.tags:
            # Each work task creates and ends its own runner (spec=): no provision, no teardown.
            assert not setups, dag.dag_id
            assert all(getattr(t, "owned", None) is not None for t in dag.tasks), dag.dag_id
            continue
        assert setups, f"{dag.dag_id}: no provision task"


BAD_SPECS = {
    "unknown_profile": (
        '{"runner_class": "dask_cluster", "profile": "huge", "tags": {"tenant": "qa"}}',
        (
            "spec.profile: 'huge' is not defined for runner_class 'dask_cluster' in 'local'; "
            "allowed: ['large', 'medium', 'small']"
        ),
    ),
    "unapproved_image": (
        (
            '{"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, '
            '"image": "dask-runtime@2025.1"}'
        ),
        "spec.image: 'dask-runtime@2025.1' is not an approved image; approved: ['dask-runtime@2026.8']",
    ),
    "bad_shape": (
        '{"runner_class": "dask", "profile": "small", "tags": {"tenant": "Team A"}, "ttl": "1s"}',
        "spec.runner_class: allowed: 'dask_cluster', 'dedicated_host', 'pod' or 'bench' (got 'dask')",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_spec_is_a_parse_time_error_and_nothing_starts(
    name: str, tmp_path: Path, airflow_db: Any
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    spec, expected = BAD_SPECS[name]
    (tmp_path / f"bad_{name}.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG\n"
        "from airflow_provider_runners import runner\n"
        f"with DAG('bad_{name}', schedule=None, start_date=datetime(2026, 1, 1)):\n"
        f"    with runner('cluster', spec={spec}):\n"
        "        pass\n"
    )
    before = state_files()
    bag = DagBag(dag_folder=str(tmp_path))
    assert f"bad_{name}" not in bag.dag_ids
    (error,) = bag.import_errors.values()
    assert expected in error
    assert state_files() == before
    assert not live_daemons()
