"""``dags/dataproc_dask_etl.py`` through real dag.test() runs on the ``dataproc_dask`` backend.

Dataproc is the fake transport (tests/fakes/dataproc.py) under the real DataprocHook and
google clients; the Dask side is real: the Connection's ``scheduler_address_template`` points
the fake cluster's handle at a LocalCluster started here, and DaskJobOperator runs the ETL on it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.dataproc_dask import backend as dataproc_dask
from airflow_provider_runners.backends.dataproc_dask.backend import DataprocDaskBackend
from airflow_provider_runners.core.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from tests.fakes.dataproc import FakeDataproc
from tests.integration.conftest import chain_for, run_dag, ti_states, xcoms

pytestmark = pytest.mark.integration

CONN_ID = "runners_dataproc_test"
DAG_ID = "dataproc_dask_etl"
# Read when the DagBag parses the DAG file (module import time, before any fixture runs).
os.environ["RUNNERS_DATAPROC_ETL_CONN_ID"] = CONN_ID
os.environ["RUNNERS_DATAPROC_ETL_RETRY_DELAY_S"] = "0"
PROJECT, REGION, ZONE = "acme-data", "europe-west1", "europe-west1-b"


@pytest.fixture(scope="module")
def local_scheduler() -> Iterator[str]:
    """The real Dask cluster the fake Dataproc cluster 'runs'."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, local_scheduler: str) -> FakeDataproc:
    extra = {
        "project_id": PROJECT,
        "region": REGION,
        "zone": ZONE,
        "service_account": f"dask@{PROJECT}.iam.gserviceaccount.com",
        "scheduler_address_template": local_scheduler,
    }
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "runners_dataproc_dask", "extra": extra})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        '{"conn_type": "google_cloud_platform", "extra": {"project": "x"}}',
    )
    monkeypatch.setattr(DataprocDaskBackend, "poll_interval", 0.05)
    monkeypatch.setattr(DataprocDaskBackend, "teardown_poll_s", 0.01)
    monkeypatch.setattr(dataproc_dask, "gcs_object_facts", lambda hook, uri: {"uri": uri, "generation": 42})
    SharedStatusPoller._pollers.clear()
    return FakeDataproc(ready_after=3).patch(monkeypatch)


def _values(run_id: str) -> dict[tuple[str, str], Any]:
    return {(task, key): value for task, key, value in xcoms(DAG_ID, run_id)}


def test_create_job_delete(dagbag: Any, fake: FakeDataproc, local_scheduler: str) -> None:
    dr = run_dag(dagbag, DAG_ID, conf={"rows": 100_000})
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    assert set(states.values()) == {"success"}
    values = _values(dr.run_id)
    assert values[("cluster.aggregate", "return_value")]["rows_in"] == 100_000
    handle = RunnerHandle.from_xcom(values[("cluster.provision", HANDLE_XCOM_KEY)])
    assert handle.backend == "dataproc_dask"
    assert handle.endpoints["scheduler"] == local_scheduler
    assert handle.details["nodes"] == 3
    assert handle.pricing is not None
    assert handle.pricing.vcpus == 12  # master + 2 workers x 4 vCPUs: the Dataproc fee counts all

    (create,) = fake.calls("create_cluster")
    assert create.request_id == handle.attempt_token
    assert create.cluster.cluster_name == handle.resource_id
    assert create.cluster.labels["managed-by"] == MANAGED_BY
    assert create.cluster.labels["runner-lineage"] == handle.lineage_key
    assert create.cluster.labels["tenant"] == "analytics"
    assert create.cluster.labels["pipeline"] == "sales-etl"
    assert create.cluster.labels["expires-at"] == str(int(handle.expires_at.timestamp()))
    assert create.cluster.config.lifecycle_config.auto_delete_ttl.total_seconds() == 2 * 3600
    assert create.cluster.config.gce_cluster_config.metadata["dask-runtime"] == "standalone"
    (delete,) = fake.calls("delete_cluster")
    assert delete.cluster_name == handle.resource_id
    assert fake.entries == {}  # gone: the teardown waited for NotFound

    report = chain_for(DAG_ID, dr.run_id)
    assert report.ok, report.problems
    provision = report.entries[0]
    facts = provision["facts"]
    assert facts["acquisition"] == "created"
    assert facts["cluster_uuid"]
    assert facts["image_version"] == "2.2.57-debian12"
    assert facts["init_action_object"] == {"uri": facts["init_actions"][0]["uri"], "generation": 42}
    assert facts["workers"]["count"] == 2
    assert facts["zone"] == ZONE
    assert provision["cost"]["usd_per_hour"] == pytest.approx(3 * 0.1942 + 12 * 0.010)
    teardown = report.entries[-1]
    assert teardown["facts"]["teardown"][0]["existed"] is True
    assert teardown["cost"]["billed_seconds"] >= 60  # Dataproc's 1-minute minimum


