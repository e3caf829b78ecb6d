"""Reaper decisions and sweep bookkeeping (real local_dask runners: tests/integration/test_reaper.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from airflow_provider_runners.core.backend import Backend, ConnectionConfig, RunnerStatus, TeardownResult
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage
from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain
from airflow_provider_runners.governance.reaper import NoDagRuns, configured_conn_ids, decide, sweep
from airflow_provider_runners.governance.runner_index import RunnerRecord
from airflow_provider_runners.governance.runner_index.sqlite import SqliteRegistry
from airflow_provider_runners.testing.contract import use_backend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RUN = ("etl", "manual__1")


def handle(
    resource_id: str, lineage: Lineage | None = None, managed: bool = True, **changes: Any
) -> RunnerHandle:
    lineage = lineage or Lineage("etl", "manual__1", f"provision-{resource_id}")
    tags = {"runner-lineage": lineage.key, "dag-id": "etl", "tenant": "qa", "pipeline": "etl"}
    if managed:
        tags["managed-by"] = MANAGED_BY
    data: dict[str, Any] = {
        "backend": "cloudy",
        "runner_class": "dedicated_host",
        "resource_id": resource_id,
        "conn_id": "runners_cloudy",
        "lineage_key": lineage.key,
        "attempt_token": lineage.attempt_token(1),
        "created_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(hours=1),
        "environment": "dev",
        "profile": "Large",
        "tags": tags,
        "details": {"usd_per_hour": 0.504, "billing_minimum_s": 60},
    }
    data.update(changes)
    return RunnerHandle(**data)


class CloudyBackend(Backend):
    """A backend double recording what the reaper asks of it: it lists ``fleet`` (``broken``: the
    listing fails) and records each teardown in ``torn_down`` without removing the runner from
    ``fleet`` (a cloud slow to delete still lists it). Not ``testing.memory.InMemoryBackend``: its
    teardown removes the runner (the reaped-twice test needs it still listed) and it keeps no
    record of which runners were torn down."""

    name = "cloudy"
    conn_type = "runners_cloudy"
    hook_name = "Runners: cloudy"
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dedicated_host"})

    def __init__(
        self, conn_id: str = "runners_cloudy", fleet: Iterable[RunnerHandle] = (), broken: bool = False
    ) -> None:
        super().__init__(ConnectionConfig(conn_id=conn_id, conn_type=self.conn_type))
        self.fleet = list(fleet)
        self.broken = broken
        self.torn_down: list[str] = []

    def create(self, request: Any) -> RunnerHandle:  # pragma: no cover - not used
        raise NotImplementedError

    def find(self, lineage_key: str) -> RunnerHandle | None:  # pragma: no cover - not used
        return None

    def status(self, handle: RunnerHandle) -> RunnerStatus:  # pragma: no cover - not used
        raise NotImplementedError

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        self.torn_down.append(handle.resource_id)
        return TeardownResult(existed=True, message="terminated")

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:  # pragma: no cover - not used
        return {}

    def list_managed(self) -> list[RunnerHandle]:
        if self.broken:
            raise ConnectionError("DescribeInstances: throttled")
        return list(self.fleet)


class Runs(NoDagRuns):
    def __init__(self, states: dict[tuple[str, str], str]) -> None:
        self.states = states

    def state(self, dag_id: str, run_id: str) -> str | None:
        return self.states.get((dag_id, run_id))


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The runners of Connection runners_cloudy (one CloudyBackend, see ``fleet["backend"]``), their
    registry records and DAG runs; Connection runners_broken is a backend whose listing fails."""
    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp_path / "evidence"))
    registry = SqliteRegistry(tmp_path / "registry.sqlite")
    ended_run = Lineage("etl", "manual__old", "provision")
    running_run = Lineage("etl", "manual__new", "provision")
    cloudy = CloudyBackend(
        fleet=[
            handle("i-ended", ended_run),
            handle("i-running", running_run),
            handle("i-expired", expires_at=NOW - timedelta(minutes=1)),
            handle("i-unknown"),
            handle("i-foreign", managed=False, expires_at=NOW - timedelta(days=1)),
        ]
    )
    use_backend(monkeypatch, "runners_cloudy", cloudy)
    use_backend(monkeypatch, "runners_broken", CloudyBackend("runners_broken", broken=True))
    for lineage, rid in ((ended_run, "i-ended"), (running_run, "i-running")):
        registry.put(
            RunnerRecord(
                key=lineage.key,
                backend="cloudy",
                conn_id="runners_cloudy",
                status="running",
                resource_id=rid,
                dag_id=lineage.dag_id,
                run_id=lineage.run_id,
                task_id=lineage.task_id,
                expires_at=time.time() + 3600,
            )
        )
    # Known to the registry, no longer listed by the backend: ended by the sweep.
    registry.put(
        RunnerRecord(
            key="rl-vanished",
            backend="cloudy",
            conn_id="runners_cloudy",
            status="running",
            resource_id="i-vanished",
            expires_at=time.time() + 3600,
            last_heartbeat=NOW.timestamp() - 3600,
        )
    )
    runs = Runs({("etl", "manual__old"): "failed", ("etl", "manual__new"): "running"})
    return {"registry": registry, "runs": runs, "backend": cloudy, "tmp": tmp_path}


