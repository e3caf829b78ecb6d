"""The single-task form (``spec=`` on a work operator) through real dag.test() runs: a real local
Dask cluster and a real local host, each created, used and ended by one task instance, with the
evidence chain of a runner (provision, terminal end, work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners import DaskJobOperator, RunnerCommandOperator
from airflow_provider_runners.exceptions import RunnerSpecError
from tests.conftest import AIRFLOW_HOME
from tests.integration.conftest import live_daemons, run_dag, ti_states, xcoms

pytestmark = pytest.mark.integration

HOST_DIR = AIRFLOW_HOME / "runners" / "local_host"


def _chains(dag_id: str, run_id: str) -> dict[str, Any]:
    """The run's evidence chains by the task that owns each (every chain verified)."""
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    reports = [verify_chain(c) for c in iter_chains(dag_id=dag_id, run_id=run_id)]
    for report in reports:
        assert report.ok, report.problems
    return {r.entries[0]["task_id"]: r.entries for r in reports}


def _live_hosts() -> list[str]:
    return sorted(p.name for p in HOST_DIR.iterdir() if p.is_dir()) if HOST_DIR.exists() else []


def test_each_task_creates_uses_and_ends_its_own_runner(dagbag: Any) -> None:
    dr = run_dag(dagbag, "single_task_runner")
    states = ti_states(dr)
    assert states == {"count_words": "success", "checksum": "success"}  # no provision, no teardown
    out = {(t, k): v for t, k, v in xcoms("single_task_runner", dr.run_id)}
    lengths = out[("count_words", "return_value")]
    assert lengths == {"borrow": 6, "compute": 7, "always": 6, "give": 4, "it": 2, "back": 4}
    assert out[("checksum", "return_value")]["exit_code"] == 0
    cluster = out[("count_words", "runner_handle")]
    host = out[("checksum", "runner_handle")]
    assert cluster["backend"] == "local_dask"
    assert host["backend"] == "local_host"
    assert live_daemons() == []  # the cluster ended with its task, not later
    assert not Path(host["endpoints"]["workspace"]).exists()
    chains = _chains("single_task_runner", dr.run_id)
    assert set(chains) == {"count_words", "checksum"}
    for entries in chains.values():
        events = [(e["event"], e["outcome"], bool(e.get("terminal"))) for e in entries]
        # provision when ready, the work, then the terminal end by the task itself
        assert events == [
            ("provision", "success", False),
            ("work", "success", False),
            ("end", "success", True),
        ]
        assert entries[2]["by"] == "owner task"
        assert entries[2]["facts"]["teardown"][0]["existed"] is True
        assert entries[0]["runner"]["resource_id"] == entries[1]["runner"]["resource_id"]


def test_a_failing_task_still_ends_its_runner_and_a_bad_connection_creates_nothing(dagbag: Any) -> None:
    hosts_before = _live_hosts()
    dr = run_dag(dagbag, "single_task_test_failures")
    states = ti_states(dr)
    assert states == {"command_fails": "failed", "job_fails": "failed", "no_connection": "failed"}
    assert live_daemons() == []
    assert _live_hosts() == hosts_before
    chains = _chains("single_task_test_failures", dr.run_id)
    for task_id in ("command_fails", "job_fails"):
        events = [(e["event"], e["outcome"]) for e in chains[task_id]]
        assert events == [("provision", "success"), ("end", "success"), ("work", "failed")], task_id
    assert "exited with code 3" in chains["command_fails"][-1]["error"]["message"]
    assert "failed on purpose" in chains["job_fails"][-1]["error"]["message"]
    # The Connection does not exist: the provision fails, creating nothing, and says which one.
    entries = chains["no_connection"]
    assert [(e["event"], e["outcome"]) for e in entries] == [("provision", "failed"), ("work", "failed")]
    assert entries[0]["runner"] is None
    assert "runners_no_such_conn" in entries[0]["error"]["message"]


def test_handle_and_spec_are_exclusive_and_a_bad_spec_fails_at_parse_time() -> None:
    with pytest.raises(RunnerSpecError, match=r"handle / spec: give exactly one.*handle=None, spec=None"):
        RunnerCommandOperator(task_id="t", command="true")
    with pytest.raises(RunnerSpecError, match=r"handle=set, spec=set"):
        DaskJobOperator(
            task_id="t", handle={"x": 1}, spec={"runner_class": "dask_cluster"}, python_callable=len
        )
    with pytest.raises(RunnerSpecError, match=r"spec.profile: 'huge' is not defined"):
        RunnerCommandOperator(
            task_id="t",
            command="true",
            conn_id="runners_local_host",
            spec={"runner_class": "dedicated_host", "profile": "huge", "tags": {"tenant": "qa"}},
        )
    with pytest.raises(
        RunnerSpecError, match=r"'dask_cluster' cannot serve RunnerCommandOperator; allowed: "
    ):
        RunnerCommandOperator(
            task_id="t",
            command="true",
            spec={"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}},
        )
    with pytest.raises(RunnerSpecError, match=r"'pod' cannot serve DaskJobOperator; allowed: 'dask_cluster'"):
        DaskJobOperator(
            task_id="t",
            python_callable=len,
            spec={"runner_class": "pod", "profile": "small", "tags": {"tenant": "qa"}},
        )
    with pytest.raises(RunnerSpecError, match=r"Jinja templates needs the group form"):
        RunnerCommandOperator(
            task_id="t",
            command="true",
            spec={"runner_class": "dedicated_host", "profile": "{{ params.p }}", "tags": {"tenant": "qa"}},
        )
