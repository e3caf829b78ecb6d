"""DaskJobOperator re-attach through real Airflow dag.test() runs and a real local_dask cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import AIRFLOW_HOME, chain_for, run_dag, ti_states, xcoms

pytestmark = pytest.mark.integration


def test_the_retry_of_a_killed_try_reattaches_and_the_job_runs_once(
    dagbag: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dr = run_dag(dagbag, "runners_test_reattach")
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    counter = AIRFLOW_HOME / "reattach-counts" / dr.run_id
    assert counter.read_text().splitlines() == ["run"]  # the body ran exactly once over two tries
    values = {(task, key): value for task, key, value in xcoms("runners_test_reattach", dr.run_id)}
    assert values[("cluster.job", "return_value")] == {"runs": 1, "total": 4950}
    out = capfd.readouterr().out
    assert "simulated: the task process was killed while its Dask job ran" in out
    assert "re-attached to airflow-runners-job-" in out
    report = chain_for("runners_test_reattach", dr.run_id)
    assert report.ok, report.problems
    work = [e for e in report.entries if e["event"] == "work"]
    assert [(e["try_number"], e["outcome"]) for e in work] == [(1, "up_for_retry"), (2, "success")]
    first, second = (e["facts"]["computation"] for e in work)
    assert (first["reattached"], first["started_by_try"], first["this_try"]) == (False, 1, 1)
    assert (second["reattached"], second["started_by_try"], second["this_try"]) == (True, 1, 2)
    assert (first["name"], first["key"]) == (second["name"], second["key"])
    assert second["mode"] == "published"
