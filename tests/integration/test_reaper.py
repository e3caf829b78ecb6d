"""The reaper on real runners: a local_dask cluster whose DAG run ended without its teardown is
found and removed on the next sweep (CLI and DAG), with evidence; a foreign cluster is never
touched; --dry-run changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_provider_runners.cli import main
from airflow_provider_runners.core.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.governance.runner_index import open_registry
from tests.integration.conftest import (
    EVIDENCE,
    STATE_DIR,
    chain_for,
    live_daemons,
    run_dag,
    ti_states,
    wait_for,
    xcoms,
)

pytestmark = pytest.mark.integration
VICTIM = "runners_test_reaper_victim"


@pytest.fixture(autouse=True)
def end_leftover_runners() -> Iterator[None]:
    """A failing assertion must not leave a victim's runner for the leak check to trip over."""
    yield
    from airflow_provider_runners.backends.registry import get_backend

    backend = get_backend()
    for handle in backend.list_managed():
        backend.teardown(handle)


def victim_run(dagbag: Any) -> tuple[Any, RunnerHandle, dict[str, Any]]:
    """Run the victim DAG: its runner outlives the failed run (no teardown task)."""
    dr = run_dag(dagbag, VICTIM)
    states = ti_states(dr)
    assert str(dr.state) == "failed", states
    assert states == {"provision": "success", "sweep_while_running": "success", "crash": "failed"}
    values = {(t, k): v for t, k, v in xcoms(VICTIM, dr.run_id)}
    handle = RunnerHandle.from_xcom(values[("provision", HANDLE_XCOM_KEY)])
    assert live_daemons(), "the victim's runner must still be running"
    return dr, handle, values[("sweep_while_running", "return_value")]


def state_of(handle: RunnerHandle) -> dict[str, Any]:
    return json.loads((STATE_DIR / f"{handle.resource_id}.json").read_text())


def chain_files(dag_id: str) -> list[Path]:
    return sorted((EVIDENCE / dag_id).rglob("*.json")) if (EVIDENCE / dag_id).exists() else []


