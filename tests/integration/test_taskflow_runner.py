"""``@task.runner`` through real dag.test() runs: a real local Dask cluster and a local host,
provisioned and always torn down, with the same evidence chain as ``runner(...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import chain_for, live_daemons, run_dag, ti_states, wait_for, xcoms

pytestmark = pytest.mark.integration


def test_task_runner_is_registered_through_the_provider() -> None:
    from airflow.sdk import task

    from airflow_provider_runners.decorators.runner import runner_task

    assert task.runner is runner_task


def test_taskflow_dag_borrows_a_cluster_and_a_host_and_gives_both_back(dagbag: Any) -> None:
    dr = run_dag(dagbag, "taskflow_runner")
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    assert set(states) == {
        "word_lengths.provision",
        "word_lengths.word_lengths",
        "word_lengths.teardown",
        "word_lengths.provisioned",
        "write_report.provision",
        "write_report.write_report",
        "write_report.teardown",
        "write_report.provisioned",
        "summarize",
    }
    out = {(t, k): v for t, k, v in xcoms("taskflow_runner", dr.run_id)}
    lengths = out[("word_lengths.word_lengths", "return_value")]
    assert lengths == {"borrow": 6, "compute": 7, "always": 6, "give": 4, "it": 2, "back": 4}
    host = out[("write_report.provision", "return_value")]
    assert out[("write_report.write_report", "return_value")] == f"{host['resource_id']}: 6 words"
    assert out[("summarize", "return_value")]["longest"] == "compute"
    assert not Path(host["endpoints"]["workspace"]).exists()  # the host's workspace went with it
    # Extra links: evaluated on the worker when each task ends, stored as XCom for the UI.
    cluster = out[("word_lengths.provision", "return_value")]
    assert cluster["endpoints"]["dashboard"].startswith("http://")
    for task_id in ("word_lengths.provision", "word_lengths.word_lengths"):
        assert out[(task_id, "_link_RunnerDashboardLink")] == cluster["endpoints"]["dashboard"]
        assert out[(task_id, "_link_Ec2InstanceLink")] == ""
    assert out[("write_report.write_report", "_link_RunnerDashboardLink")] == ""
    facts = out[("word_lengths.word_lengths", "runner_facts")]
    assert facts["workers"] >= 1
    assert facts["callable"].endswith("word_lengths")
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    reports = [verify_chain(c) for c in iter_chains("taskflow_runner", dr.run_id)]
    assert len(reports) == 2
    for report in reports:
        assert report.ok, report.problems
        assert [e["event"] for e in report.entries] == ["provision", "work", "teardown"]
    assert wait_for(lambda: not live_daemons(), timeout=15)


def test_a_failing_decorated_function_fails_its_task_and_the_runner_is_torn_down(dagbag: Any) -> None:
    dr = run_dag(dagbag, "runners_test_taskflow_failure")
    states = ti_states(dr)
    assert states == {
        "explode.provision": "success",
        "explode.explode": "failed",
        "explode.teardown": "success",
        "explode.provisioned": "success",
    }
    report = chain_for("runners_test_taskflow_failure", dr.run_id)
    assert report.ok, report.problems
    work = next(e for e in report.entries if e["event"] == "work")
    assert work["outcome"] == "failed"
    assert "job failed on purpose" in work["error"]["message"]
    assert wait_for(lambda: not live_daemons(), timeout=15)


def test_a_bad_spec_in_task_runner_is_a_dag_import_error(tmp_path: Path, airflow_db: Any) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad_taskflow.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG, task\n"
        "@task.runner(spec={'runner_class': 'dask_cluster', 'profile': 'huge', 'tags': {'tenant': 'qa'}})\n"
        "def job(client):\n"
        "    return 1\n"
        "with DAG('bad_taskflow', schedule=None, start_date=datetime(2026, 1, 1)):\n"
        "    job()\n"
    )
    bag = DagBag(dag_folder=str(tmp_path))
    (error,) = bag.import_errors.values()
    assert "spec.profile: 'huge' is not defined for runner_class 'dask_cluster'" in error


# -- templated specs ---------------------------------------------------------------------------------
def test_a_templated_spec_is_checked_when_rendered(dagbag: Any) -> None:
    assert "runners_test_templated_spec" in dagbag.dag_ids  # not an import error
    dr = run_dag(dagbag, "runners_test_templated_spec", conf={"size": "small", "ttl": "15m"})
    assert ti_states(dr) == {
        "cluster.provision": "success",
        "cluster.job": "success",
        "cluster.teardown": "success",
        "cluster.provisioned": "success",
    }
    out = {(t, k): v for t, k, v in xcoms("runners_test_templated_spec", dr.run_id)}
    facts = out[("cluster.provision", "runner_facts")]
    assert facts["spec"]["profile"] == "small"
    assert facts["spec"]["ttl"] == "PT15M"
    assert facts["spec"]["tags"]["pipeline"] == "runners-test-templated-spec"
    assert wait_for(lambda: not live_daemons(), timeout=15)


def test_a_bad_rendered_value_fails_the_task_naming_field_value_and_template(
    dagbag: Any, caplog: Any
) -> None:
    from tests.integration.conftest import state_files

    before = state_files()
    dr = run_dag(dagbag, "runners_test_templated_spec", conf={"size": "huge", "ttl": "10m"})
    states = ti_states(dr)
    assert states["cluster.provision"] == "failed", states  # at once: retries=2 are not used
    assert states["cluster.job"] in ("upstream_failed", "None"), states
    report = chain_for("runners_test_templated_spec", dr.run_id)
    (entry,) = report.entries
    assert (entry["event"], entry["outcome"]) == ("provision", "failed")
    text = entry["error"]["message"]
    assert "spec.profile: 'huge' is not defined for runner_class 'dask_cluster'" in text
    assert "allowed: ['large', 'medium', 'small']" in text
    assert "rendered from the templates spec.profile = '{{ params.size }}'" in text
    assert state_files() == before  # nothing was created
    assert not live_daemons()
