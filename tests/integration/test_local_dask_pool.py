"""The local_dask warm pool with real daemons and real Airflow dag.test() runs (pool.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
from airflow_provider_runners.core.backend import ConnectionConfig, ProvisionRequest, RunnerState
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from tests.conftest import local_dask_daemons
from tests.integration.conftest import run_dag, ti_states, wait_for, xcoms

pytestmark = pytest.mark.integration
SPEC = RunnerSpec.parse(
    {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}
)


def _backend(state_dir: Path, **extra: Any) -> LocalDaskBackend:
    return LocalDaskBackend(
        ConnectionConfig(
            "pool", "runners_local_dask", extra={"state_dir": str(state_dir), "dashboard": False, **extra}
        )
    )


def _request(run_id: str) -> ProvisionRequest:
    lineage = Lineage("pool_dag", run_id, "provision")
    return ProvisionRequest.build(
        resolve_spec(SPEC), lineage, lineage.attempt_token(1), "pool", {"managed-by": "x"}
    )


def _members(backend: LocalDaskBackend) -> list[RunnerHandle]:
    return [h for h in backend.list_managed() if h.lineage_key.startswith("pool:")]


def _state(backend: LocalDaskBackend, rid: str) -> dict[str, Any]:
    return json.loads(backend._state_path(rid).read_text())


def _end_all(backend: LocalDaskBackend) -> None:
    for _ in range(3):  # a member may still be starting; teardown waits for it
        for handle in backend.list_managed():
            backend.teardown(handle)
    assert wait_for(lambda: local_dask_daemons(backend.state_dir) == [], timeout=60)


def _catches_sigterm(pid: int) -> bool:
    """The process has a SIGTERM handler installed (the SigCgt mask of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (15 - 1)))
    return False


def _workers_warm(scheduler: str) -> bool:
    from distributed import Client

    with Client(scheduler, timeout=30) as client:
        imported = client.run(lambda: "dask.dataframe" in sys.modules)
    return bool(imported) and all(imported.values())


def test_a_provision_claims_a_warm_member_which_is_never_reused(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "s", pool_size=1, pool_idle=300)
    try:
        cold = backend.create(_request("run-1"))
        assert "pool" not in cold.details  # empty pool: the cold path, and a refill
        members = _members(backend)
        assert len(members) == 1  # the reaper sees the pool member (list_managed)
        member = members[0]
        assert member.tags["managed-by"] == "airflow-provider-runners"
        assert wait_for(lambda: backend.status(member).state is RunnerState.READY, timeout=90)

        warm = backend.create(_request("run-2"))
        assert warm.resource_id == member.resource_id
        assert warm.lineage_key == _request("run-2").lineage.key
        assert warm.endpoints["scheduler"].startswith("tcp://127.0.0.1:")
        assert backend.status(warm).state is RunnerState.READY  # ready at the first poll
        # its scheduler and workers imported what a first DataFrame job needs before it could be
        # claimed; every daemon (cold too) does so before it reports running, so a first job's
        # graph never reaches the scheduler during that import (daemon.py, PRELOAD_MODULES)
        assert _state(backend, warm.resource_id)["preloaded"] == ["dask.dataframe"]
        assert _workers_warm(warm.endpoints["scheduler"])
        assert wait_for(lambda: backend.status(cold).state is RunnerState.READY, timeout=90)
        assert _state(backend, cold.resource_id)["preloaded"] == ["dask.dataframe"]
        assert _workers_warm(_state(backend, cold.resource_id)["scheduler_address"])
        assert backend.create(_request("run-2")).resource_id == warm.resource_id  # same token: idempotent
        assert backend.find(warm.lineage_key) is not None
        refilled = _members(backend)
        assert [h.resource_id for h in refilled] != [member.resource_id]  # refilled in the background
        assert len(refilled) == 1

        result = backend.teardown(warm)  # isolation: the claimed cluster ends with its provision
        assert result.existed
        stopped = _state(backend, warm.resource_id)
        assert (stopped["status"], stopped["stop_reason"]) == ("stopped", "teardown")
        assert stopped["lineage_key"] == warm.lineage_key
        assert wait_for(lambda: backend.status(refilled[0]).state is RunnerState.READY, timeout=90)
        third = backend.create(_request("run-3"))
        assert third.resource_id == refilled[0].resource_id != warm.resource_id
    finally:
        _end_all(backend)


def test_an_idle_member_ends_by_itself(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "s", pool_size=1, pool_idle=2)
    try:
        cold = backend.create(_request("run-1"))
        (member,) = _members(backend)
        assert wait_for(lambda: _state(backend, member.resource_id)["status"] == "stopped", timeout=90)
        assert _state(backend, member.resource_id)["stop_reason"] == "pool-idle"
        assert (backend.state_dir / f"{member.resource_id}.claim").read_text() == "pool-idle"
        backend.teardown(cold)
    finally:
        _end_all(backend)


def test_the_second_dag_run_gets_a_warm_cluster(
    dagbag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "pool"
    extra = {"state_dir": str(state_dir), "dashboard": False, "pool_size": 1, "pool_idle": 300}
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_POOL_TEST", json.dumps({"conn_type": "runners_local_dask", "extra": extra})
    )
    backend = LocalDaskBackend(ConnectionConfig("runners_pool_test", "runners_local_dask", extra=extra))
    try:
        handles = []
        for _ in range(2):
            dr = run_dag(dagbag, "runners_test_warm_pool")
            assert str(dr.state) == "success", ti_states(dr)
            values = {(t, k): v for t, k, v in xcoms("runners_test_warm_pool", dr.run_id)}
            assert values[("cluster.job", "return_value")] == {"sum": 1000}
            handles.append(RunnerHandle.from_xcom(values[("cluster.provision", HANDLE_XCOM_KEY)]))
            (member,) = _members(backend)  # the pool holds one member after each run
            assert wait_for(lambda m=member: backend.status(m).state is RunnerState.READY, timeout=90)
        first, second = handles
        assert "pool" not in first.details
        assert second.details["pool"]  # claimed from the pool
        for handle in handles:  # both torn down by their runs
            assert _state(backend, handle.resource_id)["stop_reason"] == "teardown"
    finally:
        _end_all(backend)
    os.environ.pop("AIRFLOW_CONN_RUNNERS_POOL_TEST", None)


def test_a_refill_waits_before_starting_and_a_teardown_meanwhile_ends_it_at_once(tmp_path: Path) -> None:
    """The refill does not compete with the claiming run's first job (pool.REFILL_DELAY_S), and a
    member torn down during that pause stops without ever starting a cluster."""
    from airflow_provider_runners.backends.local_dask.pool import REFILL_DELAY_S

    backend = _backend(tmp_path / "s", pool_size=1, pool_idle=300)
    try:
        cold = backend.create(_request("run-1"))
        (member,) = _members(backend)
        waiting = _state(backend, member.resource_id)
        assert waiting["pool"]["start_delay_s"] == REFILL_DELAY_S >= 1
        assert (waiting["status"], waiting.get("scheduler_address")) == ("starting", None)
        # once the daemon handles SIGTERM (it is then in its pause), a teardown ends it cleanly
        assert wait_for(lambda: _catches_sigterm(int(waiting["pid"])), timeout=30)
        result = backend.teardown(member)
        assert result.existed
        stopped = _state(backend, member.resource_id)
        assert (stopped["status"], stopped["stop_reason"]) == ("stopped", "teardown")
        assert "ready_at" not in stopped  # it never started a cluster
        assert local_dask_daemons(backend.state_dir) != []  # the cold runner's daemon still runs
        backend.teardown(cold)
    finally:
        _end_all(backend)
