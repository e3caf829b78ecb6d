"""A provision that fails, for any reason, leaves no runner behind; the evidence says so once.

Real Airflow (dag.test()) and real local_dask processes. See docs/architecture.md, "A failed
provision leaves nothing behind", and docs/evidence.md, "One end per round".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.base import ProvisionRequest
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain
from airflow_provider_runners.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.lineage import Lineage
from tests.integration.conftest import chain_for, live_daemons, run_dag, ti_states, xcoms

pytestmark = pytest.mark.integration
SUCCESS, FAILED = "success", "failed"
SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}}


def _events(report: Any) -> list[tuple[str, str, str, bool]]:
    return [(e["event"], e.get("task_id"), e.get("outcome"), bool(e.get("terminal"))) for e in report.entries]


def _complete(dag_id: str, run_id: str) -> Any:
    (chain,) = list(iter_chains(dag_id=dag_id, run_id=run_id))
    report = verify_chain(chain, complete=True)
    assert report.ok, report.problems
    return report


def test_provision_failing_after_create_is_cleaned_up_by_its_failure_callback(dagbag: Any) -> None:
    dr = run_dag(dagbag, "runners_test_provision_fails_after_create")
    states = ti_states(dr)
    assert states["cluster.provision"] == FAILED
    assert states["cluster.job"] == "upstream_failed"
    assert states["cluster.teardown"] == SUCCESS  # all_done: it runs although the setup failed
    assert not live_daemons()
    report = _complete("runners_test_provision_fails_after_create", dr.run_id)
    # the provision's failure entry is the end (its callback tore the runner down); the teardown
    # task found nothing left and did not write a second end
    assert _events(report) == [("provision", "cluster.provision", FAILED, True)]
    cleanup = report.entries[0]["facts"]["lineage_cleanup"]
    assert [c["existed"] for c in cleanup] == [True]


def test_teardown_runs_after_a_provision_that_died_after_creating_a_runner(dagbag: Any) -> None:
    """No callback ran (as after SIGKILL): the teardown task finds the runner and ends it."""
    dr = run_dag(dagbag, "runners_test_provision_dies_after_create")
    states = ti_states(dr)
    assert states["cluster.provision"] == FAILED
    assert states["cluster.teardown"] == SUCCESS
    values = {(t, k): v for t, k, v in xcoms("runners_test_provision_dies_after_create", dr.run_id)}
    handle = RunnerHandle.from_xcom(values[("cluster.provision", HANDLE_XCOM_KEY)])
    teardown = values[("cluster.teardown", "return_value")]
    assert [(t["resource_id"], t["existed"]) for t in teardown] == [(handle.resource_id, True)]
    assert get_backend().status(handle).state.value == "gone"
    assert not live_daemons()
    report = _complete("runners_test_provision_dies_after_create", dr.run_id)
    # the teardown task also writes the entry the dead provision never wrote, before its own
    assert _events(report) == [
        ("provision", "cluster.provision", FAILED, False),
        ("teardown", "cluster.teardown", SUCCESS, True),
    ]
    killed = report.entries[0]
    assert killed["facts"]["noticed_by"] == "cluster.teardown"
    assert killed["error"]["type"] == "ProvisionKilled"
    assert killed["try_number"] == int(handle.attempt_token.rsplit("-t", 1)[1])


def test_a_killed_work_task_gets_its_entry_from_the_teardown_task(dagbag: Any) -> None:
    dr = run_dag(dagbag, "runners_test_work_killed")
    states = ti_states(dr)
    assert states["cluster.killed"] == FAILED
    assert states["cluster.teardown"] == SUCCESS
    report = _complete("runners_test_work_killed", dr.run_id)
    assert _events(report) == [
        ("provision", "cluster.provision", SUCCESS, False),
        ("work", "cluster.killed", FAILED, False),
        ("teardown", "cluster.teardown", SUCCESS, True),
    ]
    killed = report.entries[1]
    assert killed["facts"]["noticed_by"] == "cluster.teardown"
    assert killed["try_number"] == 1
    assert killed["error"]["type"] == "TaskKilled"
    assert not live_daemons()


def test_a_resumed_provision_whose_runner_was_ended_fails_and_never_records_success(dagbag: Any) -> None:
    dr = run_dag(dagbag, "runners_test_resumed_after_teardown")
    states = ti_states(dr)
    assert states["provision"] == FAILED
    assert states["job"] == "upstream_failed"
    assert states["teardown"] == SUCCESS
    report = _complete("runners_test_resumed_after_teardown", dr.run_id)
    assert _events(report) == [("provision", "provision", FAILED, True)]
    assert "when the task resumed" in report.entries[0]["error"]["message"]
    assert all(e.get("outcome") != SUCCESS for e in report.entries if e["event"] == "provision")
    assert not live_daemons()


def test_on_kill_ends_a_runner_the_process_never_held(airflow_db: Path, monkeypatch: Any) -> None:
    """Killed after create() but before the handle reached the operator (the old ``_held``
    window): on_kill finds the runner by its lineage tag, ends it and records the end once."""
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    op = ProvisionRunnerOperator(task_id="p", spec=SPEC)
    backend = get_backend()
    lineage = Lineage("kill_window_dag", "run-1", "p")
    handle = backend.create(
        ProvisionRequest.build(op.resolved, lineage, lineage.attempt_token(1), "runners_default", {})
    )
    op._backend = backend
    op._who = {
        "dag_id": lineage.dag_id,
        "run_id": lineage.run_id,
        "task_id": lineage.task_id,
        "map_index": -1,
        "try_number": 1,
        "lineage_key": lineage.key,
    }
    assert op._held is None
    op.on_kill()
    assert backend.status(handle).state.value == "gone"
    op.on_kill()  # a second SIGTERM: nothing more to end, nothing more to record
    report = chain_for("kill_window_dag", "run-1")
    assert report.ok
    # the killed try's callbacks may not run: its provision entry first, then the end
    assert [(e["event"], e.get("by"), bool(e.get("terminal"))) for e in report.entries] == [
        ("provision", None, False),
        ("end", "provision on_kill", True),
    ]
    assert report.entries[0]["error"]["type"] == "ProvisionKilled"
    assert report.entries[1]["facts"]["teardown"][0]["resource_id"] == handle.resource_id


def test_on_kill_after_the_handle_was_returned_leaves_the_runner_to_the_teardown(airflow_db: Path) -> None:
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    op = ProvisionRunnerOperator(task_id="p", spec=SPEC)
    backend = get_backend()
    lineage = Lineage("kill_done_dag", "run-1", "p")
    handle = backend.create(
        ProvisionRequest.build(op.resolved, lineage, lineage.attempt_token(1), "runners_default", {})
    )
    op._backend, op._done = backend, True
    op.on_kill()
    assert backend.status(handle).state.value in ("pending", "ready")
    assert backend.teardown(handle).existed is True
    assert not list(iter_chains(dag_id="kill_done_dag"))
