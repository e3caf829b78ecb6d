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


def test_a_provision_failed_from_outside_gets_its_entry_once_and_only_without_one() -> None:
    """Run marked failed while the provision was deferred: no callback runs; the teardown task,
    the trigger's on_kill and the reaper each may notice — one entry, keyed like the provision's."""
    from datetime import timedelta

    from airflow_provider_runners.core.handles import RunnerHandle
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.evidence.callbacks import record_killed_provision, try_of

    lineage = Lineage("etl", "manual__1", "cluster.provision")
    created = datetime(2026, 5, 1, tzinfo=UTC)
    handle = RunnerHandle(
        backend="local_dask",
        runner_class="dask_cluster",
        resource_id="ld-1",
        conn_id="runners_default",
        lineage_key=lineage.key,
        attempt_token=lineage.attempt_token(2),
        created_at=created,
        expires_at=created + timedelta(hours=1),
        environment="dev",
        profile="small",
    )
    assert try_of(handle) == 2
    common = {
        "dag_id": "etl",
        "run_id": "manual__1",
        "lineage_key": lineage.key,
        "provision_task_id": "cluster.provision",
        "handle": handle,
    }
    first = record_killed_provision(**common, noticed_by="cluster.teardown")
    assert first is not None
    assert record_killed_provision(**common, noticed_by="reaper") is None
    (entry,) = _chain_entries()
    assert (entry["event"], entry["outcome"], entry["try_number"]) == ("provision", "failed", 2)
    assert entry["event_key"] == "etl|manual__1|cluster.provision|-1|2|provision"
    assert entry["error"]["type"] == "ProvisionKilled"
    assert not entry.get("terminal")
    # the provision's own callback, had it run late, writes nothing more for that try
    ti = TaskInstanceStub(task_id="cluster.provision", try_number=2)
    EvidenceCallback("provision", "success")({"ti": ti})
    assert len(_chain_entries()) == 1


def test_no_killed_provision_entry_when_the_provision_recorded_itself() -> None:
    from airflow_provider_runners.evidence.callbacks import record_killed_provision

    ti = TaskInstanceStub(task_id="cluster.provision")
    EvidenceCallback("provision", "up_for_retry")({"ti": ti})
    (entry,) = _chain_entries()
    assert (
        record_killed_provision(
            dag_id="etl",
            run_id="manual__1",
            lineage_key=entry["lineage_key"],
            provision_task_id="cluster.provision",
            handle=None,
            noticed_by="cluster.teardown",
        )
        is None
    )
    assert len(_chain_entries()) == 1


def test_a_later_try_of_a_task_owning_its_runner_records_the_killed_tries_once() -> None:
    """Single-task form (operators/owned.py): try 1 recorded itself, try 2 was SIGKILLed (no
    callback); try 3 writes try 2's entry, once, and a late callback of try 2 adds nothing."""
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.evidence.callbacks import record_earlier_killed_tries

    ti = TaskInstanceStub(task_id="work", try_number=1)
    key = Lineage("etl", "manual__1", "work").key
    EvidenceCallback("work", "up_for_retry")({"ti": ti, "exception": RuntimeError("boom")})
    ti.try_number = 3
    written = record_earlier_killed_tries({"ti": ti}, key, None)
    assert [(e["try_number"], e["error"]["type"]) for e in written] == [(2, "TaskKilled")]
    assert "noticed by try 3" in written[0]["error"]["message"]
    assert record_earlier_killed_tries({"ti": ti}, key, None) == []  # nothing twice
    EvidenceCallback("work", "failed")({"ti": TaskInstanceStub(task_id="work", try_number=2)})
    entries = _chain_entries()
    assert [(e["outcome"], e["try_number"]) for e in entries] == [("up_for_retry", 1), ("failed", 2)]
    assert record_earlier_killed_tries({"ti": TaskInstanceStub(task_id="work")}, key, None) == []  # try 1
