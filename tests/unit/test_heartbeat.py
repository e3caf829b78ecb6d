"""Registry heartbeats (docs/cost.md, "Heartbeats"): whoever holds a runner refreshes its record
every ``heartbeat_interval``; a held record without one for ``heartbeat_expiry`` has expired and
the reaper ends the runner and writes its ``reap`` evidence. On both index stores (the SQLite
file and DynamoDB on a moto server), with clocks the tests control: timestamps never come from
the wall clock, and the background thread's interval is shortened, not waited out.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.core.backend import ConnectionConfig
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.settings import runners_settings
from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain
from airflow_provider_runners.governance.heartbeat import Heartbeat, expired
from airflow_provider_runners.governance.reaper import KEEP_TAG, sweep
from airflow_provider_runners.governance.runner_index import NullRegistry, RunnerRecord, RunnerRegistry
from airflow_provider_runners.governance.runner_index.dynamodb import DynamoDBRegistry
from airflow_provider_runners.governance.runner_index.sqlite import SqliteRegistry
from airflow_provider_runners.testing.contract import use_backend
from tests.moto_aws import AWS_CONN_ID, moto_server
from tests.unit.test_reaper import CloudyBackend, Runs, handle

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
T0 = NOW.timestamp()
KEY = "rl" + "7" * 26


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


_tables = iter(range(10_000))


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> RunnerRegistry:
    if request.param == "sqlite":
        return SqliteRegistry(tmp_path / "registry.sqlite")
    request.getfixturevalue("moto_endpoint")
    registry = DynamoDBRegistry(f"runners-heartbeat-{next(_tables)}", aws_conn_id=AWS_CONN_ID)
    registry.ensure_table()
    return registry


def held(key: str = KEY, last: float = T0, status: str = "running", **changes: Any) -> RunnerRecord:
    return RunnerRecord(
        key=key,
        backend="cloudy",
        conn_id="runners_cloudy",
        status=status,
        resource_id=changes.pop("resource_id", "i-held"),
        holder=key + "-t1",
        dag_id="etl",
        run_id="manual__held",
        task_id="provision",
        registered_at=last,
        last_heartbeat=last,
        expires_at=T0 + 86_400,
        **changes,
    )


class Clock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# -- settings ----------------------------------------------------------------------------------
def test_defaults_are_every_30s_and_expiry_one_hour_after_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", raising=False)
    monkeypatch.delenv("AIRFLOW__RUNNERS__HEARTBEAT_EXPIRY", raising=False)
    assert runners_settings().heartbeat_interval == 30.0
    assert runners_settings().heartbeat_expiry == 3600.0
    assert Heartbeat(KEY, NullRegistry()).interval == 30.0
    # the interval follows the variable
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", "5")
    assert Heartbeat(KEY, NullRegistry()).interval == 5.0
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", "7.5")
    assert Heartbeat(KEY, NullRegistry()).interval == 7.5


# -- the heartbeat itself, on both stores ------------------------------------------------------
def test_a_poll_loop_beats_once_per_interval_of_its_clock(store: RunnerRegistry) -> None:
    store.put(held(last=T0))
    clock = Clock(T0 + 100)
    pulse = Heartbeat(KEY, store, interval=30, clock=clock)
    assert pulse.maybe() is True  # the first poll beats
    assert store.get(KEY).last_heartbeat == T0 + 100
    clock.now += 29
    assert pulse.maybe() is None  # not due
    assert store.get(KEY).last_heartbeat == T0 + 100
    clock.now += 1
    assert pulse.maybe() is True
    assert store.get(KEY).last_heartbeat == T0 + 130


def test_a_holding_task_beats_from_a_thread_until_its_block_ends(store: RunnerRegistry) -> None:
    store.put(held(last=T0))
    ticks = iter(range(1, 10_000))
    clock: Callable[[], float] = lambda: T0 + next(ticks)
    with Heartbeat(KEY, store, interval=0.01, clock=clock) as beat:
        deadline = time.monotonic() + 20
        while beat.sent < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert beat.sent >= 3  # at entry, then from the thread
    sent = beat.sent
    assert store.get(KEY).last_heartbeat == T0 + sent  # the last beat's time, from the test's clock
    time.sleep(0.05)
    assert beat.sent == sent  # stopped with the block


def test_an_ended_runner_is_never_revived_by_a_late_heartbeat(store: RunnerRegistry) -> None:
    store.put(held(last=T0))
    assert store.end(KEY, "torn down")
    assert Heartbeat(KEY, store, interval=30, clock=Clock(T0 + 5)).beat() is False
    record = store.get(KEY)
    assert record.status == "ended"


def test_a_record_expires_heartbeat_expiry_after_its_last_heartbeat(store: RunnerRegistry) -> None:
    store.put(held(last=T0))
    record = store.get(KEY)
    assert not expired(record, T0 + 3599, 3600)
    assert expired(record, T0 + 3600, 3600)
    Heartbeat(KEY, store, interval=30, clock=Clock(T0 + 3000)).beat()
    assert not expired(store.get(KEY), T0 + 3600, 3600)  # a heartbeat pushes the expiry back
    assert expired(store.get(KEY), T0 + 6600, 3600)
    for status in ("idle", "ended", "pending"):  # no holder to send heartbeats: never expires this way
        assert not expired(held(last=T0, status=status), T0 + 86_400, 3600)


# -- the reaper acts on expired records --------------------------------------------------------
@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: RunnerRegistry) -> dict[str, Any]:
    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp_path / "evidence"))
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_EXPIRY", "3600")
    lineages = {
        name: Lineage("etl", "manual__held", f"provision-{name}") for name in ("silent", "alive", "kept")
    }
    cloudy = CloudyBackend(
        fleet=[
            handle("i-silent", lineages["silent"]),
            handle("i-alive", lineages["alive"]),
            handle(
                "i-kept",
                lineages["kept"],
                tags={**handle("x").tags, KEEP_TAG: "true", "runner-lineage": lineages["kept"].key},
            ),
        ]
    )
    use_backend(monkeypatch, "runners_cloudy", cloudy)
    store.put(held(lineages["silent"].key, last=T0 - 3601, resource_id="i-silent"))
    store.put(held(lineages["alive"].key, last=T0 - 60, resource_id="i-alive"))
    store.put(held(lineages["kept"].key, last=T0 - 7200, resource_id="i-kept"))
    return {"registry": store, "backend": cloudy, "lineages": lineages}


def test_the_reaper_ends_a_runner_whose_heartbeats_stopped_and_records_it(fleet: dict[str, Any]) -> None:
    registry = fleet["registry"]
    report = sweep(
        ["runners_cloudy"],
        runs=Runs({("etl", "manual__held"): "running"}),  # its DAG run still runs: only the heartbeat decides
        registry=registry,
        now=NOW,
    )
    assert report.ok, report.errors
    assert [a.resource_id for a in report.by("reap")] == ["i-silent"]
    (action,) = report.by("reap")
    assert action.reason.startswith("no heartbeat since 2026-11-23T10:59:59")
    assert "heartbeat_expiry 3600s" in action.reason
    assert fleet["backend"].torn_down == ["i-silent"]
    silent = registry.get(fleet["lineages"]["silent"].key)
    assert silent.status == "ended"
    assert silent.ended_reason.startswith("reaped: no heartbeat")
    assert sorted(a.resource_id for a in report.by("keep")) == ["i-alive", "i-kept"]
    # the reaper does not hold runners: it sends no heartbeats of its own
    assert registry.get(fleet["lineages"]["alive"].key).last_heartbeat == T0 - 60
    (chain,) = [c for c in iter_chains("etl", "manual__held") if c.name == fleet["lineages"]["silent"].key]
    entries = verify_chain(chain, complete=True).entries
    # the chain had no provision entry (none was written in this test): the reaper writes the
    # killed provision's entry first, then its terminal reap
    assert [(e["event"], bool(e.get("terminal"))) for e in entries] == [("provision", False), ("reap", True)]
    assert "no heartbeat" in json.dumps(entries[-1])


# -- holders: the readiness trigger while waiting -----------------------------------------------
def test_the_readiness_trigger_beats_while_it_waits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow_provider_runners.triggers.poller import SharedStatusPoller
    from tests.unit.test_poller_trigger import FakeBackend, make_handle, trigger

    monkeypatch.setattr(SharedStatusPoller, "_pollers", {})
    use_backend(monkeypatch, "runners_fake_test", FakeBackend(pending_polls=3))
    path = tmp_path / "registry.sqlite"
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{path}")
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", "0")  # every poll
    registry = SqliteRegistry(path)
    runner = make_handle()
    registry.put(held(runner.lineage_key, last=0.0))
    events = asyncio.run(_events(trigger(runner)))
    assert events[-1].payload["status"] == "ready"
    assert registry.get(runner.lineage_key).last_heartbeat > 0.0


async def _events(trig: Any) -> list[Any]:
    return [event async for event in trig.run()]


def test_many_records_are_refreshed_in_one_call_and_an_ended_one_is_not_revived(
    store: RunnerRegistry,
) -> None:
    keys = [f"rl{i:026d}" for i in range(5)]
    for i, key in enumerate(keys):
        store.put(held(key, last=T0, status=("running", "idle", "draining", "pending", "ended")[i]))
    assert store.heartbeat_many([*keys, "rl" + "9" * 26], T0 + 30) == 4  # the ended and the missing: no
    assert [store.get(key).last_heartbeat for key in keys] == [T0 + 30] * 4 + [T0]
    assert store.get(keys[4]).status == "ended"


class _CountingRegistry(SqliteRegistry):
    """The real SQLite store, counting its writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[list[str]] = []
        self.single = 0

    def heartbeat_many(self, keys: Any, now: float | None = None) -> int:
        self.batches.append(list(keys))
        return super().heartbeat_many(self.batches[-1], now)

    def heartbeat(self, key: str, holder: str | None = None, now: float | None = None) -> bool:
        self.single += 1
        return super().heartbeat(key, holder, now)


