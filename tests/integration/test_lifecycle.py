"""The runner lifecycle through real Airflow dag.test() runs and real Dask processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core.backend import ConnectionConfig, ProvisionRequest
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from tests.integration.conftest import (
    AIRFLOW_HOME,
    EVIDENCE,
    SECRET_PASSWORD,
    SECRET_TOKEN,
    STATE_DIR,
    chain_for,
    live_daemons,
    run_dag,
    state_files,
    ti_states,
    wait_for,
    xcoms,
)

pytestmark = pytest.mark.integration
SUCCESS, FAILED = "success", "failed"


def _state(handle: RunnerHandle) -> dict[str, Any]:
    return json.loads((STATE_DIR / f"{handle.resource_id}.json").read_text())


def test_etl_success_provisions_runs_tears_down_and_records_evidence(dagbag: Any) -> None:
    dr = run_dag(dagbag, "local_dask_etl", conf={"rows": 200_000})
    states = ti_states(dr)
    assert str(dr.state) == SUCCESS, states
    assert set(states.values()) == {SUCCESS}
    assert set(states) == {
        "cluster.provision",
        "cluster.generate",
        "cluster.aggregate",
        "cluster.validate",
        "cluster.teardown",
        "cluster.provisioned",
    }
    values = {(task, key): value for task, key, value in xcoms("local_dask_etl", dr.run_id)}
    aggregate = values[("cluster.aggregate", "return_value")]
    assert aggregate["rows_in"] == 200_000
    assert aggregate["orders"] + aggregate["rows_returned"] == 200_000
    assert aggregate["groups"] > 1000
    handle = RunnerHandle.from_xcom(values[("cluster.provision", HANDLE_XCOM_KEY)])
    assert handle.endpoints["scheduler"].startswith("tcp://127.0.0.1:")
    assert handle.tags["tenant"] == "analytics"
    assert handle.tags["managed-by"] == "airflow-provider-runners"

    state = _state(handle)
    assert state["status"] == "stopped"
    assert state["stop_reason"] == "teardown"

    report = chain_for("local_dask_etl", dr.run_id)
    assert report.ok, report.problems
    events = [(e["event"], e["task_id"], e["outcome"]) for e in report.entries]
    assert events == [
        ("provision", "cluster.provision", SUCCESS),
        ("work", "cluster.generate", SUCCESS),
        ("work", "cluster.aggregate", SUCCESS),
        ("work", "cluster.validate", SUCCESS),
        ("teardown", "cluster.teardown", SUCCESS),
    ]
    provision = report.entries[0]
    assert provision["facts"]["acquisition"] == "created"
    assert provision["facts"]["image"]["digest"].startswith("sha256:")
    assert provision["facts"]["network_profile"] == {"name": "loopback", "kind": "local"}
    assert provision["facts"]["host"]["hostname"]
    assert provision["facts"]["runtime"]["packages"]["distributed"]
    assert report.entries[2]["facts"]["result"]["rows_in"] == 200_000
    teardown = report.entries[-1]
    assert teardown["facts"]["teardown"][0]["existed"] is True
    assert teardown["facts"]["teardown"][0]["process_gone"] is True
    assert teardown["cost"]["basis"] == "lifetime"
    assert teardown["cost"]["usd"] == 0.0
    assert not live_daemons()


def test_work_failure_still_tears_down_and_records_the_failure(dagbag: Any) -> None:
    dr = run_dag(dagbag, "local_dask_etl_failure", conf={"rows": 100_000})
    states = ti_states(dr)
    assert str(dr.state) == FAILED
    assert states["cluster.validate"] == FAILED
    assert states["cluster.teardown"] == SUCCESS
    report = chain_for("local_dask_etl_failure", dr.run_id)
    assert report.ok, report.problems
    by_task = {e["task_id"]: e for e in report.entries}
    failed = by_task["cluster.validate"]
    assert failed["outcome"] == FAILED
    assert "return rate" in failed["error"]["message"]
    assert by_task["cluster.teardown"]["outcome"] == SUCCESS
    assert by_task["cluster.teardown"]["facts"]["teardown"][0]["existed"] is True


def test_provision_retried_after_crash_adopts_the_runner(dagbag: Any) -> None:
    before = {p.name for p in state_files()}
    dr = run_dag(dagbag, "runners_test_retry")
    states = ti_states(dr)
    assert str(dr.state) == SUCCESS, states
    created = [p for p in state_files() if p.name not in before]
    assert len(created) == 1, f"expected one runner across both tries, got {[p.name for p in created]}"
    report = chain_for("runners_test_retry", dr.run_id)
    assert report.ok, report.problems
    provisions = [e for e in report.entries if e["event"] == "provision"]
    assert [(e["try_number"], e["outcome"]) for e in provisions] == [(1, "up_for_retry"), (2, SUCCESS)]
    assert provisions[1]["facts"]["acquisition"] == "adopted"
    assert provisions[1]["runner"]["adopted"] is True
    # the runner was made by try 1's attempt token, adopted by try 2
    assert provisions[1]["runner"]["attempt_token"].endswith("-t1")


def test_broken_runner_from_an_earlier_try_is_replaced(airflow_db: Path) -> None:
    backend = LocalDaskBackend(ConnectionConfig("runners_default", "runners_local_dask"))
    spec = RunnerSpec.parse({"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}})
    lineage = Lineage("replace_dag", "run-1", "provision")
    first, how = acquire(
        backend, ProvisionRequest.build(resolve_spec(spec), lineage, lineage.attempt_token(1), "c", {})
    )
    assert how == "created"
    assert wait_for(lambda: backend.status(first).state.value == "ready", timeout=30)
    os.killpg(_state(first)["pid"], signal.SIGKILL)  # the host dies: state says running, process gone
    assert wait_for(lambda: backend.status(first).state.value == "failed", timeout=10)
    second, how = acquire(
        backend, ProvisionRequest.build(resolve_spec(spec), lineage, lineage.attempt_token(2), "c", {})
    )
    assert how == "replaced"
    assert second.resource_id != first.resource_id
    assert _state(first)["status"] == "stopped"
    assert wait_for(lambda: backend.status(second).state.value == "ready", timeout=30)
    assert [h.resource_id for h in backend.list_managed() if h.lineage_key == lineage.key] == [
        second.resource_id
    ]
    assert backend.teardown(second).existed is True


def test_teardown_twice_is_success(dagbag: Any) -> None:
    dr = run_dag(dagbag, "runners_test_double_teardown")
    states = ti_states(dr)
    assert states["cluster.teardown"] == SUCCESS
    assert states["teardown_again"] == SUCCESS
    values = {(task, key): value for task, key, value in xcoms("runners_test_double_teardown", dr.run_id)}
    second = values[("teardown_again", "return_value")]
    assert second
    assert second[0]["existed"] is False
    handle = RunnerHandle.from_xcom(values[("cluster.provision", HANDLE_XCOM_KEY)])
    result = get_backend().teardown(handle)  # a third time, directly
    assert result.existed is False


def test_abandoned_runner_ends_itself_by_its_ttl_backstop(dagbag: Any) -> None:
    dr = run_dag(dagbag, "runners_test_abandoned")
    assert str(dr.state) == SUCCESS
    values = {(task, key): value for task, key, value in xcoms("runners_test_abandoned", dr.run_id)}
    handle = RunnerHandle.from_xcom(values[("provision", HANDLE_XCOM_KEY)])
    assert get_backend().status(handle).state.value == "ready"  # nobody tears it down...
    assert wait_for(lambda: _state(handle)["status"] == "stopped", timeout=60)  # ...it ends itself
    assert _state(handle)["stop_reason"] == "ttl-expired"
    assert get_backend().status(handle).state.value == "gone"


def test_idle_timeout_backstop(airflow_db: Path) -> None:
    backend = get_backend()
    spec = RunnerSpec.parse(
        {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "idle_timeout": "3s"}
    )
    lineage = Lineage("idle_dag", "run-1", "provision")
    handle = backend.create(
        ProvisionRequest.build(resolve_spec(spec), lineage, lineage.attempt_token(1), "c", {})
    )
    assert wait_for(lambda: _state(handle)["status"] == "stopped", timeout=40)
    assert _state(handle)["stop_reason"] == "idle-timeout"


def test_runner_that_cannot_start_fails_provision_and_is_cleaned_up(dagbag: Any) -> None:
    before = {p.name for p in state_files()}
    dr = run_dag(dagbag, "runners_test_bad_runtime")
    states = ti_states(dr)
    assert states["cluster.provision"] == FAILED
    assert states["cluster.job"] == "upstream_failed"
    report = chain_for("runners_test_bad_runtime", dr.run_id)
    provision = report.entries[0]
    assert provision["outcome"] == FAILED
    assert "did not become ready" in provision["error"]["message"]
    assert provision["facts"]["cleanup"]["torn_down"] is True
    for path in state_files():
        if path.name not in before:
            assert json.loads(path.read_text())["status"] == "stopped"


def test_on_kill_tears_down_what_the_task_holds(airflow_db: Path) -> None:
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    op = ProvisionRunnerOperator(
        task_id="p", spec={"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}}
    )
    backend = get_backend()
    lineage = Lineage("kill_dag", "run-1", "p")
    handle = backend.create(
        ProvisionRequest.build(op.resolved, lineage, lineage.attempt_token(1), "runners_default", {})
    )
    op._held = (backend, handle)
    op.on_kill()
    assert _state(handle)["status"] == "stopped"
    assert backend.status(handle).state.value == "gone"


def test_secrets_never_reach_xcom_logs_evidence_or_state(
    dagbag: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dr = run_dag(dagbag, "runners_test_secret")
    states = ti_states(dr)
    assert str(dr.state) == SUCCESS, states
    values = {(task, key): value for task, key, value in xcoms("runners_test_secret", dr.run_id)}
    seen = values[("cluster.use_secret", "return_value")]
    assert seen["token_len"] == len(SECRET_TOKEN)  # the worker got the secret at run time
    captured = capfd.readouterr()
    haystacks = {
        "xcom": json.dumps([list(v) for v in xcoms("runners_test_secret", dr.run_id)], default=str),
        "task output": captured.out + captured.err,
    }
    for root in (AIRFLOW_HOME / "logs", EVIDENCE, STATE_DIR):
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                haystacks[str(path)] = path.read_text(errors="replace")
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(RenderedTaskInstanceFields.run_id == dr.run_id)
        ).all()
        haystacks["rendered fields"] = json.dumps([r.rendered_fields for r in rendered], default=str)
    # The backend registered both secrets with Airflow's masker, which masks every task log line.
    from airflow.sdk._shared.secrets_masker import redact

    assert redact(f"token={SECRET_TOKEN} pw={SECRET_PASSWORD}") == "token=*** pw=***"
    for where, text in haystacks.items():
        assert SECRET_TOKEN not in text, f"secret token leaked into {where}"
        assert SECRET_PASSWORD not in text, f"connection password leaked into {where}"


def test_runner_started_from_a_process_that_hosted_a_dask_cluster(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distributed marks such processes with __DASK_PARENT_PID; the daemon must not inherit it."""
    monkeypatch.setenv("__DASK_PARENT_PID", str(os.getpid()))
    backend = get_backend()
    spec = RunnerSpec.parse({"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}})
    lineage = Lineage("parent_pid_dag", "run-1", "provision")
    handle = backend.create(
        ProvisionRequest.build(resolve_spec(spec), lineage, lineage.attempt_token(1), "c", {})
    )
    assert wait_for(lambda: backend.status(handle).state.value == "ready", timeout=40), backend.status(handle)
    assert [h.resource_id for h in backend.list_managed()] == [handle.resource_id]
    result = backend.teardown(handle)
    assert result.existed is True
    assert result.details["process_gone"] is True


def test_provision_can_wait_in_the_task_instead_of_deferring(dagbag: Any) -> None:
    dr = run_dag(dagbag, "runners_test_sync_wait")
    states = ti_states(dr)
    assert str(dr.state) == SUCCESS, states
    values = {(task, key): value for task, key, value in xcoms("runners_test_sync_wait", dr.run_id)}
    assert values[("cluster.job", "return_value")] == {"sum": 1000}
    report = chain_for("runners_test_sync_wait", dr.run_id)
    assert [e["outcome"] for e in report.entries] == [SUCCESS, SUCCESS, SUCCESS]
    assert report.entries[0]["try_number"] == 1
