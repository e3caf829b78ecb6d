"""Functions defined in a DAG file run on a real multi-process Dask cluster."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DAG_SOURCE = """
import math

FACTOR = 3

def _helper(x):
    return math.floor(x * FACTOR)

def job(client, n):
    return sum(client.gather(client.map(_helper, range(n))))

def needs_airflow_to_load():
    from airflow.sdk import DAG  # never loaded on the cluster
    return DAG
"""


def _load_like_airflow(tmp_path: Path) -> Any:
    """Import a file under a generated module name, the way Airflow's DagBag does."""
    path = tmp_path / "my_dag.py"
    path.write_text(DAG_SOURCE)
    name = "unusual_prefix_0123456789abcdef_my_dag"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client() -> Any:
    """A client on a real local_dask runner: scheduler and workers in other processes, as in production."""
    from distributed import Client

    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec
    from tests.integration.conftest import wait_for

    backend = get_backend()
    spec = RunnerSpec.parse({"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}})
    lineage = Lineage("dask_modules", "run", "provision")
    handle = backend.create(
        ProvisionRequest.build(resolve_spec(spec), lineage, lineage.attempt_token(1), "c", {})
    )
    try:
        assert wait_for(lambda: backend.status(handle).state.value == "ready", timeout=60)
        address = backend.status(handle).endpoints["scheduler"]
        with Client(address, timeout="30s") as c:
            yield c
    finally:
        backend.teardown(handle)


def test_dag_file_functions_fail_on_the_cluster_without_shipping(client: Any, tmp_path: Path) -> None:
    module = _load_like_airflow(tmp_path)
    with pytest.raises(RuntimeError, match="deserialization of the task graph"):
        module.job(client, 10)
    sys.modules.pop(module.__name__, None)


def test_shipped_dag_module_runs_on_scheduler_and_workers(client: Any, tmp_path: Path) -> None:
    from airflow_provider_runners.dask_modules import module_payloads, ship_modules

    module = _load_like_airflow(tmp_path)
    assert ship_modules(client, module.job) == [module.__name__]
    assert module.job(client, 10) == sum(int(x * 3) for x in range(10))
    assert {"_helper", "job", "needs_airflow_to_load"} <= set(module_payloads(module))
    # members are unpickled lazily: the Airflow-dependent one was never loaded on a worker
    loaded = client.run(lambda: sorted(vars(sys.modules["unusual_prefix_0123456789abcdef_my_dag"])))
    for names in loaded.values():
        assert "_helper" in names
        assert "needs_airflow_to_load" not in names
    assert ship_modules(client, len) == []  # not from a DAG file: nothing to ship


def _import_job_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Job code in a module next to the DAG files, imported the way a DAG file imports it."""
    (tmp_path / "shared_jobs_xyz.py").write_text(DAG_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))  # Airflow puts the DAGs folder on sys.path
    sys.modules.pop("shared_jobs_xyz", None)
    import shared_jobs_xyz  # type: ignore[import-not-found]

    return shared_jobs_xyz


def test_job_module_next_to_the_dag_files_fails_on_the_cluster_without_shipping(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _import_job_module(tmp_path, monkeypatch)
    try:
        with pytest.raises(RuntimeError, match="deserialization of the task graph"):
            jobs.job(client, 5)
    finally:
        sys.modules.pop("shared_jobs_xyz", None)


def test_job_module_next_to_the_dag_files_is_shipped_too(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_runners.dask_modules import ship_modules

    jobs = _import_job_module(tmp_path, monkeypatch)
    try:
        assert ship_modules(client, jobs.job, dag_folder=str(tmp_path / "elsewhere")) == []
        assert ship_modules(client, jobs.job, dag_folder=str(tmp_path)) == ["shared_jobs_xyz"]
        assert jobs.job(client, 5) == sum(int(x * 3) for x in range(5))
    finally:
        sys.modules.pop("shared_jobs_xyz", None)
