"""Evidence callbacks: one entry per event however often Airflow runs a callback."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.evidence.callbacks import EvidenceCallback, WorkStarted
from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain


@dataclass
class TaskInstanceStub:
    """The attributes and XCom calls a callback uses, as Airflow's task instance offers them
    (in the task runner and in the dag-processor)."""

    dag_id: str = "etl"
    run_id: str = "manual__1"
    task_id: str = "cluster.job"
    map_index: int = -1
    try_number: int = 1
    start_date: datetime = field(default_factory=lambda: datetime(2026, 5, 1, tzinfo=UTC))
    xcoms: dict[tuple[str, str, int], Any] = field(default_factory=dict)

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int = -1) -> Any:
        return self.xcoms.get((task_ids, key, map_indexes))

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key, self.map_index)] = value


@pytest.fixture(autouse=True)
def ledger_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp_path))


def _chain_entries() -> list[dict[str, Any]]:
    (chain,) = list(iter_chains("etl", "manual__1"))
    report = verify_chain(chain)
    assert report.ok, report.problems
    return report.entries


def test_a_failure_callback_run_twice_writes_one_entry() -> None:
    """Heartbeat timeout: Airflow ran the failure callback in the task and the dag-processor."""
    ti = TaskInstanceStub()
    context = {"ti": ti, "exception": RuntimeError("boom")}
    callback = EvidenceCallback("work", "failed", provision_task_id="cluster.provision")
    callback(context)
    callback(context)
    EvidenceCallback("work", "failed", provision_task_id="cluster.provision")(context)  # a re-parsed copy
    entries = _chain_entries()
    assert [(e["event"], e["outcome"], e["try_number"]) for e in entries] == [("work", "failed", 1)]


def test_each_try_gets_its_entry() -> None:
    ti = TaskInstanceStub()
    EvidenceCallback("work", "up_for_retry", "cluster.provision")({"ti": ti})
    ti.try_number = 2
    EvidenceCallback("work", "failed", "cluster.provision")({"ti": ti})
    assert [(e["outcome"], e["try_number"]) for e in _chain_entries()] == [("up_for_retry", 1), ("failed", 2)]


def test_success_after_a_failure_of_the_same_try_is_not_written() -> None:
    """A resumed provision finishing after Airflow failed its try: the first word stands."""
    ti = TaskInstanceStub(task_id="cluster.provision")
    EvidenceCallback("provision", "up_for_retry")({"ti": ti})
    EvidenceCallback("provision", "success")({"ti": ti})
    assert [e["outcome"] for e in _chain_entries()] == ["up_for_retry"]


def test_work_started_notes_the_try_number() -> None:
    ti = TaskInstanceStub(try_number=3)
    WorkStarted()({"ti": ti})
    assert ti.xcoms[("cluster.job", "runner_work_try", -1)] == 3