def run_sweep(
    fleet: dict[str, Any], dry_run: bool = False, conn_ids: tuple[str, ...] = ("runners_cloudy",)
) -> Any:
    return sweep(
        list(conn_ids),
        dry_run=dry_run,
        runs=fleet["runs"],
        registry=fleet["registry"],
        now=NOW,
    )


def test_sweep_reaps_ended_and_expired_keeps_running_and_unknown_never_touches_foreign(
    fleet: dict[str, Any],
) -> None:
    report = run_sweep(fleet)
    decisions = {a.resource_id: (a.decision, a.reason) for a in report.actions}
    assert decisions["i-ended"] == ("reap", "DAG run etl/manual__old ended (failed) without tearing it down")
    assert decisions["i-running"] == ("keep", "DAG run etl/manual__new is running")
    assert decisions["i-expired"][0] == "reap"
    assert decisions["i-expired"][1].startswith("expired at 2026-11-23T11:59:00")
    assert decisions["i-unknown"][0] == "keep"
    assert decisions["i-foreign"] == ("foreign", "no managed-by tag: not ours, never touched")
    assert sorted(fleet["backend"].torn_down) == ["i-ended", "i-expired"]
    assert report.ok

    registry = fleet["registry"]
    assert registry.get(Lineage("etl", "manual__old", "provision").key).status == "ended"
    assert registry.get(Lineage("etl", "manual__new", "provision").key).status == "running"
    assert registry.get("rl-vanished").ended_reason == "gone: not listed by its backend"

    chains = {c.parent.name: verify_chain(c) for c in iter_chains()}
    # The reaped runners' chains: one under the known run, one under the runner's dag-id tag.
    ended = chains["manual__old"]
    assert ended.ok
    # its chain had no provision entry (a provision failed from outside): the reaper says so first
    killed, entry = ended.entries
    assert (killed["event"], killed["outcome"], killed["try_number"]) == ("provision", "failed", 1)
    assert killed["error"]["type"] == "ProvisionKilled"
    assert killed["facts"] == {"noticed_by": "reaper"}
    assert (entry["event"], entry["outcome"]) == ("reap", "success")
    assert entry["cost"]["basis"] == "lifetime"
    assert entry["cost"]["usd"] == pytest.approx(0.504, abs=0.001)  # one hour at $0.504/h
    assert entry["facts"]["teardown"] == {"existed": True, "message": "terminated"}
    assert "unknown-run" in chains
    assert len(chains) == 2


def test_dry_run_changes_nothing(fleet: dict[str, Any]) -> None:
    before = fleet["registry"].records()
    report = run_sweep(fleet, dry_run=True)
    assert sorted(a.resource_id for a in report.by("reap")) == ["i-ended", "i-expired"]
    assert fleet["backend"].torn_down == []
    assert fleet["registry"].records() == before
    assert list(iter_chains()) == []


def test_a_backend_that_cannot_list_does_not_stop_the_sweep(fleet: dict[str, Any]) -> None:
    report = run_sweep(fleet, conn_ids=("runners_broken", "runners_cloudy"))
    assert report.errors == {"runners_broken": "ConnectionError: DescribeInstances: throttled"}
    assert not report.ok
    assert sorted(fleet["backend"].torn_down) == ["i-ended", "i-expired"]
    # Its registry records are not reconciled from an empty (failed) listing.
    assert fleet["registry"].get("rl-vanished").status == "ended"  # ended via runners_cloudy only