def test_waiting_triggers_share_one_registry_write_per_beat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """40 triggers waiting in one event loop (a triggerer) beat their runners' records in shared
    writes, not one write (and one thread hop) per trigger per interval."""
    from airflow_provider_runners.governance import budget
    from airflow_provider_runners.governance.heartbeat import SharedHeartbeats
    from airflow_provider_runners.triggers.poller import SharedStatusPoller
    from tests.unit.test_poller_trigger import FakeBackend, make_handle, trigger

    monkeypatch.setattr(SharedStatusPoller, "_pollers", {})
    monkeypatch.setattr(SharedHeartbeats, "_by_loop", {})
    monkeypatch.setattr(SharedHeartbeats, "TICK_S", 0.05)
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", "0.1")
    use_backend(monkeypatch, "runners_fake_test", FakeBackend(pending_polls=25))  # 25 x 20 ms
    registry = _CountingRegistry(tmp_path / "registry.sqlite")
    monkeypatch.setattr(budget, "safe_registry", lambda: registry)
    runners = [make_handle(i) for i in range(40)]
    for runner in runners:
        registry.put(held(runner.lineage_key, last=0.0))

    async def wait_all() -> list[list[Any]]:
        return await asyncio.gather(*(_events(trigger(runner)) for runner in runners))

    results = asyncio.run(wait_all())
    assert [events[-1].payload["status"] for events in results] == ["ready"] * 40
    assert all(registry.get(r.lineage_key).last_heartbeat > 0.0 for r in runners)  # every record beaten
    assert registry.single == 0
    beats = sum(len(batch) for batch in registry.batches)
    assert max(len(batch) for batch in registry.batches) == 40  # all of them in one write
    assert beats >= 40 * 2  # each beaten again while it waited (~0.5 s, interval 0.1 s) ...
    assert len(registry.batches) <= beats / 20  # ... in writes shared by at least 20 on average
    assert SharedHeartbeats._by_loop == {}  # nobody holds a runner: the shared task ended


