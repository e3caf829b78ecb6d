"""``dags/hil_bench_suite.py`` through real dag.test() runs against a real labgrid coordinator.

Two boards (``imx8``, ``stm32``), one bench each. Two DAG runs want the same benches: the second
waits in the coordinator's queue (its reservation kept alive by the trigger's polls) and gets
them after the first releases. Run one is a separate ``airflow dags test`` process (its own copy
of the metadata DB, the same coordinator and ledger); run two is dag.test() here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.labgrid.backend import LabgridBackend
from airflow_provider_runners.backends.labgrid.client import CoordinatorClient
from airflow_provider_runners.backends.labgrid.coordinator import LocalCoordinator
from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from tests.conftest import AIRFLOW_HOME
from tests.integration.conftest import run_dag, ti_states, wait_for

pytestmark = pytest.mark.integration

CONN_ID = "runners_hil_test"
DAG_ID = "hil_bench_suite"
os.environ["RUNNERS_HIL_CONN_ID"] = CONN_ID  # read when the DagBag parses the DAG files
PLACES = {"imx8-a": {"tags": {"board": "imx8", "lab": "muc"}}, "stm32-a": {"tags": {"board": "stm32"}}}


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCoordinator]:
    coord = LocalCoordinator(
        tmp_path_factory.mktemp("hil-labgrid"), places=PLACES, schedule_interval=0.5
    ).start()
    yield coord
    coord.stop()


@pytest.fixture
def bench_conn(coordinator: LocalCoordinator, monkeypatch: pytest.MonkeyPatch) -> CoordinatorClient:
    conn = {
        "conn_type": "runners_labgrid",
        "host": "127.0.0.1",
        "port": coordinator.port,
        "extra": {"poll_interval_s": 0.2, "keepalive_s": 1},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    SharedStatusPoller._pollers.clear()
    client = CoordinatorClient(coordinator.address)
    yield client
    held = [(p.name, p.acquired) for p in client.places() if p.acquired]
    live = [(r.owner, r.state) for r in client.reservations() if r.state != "expired"]
    client.close()
    assert not held, f"benches left held: {held}"
    assert not live, f"reservations left: {live}"


def chains(run_id: str, dag_id: str = DAG_ID) -> list[Any]:
    reports = [verify_chain(c) for c in iter_chains(dag_id=dag_id, run_id=run_id)]
    for report in reports:
        assert report.ok, report.problems
    return reports


def entry(report: Any, event: str) -> dict[str, Any]:
    return next(e for e in report.entries if e["event"] == event)


def test_suite_runs_each_board_on_its_bench_with_evidence(dagbag: Any, bench_conn: CoordinatorClient) -> None:
    dr = run_dag(dagbag, DAG_ID, conf={"hold_s": 0})
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    assert set(states.values()) == {"success"}
    reports = chains(dr.run_id)
    assert len(reports) == 2  # one runner (bench) per board
    benches = set()
    for report in reports:
        provision = entry(report, "provision")["facts"]
        benches.add(provision["bench"])
        assert provision["place_tags"] == PLACES[provision["bench"]]["tags"]
        assert provision["filters"] == f"board={provision['bench'].split('-')[0]}"
        assert provision["reservation"]
        assert provision["held_by"].startswith("airflow/rl")
        assert provision["waited_s"] >= 0
        assert provision["readiness"]["checked"] == "resources"
        works = [e for e in report.entries if e["event"] == "work"]
        assert len(works) == 3
        assert {w["facts"]["exit_code"] for w in works} == {0}
        assert {w["facts"]["bench"] for w in works} == {provision["bench"]}
        (teardown,) = entry(report, "teardown")["facts"]["teardown"]
        assert teardown["release_confirmed"] is True
        assert teardown["released_places"] == provision["bench"]
        assert teardown["owner"] == provision["held_by"]
        assert teardown["hold_s"] > 0
    assert benches == {"imx8-a", "stm32-a"}


def test_a_failing_hil_command_fails_its_task_and_the_bench_is_released(
    dagbag: Any, bench_conn: CoordinatorClient
) -> None:
    dr = run_dag(dagbag, "bench_failing_hil")
    states = ti_states(dr)
    assert states["bench.hil"] == "failed", states
    assert states["bench.teardown"] == "success", states
    (report,) = chains(dr.run_id, "bench_failing_hil")
    work = entry(report, "work")
    assert work["facts"]["exit_code"] == 7
    assert "exited with code 7" in work["error"]["message"]


def test_second_run_waits_for_the_bench_and_gets_it_after_the_first_releases(
    dagbag: Any, bench_conn: CoordinatorClient, tmp_path: Path
) -> None:
    db = tmp_path / "airflow.db"  # run one's own metadata DB: two SQLite writers would lock each other
    shutil.copy(AIRFLOW_HOME / "airflow.db", db)
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}"}
    airflow = Path(sys.executable).with_name("airflow")
    first = subprocess.Popen(
        [str(airflow), "dags", "test", DAG_ID, "-c", json.dumps({"hold_s": 8})],
        env=env,
        stdout=(tmp_path / "run1.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for(lambda: all(p.acquired for p in bench_conn.places()), timeout=120), (
            tmp_path / "run1.log"
        ).read_text()[-3000:]
        first_owners = {p.name: p.acquired for p in bench_conn.places()}
        started = time.monotonic()
        dr = run_dag(dagbag, DAG_ID, conf={"hold_s": 0})
        waited = time.monotonic() - started
        assert first.wait(timeout=120) == 0, (tmp_path / "run1.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert str(dr.state) == "success", ti_states(dr)
    assert waited > 3  # it had to wait for run one's flash step
    first_run_id = next(
        c.parent.name
        for c in iter_chains(dag_id=DAG_ID)
        if c.parent.name != dr.run_id and _holds(c, first_owners)
    )
    released = {}
    for report in chains(first_run_id):
        (teardown,) = entry(report, "teardown")["facts"]["teardown"]
        released[teardown["released_places"]] = teardown["released_at"]
    queued_behind = []
    for report in chains(dr.run_id):
        facts = entry(report, "provision")["facts"]
        bench = facts["bench"]
        # Never before run one released it (confirmed by run one's teardown evidence).
        assert datetime.fromisoformat(released[bench]).timestamp() <= facts["acquired_at"]
        if facts["waited_behind"]:
            assert first_owners[bench] in facts["waited_behind"]  # who held it while we waited
            assert facts["waited_s"] > 1
            queued_behind.append(bench)
    # dag.test() runs one task at a time: the first provision defers and waits in the queue; by the
    # time the second provision runs, run one may already have released its bench too.
    assert queued_behind, "no bench of run two recorded waiting behind run one"


def _holds(chain: Any, owners: dict[str, str | None]) -> bool:
    report = verify_chain(chain)
    facts = next((e["facts"] for e in report.entries if e["event"] == "provision"), {})
    return facts.get("held_by") in owners.values()


def test_backend_is_registered_for_the_conn_type(bench_conn: CoordinatorClient) -> None:
    from airflow_provider_runners.backends.registry import get_backend

    assert isinstance(get_backend(CONN_ID), LabgridBackend)