@pytest.mark.parametrize(
    ("managed", "expires_in", "stale", "run_state", "expected"),
    [
        (False, -3600, True, "failed", "foreign"),
        (True, -1, False, "running", "reap"),
        (True, 3600, True, None, "reap"),
        (True, 3600, False, "success", "reap"),
        (True, 3600, False, "failed", "reap"),
        (True, 3600, False, "running", "keep"),
        (True, 3600, False, "queued", "keep"),
        (True, 3600, False, None, "keep"),
    ],
)
def test_decision_table(
    managed: bool, expires_in: int, stale: bool, run_state: str | None, expected: str
) -> None:
    h = handle("i-1", managed=managed, expires_at=NOW + timedelta(seconds=expires_in))
    assert decide(h, stale, NOW, RUN, run_state)[0] == expected


def test_keep_until_expiry_tag_protects_a_pooled_runner() -> None:
    h = handle("i-warm")
    pooled = h.evolve(tags={**h.tags, "keep-until-expiry": "true"})
    assert decide(pooled, False, NOW, RUN, "success")[0] == "keep"
    assert decide(pooled, False, NOW + timedelta(hours=2), RUN, "success")[0] == "reap"


def test_configured_connections_come_from_env_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNNERS_EC2_PROD", json.dumps({"conn_type": "runners_ec2"}))
    monkeypatch.setenv("AIRFLOW_CONN_LAB_BENCHES", "runners-labgrid://coordinator:20408")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN_JSON", "{not json")
    monkeypatch.setenv("AIRFLOW__RUNNERS__REAPER_CONN_IDS", "runners_dataproc_eu, runners_k8s")
    ids = configured_conn_ids(use_db=False)
    assert {
        "runners_default",
        "runners_ec2_prod",
        "lab_benches",
        "runners_dataproc_eu",
        "runners_k8s",
    } <= set(ids)
    assert "aws_default" not in ids
    assert "broken_json" not in ids


def _vanished(fleet: dict[str, Any], run_id: str) -> Lineage:
    lineage = Lineage("etl", run_id, "cluster.provision")
    fleet["registry"].put(
        RunnerRecord(
            key=lineage.key,
            backend="cloudy",
            conn_id="runners_cloudy",
            status="running",
            resource_id=f"i-{run_id}",
            dag_id=lineage.dag_id,
            run_id=lineage.run_id,
            task_id=lineage.task_id,
            expires_at=time.time() + 3600,
            last_heartbeat=NOW.timestamp() - 3600,
        )
    )
    return lineage


def test_a_runner_ended_by_its_backstop_gets_one_end_entry(fleet: dict[str, Any]) -> None:
    """Gone from the backend, its record still live: nobody of ours ended it (ttl / idle)."""
    from airflow_provider_runners.evidence.ledger import append

    lineage = _vanished(fleet, "manual__backstop")
    append("etl", "manual__backstop", lineage.key, "provision", {"outcome": "success"})
    run_sweep(fleet)
    run_sweep(fleet)  # the record is ended now: nothing more
    (chain,) = [c for c in iter_chains() if c.parent.name == "manual__backstop"]
    report = verify_chain(chain, complete=True)
    assert report.ok, report.problems
    assert [(e["event"], e.get("by"), bool(e.get("terminal"))) for e in report.entries] == [
        ("provision", None, False),
        ("end", "backstop", True),
    ]
    assert fleet["registry"].get(lineage.key).status == "ended"


def test_the_backstop_entry_is_not_written_when_the_end_is_already_recorded(fleet: dict[str, Any]) -> None:
    from airflow_provider_runners.evidence.ledger import append

    lineage = _vanished(fleet, "manual__ended")
    append("etl", "manual__ended", lineage.key, "provision", {"outcome": "success"})
    append(
        "etl",
        "manual__ended",
        lineage.key,
        "end",
        {"outcome": "success", "by": "trigger on_kill"},
        terminal=True,
    )
    run_sweep(fleet)
    (chain,) = [c for c in iter_chains() if c.parent.name == "manual__ended"]
    assert [e["event"] for e in verify_chain(chain, complete=True).entries] == ["provision", "end"]


def test_a_reap_entry_is_terminal_and_written_once_per_runner(fleet: dict[str, Any]) -> None:
    run_sweep(fleet)
    run_sweep(fleet)  # a backend that still lists the runner (slow to delete): reaped again
    assert fleet["backend"].torn_down.count("i-ended") == 2
    (chain,) = [c for c in iter_chains() if c.parent.name == "manual__old"]
    report = verify_chain(chain, complete=True)
    assert report.ok, report.problems
    assert [(e["event"], e.get("terminal", False)) for e in report.entries] == [
        ("provision", False),
        ("reap", True),
    ]