@pytest.fixture
def foreign_cluster() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """Someone else's runner in our state directory: a live process and a state file without our
    managed-by marker (same shape otherwise). The reaper must never touch it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "foreign-cluster"])
    path = STATE_DIR / "ld-foreign.json"
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "managed_by": "someone-else",
                "resource_id": "ld-foreign",
                "status": "running",
                "pid": proc.pid,
                "pid_create_time": psutil.Process(proc.pid).create_time(),
                "expires_at": "2000-01-01T00:00:00+00:00",
            }
        )
    )
    try:
        yield path, proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        path.unlink(missing_ok=True)


def test_cli_reaps_the_runner_of_an_ended_run_with_evidence_and_never_a_foreign_one(
    dagbag: Any, capsys: pytest.CaptureFixture[str], foreign_cluster: tuple[Path, Any]
) -> None:
    foreign_path, foreign_proc = foreign_cluster
    foreign_before = foreign_path.read_bytes()
    dr, handle, during = victim_run(dagbag)
    # While its DAG run was running, the sweep kept the runner.
    decision, reason = during[handle.resource_id]
    assert decision == "keep"
    assert reason == f"DAG run {VICTIM}/{dr.run_id} is running"
    record = open_registry().get(handle.lineage_key)
    assert (record.status, record.dag_id, record.run_id) == ("running", VICTIM, dr.run_id)

    # --dry-run: reports, changes nothing.
    state_before, evidence_before = state_of(handle), chain_files(VICTIM)
    assert main(["reap", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        f"would reap {handle.resource_id} (local_dask, runners_default): DAG run {VICTIM}/{dr.run_id} ended (failed)"
        in out
    )
    assert "0 runner(s) reaped, 1 would be (dry run: nothing changed)" in out
    assert state_of(handle) == state_before
    assert chain_files(VICTIM) == evidence_before
    assert open_registry().get(handle.lineage_key) == record
    assert live_daemons()

    # The sweep: torn down, registry ended, evidence appended to the runner's chain.
    assert main(["reap"]) == 0
    out = capsys.readouterr().out
    assert (
        f"reaped {handle.resource_id} (local_dask, runners_default): DAG run {VICTIM}/{dr.run_id} ended (failed)"
        in out
    )
    assert "1 runner(s) reaped" in out
    assert wait_for(lambda: not live_daemons(), timeout=15)
    assert state_of(handle)["status"] == "stopped"
    assert open_registry().get(handle.lineage_key).status == "ended"
    report = chain_for(VICTIM, dr.run_id)
    assert report.ok, report.problems
    assert [e["event"] for e in report.entries] == ["provision", "reap"]
    reap = report.entries[-1]
    assert reap["outcome"] == "success"
    assert reap["dag_run"] == {"dag_id": VICTIM, "run_id": dr.run_id, "state": "failed"}
    assert reap["facts"]["teardown"]["existed"] is True
    assert reap["cost"]["basis"] == "lifetime"
    assert reap["runner"]["resource_id"] == handle.resource_id

    # The foreign cluster: still running, its file untouched, reported as skipped at most.
    assert foreign_proc.poll() is None
    assert foreign_path.read_bytes() == foreign_before
    assert "ld-foreign" not in out

    # evidence show counts the reap entry as the runner's end.
    assert main(["evidence", "show", "--json", "--dag-id", VICTIM, "--run-id", dr.run_id]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["torn_down"] is True
    assert summary["usd"] == reap["cost"]["usd"]

    # The next sweep finds nothing more to do.
    assert main(["reap"]) == 0
    assert "0 runner(s) reaped" in capsys.readouterr().out


def test_reaper_dag_removes_the_runner_of_an_ended_run(dagbag: Any) -> None:
    dr, handle, _ = victim_run(dagbag)
    reaper_run = run_dag(dagbag, "runner_reaper")
    assert str(reaper_run.state) == "success", ti_states(reaper_run)
    summary = {(t, k): v for t, k, v in xcoms("runner_reaper", reaper_run.run_id)}[("sweep", "return_value")]
    assert handle.resource_id in summary["reaped"]
    assert summary["errors"] == {}
    assert wait_for(lambda: not live_daemons(), timeout=15)
    assert state_of(handle)["status"] == "stopped"
    assert [e["event"] for e in chain_for(VICTIM, dr.run_id).entries] == ["provision", "reap"]


def test_without_a_registry_the_metadata_db_maps_the_runner_to_its_run(
    dagbag: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", "none")
    dr, handle, during = victim_run(dagbag)
    assert during[handle.resource_id][0] == "keep"  # no registry inside the task: run unknown
    assert main(["reap", "--conn-id", "runners_default"]) == 0
    out = capsys.readouterr().out
    assert (
        f"reaped {handle.resource_id} (local_dask, runners_default): DAG run {VICTIM}/{dr.run_id} ended (failed)"
        in out
    )
    assert wait_for(lambda: not live_daemons(), timeout=15)


def test_a_backend_that_cannot_be_swept_does_not_stop_the_others(
    dagbag: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A runner Connection whose backend is not installed: reported, and the local sweep goes on.
    monkeypatch.setenv("AIRFLOW_CONN_RUNNERS_GONE_PLUGIN", json.dumps({"conn_type": "runners_uninstalled"}))
    _, handle, _ = victim_run(dagbag)
    assert main(["reap"]) == 1
    out = capsys.readouterr().out
    (sweeping,) = [line for line in out.splitlines() if line.startswith("sweeping ")]
    assert "runners_gone_plugin" in sweeping
    assert "runners_default" in sweeping
    assert (
        "ERROR  runners_gone_plugin: BackendNotFoundError: no runner backend for conn_type 'runners_uninstalled'"
        in out
    )
    assert f"reaped {handle.resource_id} (local_dask, runners_default)" in out
    assert wait_for(lambda: not live_daemons(), timeout=15)