def test_error_cluster_is_deleted_recreated_and_the_job_runs(dagbag: Any, fake: FakeDataproc) -> None:
    fake.error_next_creates = 1
    dr = run_dag(dagbag, DAG_ID, conf={"rows": 20_000})
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    creates = fake.calls("create_cluster")
    assert [c.request_id[-3:] for c in creates] == ["-t1", "-t2"]
    deleted = [d.cluster_name for d in fake.calls("delete_cluster")]
    assert deleted == [creates[0].cluster.cluster_name, creates[1].cluster.cluster_name]
    assert _values(dr.run_id)[("cluster.validate", "return_value")]["rows"] == 20_000
    provisions = [e for e in chain_for(DAG_ID, dr.run_id).entries if e["event"] == "provision"]
    assert [(e["try_number"], e["outcome"]) for e in provisions] == [(1, "up_for_retry"), (2, "success")]
    assert "Initialization action failed" in provisions[0]["error"]["message"]
    assert provisions[0]["facts"]["cleanup"]["torn_down"] is True


def test_retry_after_crash_adopts_with_one_create_call(
    dagbag: Any, fake: FakeDataproc, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_runners.operators import provision

    real_acquire = provision.acquire
    crashed: list[str] = []

    def crash_once(backend: Any, request: Any) -> Any:
        result = real_acquire(backend, request)
        if not crashed:
            crashed.append(result[0].resource_id)
            raise RuntimeError("simulated worker crash right after the create call")
        return result

    monkeypatch.setattr(provision, "acquire", crash_once)
    dr = run_dag(dagbag, DAG_ID, conf={"rows": 20_000})
    assert str(dr.state) == "success", ti_states(dr)
    assert len(fake.calls("create_cluster")) == 1
    provisions = [e for e in chain_for(DAG_ID, dr.run_id).entries if e["event"] == "provision"]
    assert provisions[-1]["facts"]["acquisition"] == "adopted"
    assert provisions[-1]["runner"]["resource_id"] == crashed[0]
    assert [d.cluster_name for d in fake.calls("delete_cluster")] == crashed


def test_teardown_of_a_cluster_already_gone_is_success(dagbag: Any, fake: FakeDataproc) -> None:
    from airflow_provider_runners.backends.registry import get_backend

    backend = get_backend(CONN_ID)
    assert isinstance(backend, DataprocDaskBackend)
    dr = run_dag(dagbag, DAG_ID, conf={"rows": 10_000})
    handle = RunnerHandle.from_xcom(_values(dr.run_id)[("cluster.provision", HANDLE_XCOM_KEY)])
    result = backend.teardown(handle)  # the DAG's teardown already deleted it
    assert result.existed is False
    assert fake.calls("delete_cluster")[-1].cluster_name == handle.resource_id


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ('"profile": "huge"', "spec.profile: 'huge' is not defined for runner_class 'dask_cluster' in 'dev'"),
        ('"options": {"workers": 40}', "spec.options.workers: 40 is out of range; allowed: integers 2 to 10"),
    ],
)
def test_invalid_profile_or_options_are_dag_import_errors(
    change: str, expected: str, tmp_path: Path, airflow_db: Any
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad_dataproc.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG\n"
        "from airflow_provider_runners import runner\n"
        "spec = {'runner_class': 'dask_cluster', 'backend': 'dataproc_dask', 'profile': 'standard',\n"
        f"        'environment': 'dev', 'tags': {{'tenant': 'qa'}}, {change}}}\n"
        "with DAG('bad_dataproc', schedule=None, start_date=datetime(2026, 1, 1)):\n"
        "    with runner('cluster', conn_id='runners_dataproc_test', spec=spec):\n"
        "        pass\n"
    )
    bag = DagBag(dag_folder=str(tmp_path))
    assert "bad_dataproc" not in bag.dag_ids
    (error,) = bag.import_errors.values()
    assert expected in error


def test_the_same_dag_runs_on_local_dask_when_its_connection_says_so(airflow_db: Any) -> None:
    """A copy of the DAG file whose Connection is ``runners_default`` (what the env var default gives)."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.conftest import DAGS

    source = (Path(__file__).parents[2] / "dags" / "dataproc_dask_etl.py").read_text()
    copy = DAGS / "dataproc_on_local.py"
    copy.write_text(
        source.replace(
            'os.environ.get("RUNNERS_DATAPROC_ETL_CONN_ID", "runners_default")', '"runners_default"'
        ).replace('build_etl_dag("dataproc_dask_etl"', 'build_etl_dag("dataproc_dask_etl_on_local"')
    )
    try:
        bag = DagBag(dag_folder=str(copy))
        assert bag.import_errors == {}
        dr = run_dag(bag, "dataproc_dask_etl_on_local", conf={"rows": 20_000})
    finally:
        copy.unlink()
    assert str(dr.state) == "success", ti_states(dr)
    values = {(t, k): v for t, k, v in xcoms("dataproc_dask_etl_on_local", dr.run_id)}
    handle = RunnerHandle.from_xcom(values[("cluster.provision", HANDLE_XCOM_KEY)])
    assert handle.backend == "local_dask"
    assert values[("cluster.aggregate", "return_value")]["rows_in"] == 20_000