def test_shared_heartbeats_beat_a_new_key_at_once_and_settle_into_one_write_per_interval() -> None:
    from airflow_provider_runners.governance.heartbeat import SharedHeartbeats

    beats = SharedHeartbeats(NullRegistry(), interval=30, clock=Clock())
    beats.last.update(a=None)
    assert beats.due(T0) == ["a"]  # never beaten: at once
    beats.last.update(a=T0, b=None)
    assert beats.due(T0 + 10) == ["b"]  # a is 10 s old: not half an interval
    beats.last.update(b=T0 + 10)
    assert beats.due(T0 + 29) == []
    assert beats.due(T0 + 30) == ["a", "b"]  # a is due; b (20 s) goes along: one write from now on
    beats.last.update(a=T0 + 30, b=T0 + 30)
    assert beats.due(T0 + 59) == []
    assert beats.due(T0 + 60) == ["a", "b"]


# -- holders: a command task while its command runs --------------------------------------------
class _Ti:
    task_id = "work"
    map_index = -1
    try_number = 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_a_command_task_beats_while_its_command_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow_provider_runners.backends.local_host.backend import LocalHostBackend
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.specs import RunnerSpec
    from airflow_provider_runners.operators.command import RunnerCommandOperator

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    path = tmp_path / "registry.sqlite"
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{path}")
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", "0.05")
    host_backend = LocalHostBackend(
        ConnectionConfig(conn_id="runners_local_host", conn_type="runners_local_host")
    )
    spec = RunnerSpec.parse({"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "qa"}})
    lineage = Lineage("etl", "manual__held", "host")
    host = host_backend.create(
        ProvisionRequest.build(
            resolve_spec(spec), lineage, lineage.attempt_token(1), "runners_local_host", {}
        )
    )
    registry = SqliteRegistry(path)
    registry.put(held(lineage.key, last=0.0, resource_id=host.resource_id))
    beats: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # what the record says while the command runs
        while not stop.is_set():
            record = registry.get(lineage.key)
            if record and record.last_heartbeat not in beats:
                beats.append(record.last_heartbeat)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        op = RunnerCommandOperator(task_id="work", handle=host.to_xcom(), command="sleep 0.6")
        result = op.execute({"ti": _Ti()})  # type: ignore[arg-type]
    finally:
        stop.set()
        watcher.join(5)
        host_backend.teardown(host)
    assert result["exit_code"] == 0
    assert len([b for b in beats if b > 0]) >= 2  # at the start and again while it ran


# -- holders: a @task.runner function while it runs ----------------------------------------------
def test_a_task_runner_function_holds_its_runner_while_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_runners.decorators.runner import RunnerPythonOperator
    from tests.unit.test_poller_trigger import make_handle

    path = tmp_path / "registry.sqlite"
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{path}")
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", "0.02")
    registry = SqliteRegistry(path)
    runner = make_handle(5)
    registry.put(held(runner.lineage_key, last=0.0))
    seen: list[float] = []

    def work(handle: Any) -> str:  # the function sees the record refreshed while it runs
        deadline = time.monotonic() + 10
        while len(set(seen)) < 3 and time.monotonic() < deadline:
            seen.append(registry.get(handle.lineage_key).last_heartbeat)
            time.sleep(0.01)
        return handle.resource_id

    op = RunnerPythonOperator(task_id="fn", handle=runner.to_xcom(), python_callable=work)
    assert op.execute({"ti": _Ti()}) == runner.resource_id  # type: ignore[arg-type]
    assert len({s for s in seen if s > 0}) >= 2  # at the start, then from the thread


# -- holders: a Dask job while it runs ---------------------------------------------------------
def test_a_dask_job_task_holds_its_runner_while_the_job_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    from airflow_provider_runners.operators.work import DaskJobOperator
    from tests.unit.test_poller_trigger import make_handle

    path = tmp_path / "registry.sqlite"
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{path}")
    monkeypatch.setenv("AIRFLOW__RUNNERS__HEARTBEAT_INTERVAL", "0.02")
    registry = SqliteRegistry(path)
    seen: list[float] = []

    def job(client: Any, key: str) -> int:
        deadline = time.monotonic() + 10
        while len(set(seen)) < 3 and time.monotonic() < deadline:
            seen.append(registry.get(key).last_heartbeat)
            time.sleep(0.01)
        return 1

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        runner = make_handle(6).evolve(endpoints={"scheduler": cluster.scheduler_address})
        runner = runner.evolve(conn_id="runners_default")
        registry.put(held(runner.lineage_key, last=0.0))
        op = DaskJobOperator(
            task_id="job",
            handle=runner.to_xcom(),
            python_callable=job,
            op_args=[runner.lineage_key],
            reattach=False,
        )
        assert op.execute({"ti": _Ti(), "dag": None}) == 1  # type: ignore[arg-type]
    assert len({s for s in seen if s > 0}) >= 2
