"""Runner Connections read in real task processes (dag.test()): a malformed extra is a clear
error before anything is created."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import EVIDENCE, live_daemons, run_dag, state_files, ti_states

pytestmark = pytest.mark.integration

# The extra has a trailing comma: Airflow's extra_dejson would log it and return {}.
BAD_EXTRA_CONN = json.dumps(
    {"conn_type": "runners_local_dask", "extra": '{"worker_env": {"ETL_MODE": "full",}}'}
)


def test_malformed_extra_fails_the_provision_clearly_and_creates_nothing(
    dagbag: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNNERS_BAD_EXTRA", BAD_EXTRA_CONN)
    before = state_files()
    dr = run_dag(dagbag, "runners_test_bad_extra")
    states = ti_states(dr)
    assert str(dr.state) == "failed", states
    assert states["cluster.provision"] == "failed", states
    assert states["cluster.job"] in ("upstream_failed", "failed"), states
    out = capfd.readouterr().out
    assert (
        "Connection 'runners_bad_extra': extra is not valid JSON: Expecting property name enclosed "
        "in double quotes at line 1 column 36 (char 35)"
    ) in out
    assert '"ETL_MODE": "full",}' not in out  # the extra's text (it may hold secrets) is never shown
    assert state_files() == before  # no cluster state file, no daemon
    assert not live_daemons()
    # the provision fails at once: a retry would read the same Connection (3 retries used to
    # take 70 s of backoff before the run failed)
    assert _try_numbers(dr)["cluster.provision"] == 1
    for path in EVIDENCE.glob(f"runners_test_bad_extra/{dr.run_id}/*/*.json"):
        entry = json.loads(path.read_text())
        assert entry.get("outcome") != "success" or entry.get("event") != "provision", entry


def _try_numbers(dag_run: Any) -> dict[str, int]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: int(ti.try_number) for ti in dag_run.get_task_instances(session=session)}
