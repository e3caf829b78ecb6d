from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from airflow.triggers.base import TriggerEvent

from airflow_provider_runners.backends import registry
from airflow_provider_runners.core.backend import (
    Backend,
    ConnectionConfig,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.triggers import poller as poller_module
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

INTERVAL = 0.02
CREATED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SCHEDULER = "tcp://127.0.0.1:8786"


class FakeBackend(Backend):
    """A test double of the Backend interface: each runner is PENDING for ``pending_polls`` polls, then
    ``final``. Counts every ``status_many`` call and the size of each batch."""

    name = "fake"
    conn_type = "runners_fake"
    hook_name = "Runners: fake"
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dask_cluster"})
    poll_interval = INTERVAL

    # Behaviour and counters live on the class so every instance made by get_backend() shares them.
    pending_polls: ClassVar[int] = 2
    final: ClassVar[RunnerState] = RunnerState.READY
    fail_calls: ClassVar[int] = 0
    calls: ClassVar[int] = 0
    call_times: ClassVar[list[float]] = []
    batch_sizes: ClassVar[list[int]] = []
    polls: ClassVar[dict[str, int]] = {}
    teardowns: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def reset(
        cls, pending_polls: int = 2, final: RunnerState = RunnerState.READY, fail_calls: int = 0
    ) -> None:
        cls.pending_polls, cls.final, cls.fail_calls = pending_polls, final, fail_calls
        cls.calls, cls.teardowns = 0, 0
        cls.call_times, cls.batch_sizes, cls.polls = [], [], {}

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        handles = list(handles)
        cls = type(self)
        with cls.lock:
            cls.calls += 1
            cls.call_times.append(time.monotonic())
            cls.batch_sizes.append(len(handles))
            if cls.fail_calls > 0:
                cls.fail_calls -= 1
                raise ConnectionError("DescribeInstances: RequestLimitExceeded")
            return {handle.resource_id: self._next(handle) for handle in handles}

    def _next(self, handle: RunnerHandle) -> RunnerStatus:
        cls = type(self)
        seen = cls.polls[handle.resource_id] = cls.polls.get(handle.resource_id, 0) + 1
        if seen <= cls.pending_polls:
            return RunnerStatus(RunnerState.PENDING, f"starting ({seen})")
        if cls.final is RunnerState.READY:
            return RunnerStatus(
                RunnerState.READY, "running", endpoints={"scheduler": SCHEDULER}, details={"pid": 7}
            )
        return RunnerStatus(cls.final, "instance terminated")

    def status(self, handle: RunnerHandle) -> RunnerStatus:  # pragma: no cover - status_many is overridden
        raise AssertionError("the poller must use status_many")

    def create(self, request: ProvisionRequest) -> RunnerHandle:  # pragma: no cover - not used here
        raise NotImplementedError

    def find(self, lineage_key: str) -> RunnerHandle | None:  # pragma: no cover - not used here
        return None

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        type(self).teardowns += 1
        return TeardownResult(existed=True, message="terminated")

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:  # pragma: no cover - not used here
        return {}

    def list_managed(self) -> list[RunnerHandle]:  # pragma: no cover - not used here
        return []


def make_handle(n: int = 0) -> RunnerHandle:
    return RunnerHandle(
        backend="fake",
        runner_class="dask_cluster",
        resource_id=f"fake-{n}",
        conn_id="runners_fake_test",
        lineage_key="rl" + f"{n:026d}",
        attempt_token="rl" + f"{n:026d}" + "-t1",
        created_at=CREATED,
        expires_at=CREATED + timedelta(hours=2),
        environment="local",
        profile="small",
        tags={"tenant": "team-a"},
    )


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeBackend]]:
    """Register FakeBackend for conn_type runners_fake and define Connection runners_fake_test."""
    FakeBackend.reset()
    monkeypatch.setattr(SharedStatusPoller, "_pollers", {})
    registry.reload_backends()
    monkeypatch.setitem(registry.backend_classes(), FakeBackend.conn_type, FakeBackend)
    monkeypatch.setenv("AIRFLOW_CONN_RUNNERS_FAKE_TEST", json.dumps({"conn_type": "runners_fake"}))
    yield FakeBackend
    registry.reload_backends()


def import_string(classpath: str) -> Any:
    """How the triggerer rebuilds a trigger from its serialized classpath."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def backend() -> FakeBackend:
    return FakeBackend(ConnectionConfig(conn_id="runners_fake_test", conn_type="runners_fake"))


async def wait_until_settled(poller: SharedStatusPoller, handle: RunnerHandle) -> RunnerStatus:
    """What a trigger does: ask again after every non-final status."""
    while True:
        status = await poller.next_status(handle)
        if status.state is not RunnerState.PENDING:
            return status


PROVISION_TI = {
    "dag_id": "etl",
    "run_id": "manual__1",
    "task_id": "cluster.provision",
    "map_index": -1,
    "try_number": 1,
    "lineage_key": "rl" + f"{0:026d}",
}


def trigger(
    handle: RunnerHandle | None = None, deadline: datetime | None = None, **kwargs: Any
) -> RunnerReadyTrigger:
    return RunnerReadyTrigger(
        conn_id="runners_fake_test",
        handle=(handle or make_handle()).to_xcom(),
        deadline=(deadline or datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
        poll_interval=INTERVAL,
        **kwargs,
    )


async def events_of(trig: RunnerReadyTrigger) -> list[TriggerEvent]:
    return [event async for event in trig.run()]


# -- the shared poller -------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_registered_fake_backend_resolves_through_the_connection() -> None:
    resolved = await asyncio.to_thread(registry.get_backend, "runners_fake_test")
    assert isinstance(resolved, FakeBackend)
    assert resolved.conn_id == "runners_fake_test"


@pytest.mark.asyncio
async def test_fifty_waiters_share_one_status_call_per_tick() -> None:
    FakeBackend.reset(pending_polls=3)
    handles = [make_handle(n) for n in range(50)]
    shared = SharedStatusPoller.for_backend(backend(), INTERVAL)
    statuses = await asyncio.wait_for(asyncio.gather(*(wait_until_settled(shared, h) for h in handles)), 10)
    assert all(s.state is RunnerState.READY for s in statuses)
    # 3 PENDING ticks + 1 READY tick, each a single call covering all 50 runners (not 50 x 4 = 200 calls).
    assert FakeBackend.calls == 4
    assert FakeBackend.batch_sizes == [50, 50, 50, 50]
    assert shared.calls == 4
    assert FakeBackend.polls == {h.resource_id: 4 for h in handles}


@pytest.mark.asyncio
async def test_waiters_on_the_same_batch_key_get_the_same_poller() -> None:
    first, second = backend(), backend()
    assert first is not second
    assert SharedStatusPoller.for_backend(first) is SharedStatusPoller.for_backend(second)
    other = FakeBackend(ConnectionConfig(conn_id="other_account", conn_type="runners_fake"))
    assert SharedStatusPoller.for_backend(other) is not SharedStatusPoller.for_backend(first)


@pytest.mark.asyncio
async def test_two_waiters_on_the_same_runner_share_its_poll() -> None:
    FakeBackend.reset(pending_polls=0)
    shared = SharedStatusPoller.for_backend(backend(), INTERVAL)
    one, two = await asyncio.gather(shared.next_status(make_handle(1)), shared.next_status(make_handle(1)))
    assert one is two
    assert FakeBackend.batch_sizes == [1]


@pytest.mark.asyncio
async def test_failing_status_call_is_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # No jitter, so the backoff is exact: 2 x interval, then 4 x interval, then back to the interval.
    monkeypatch.setattr(
        poller_module, "random", type("NoJitter", (), {"uniform": staticmethod(lambda a, b: b)})
    )
    interval = 0.05
    FakeBackend.reset(pending_polls=1, fail_calls=2)
    handles = [make_handle(n) for n in range(5)]
    shared = SharedStatusPoller.for_backend(backend(), interval)
    statuses = await asyncio.wait_for(asyncio.gather(*(wait_until_settled(shared, h) for h in handles)), 10)
    assert [s.state for s in statuses] == [RunnerState.READY] * 5
    assert FakeBackend.calls == 4  # 2 failures, 1 PENDING, 1 READY
    assert FakeBackend.batch_sizes == [5, 5, 5, 5]  # nobody was dropped by a failure
    t = FakeBackend.call_times
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert gaps[0] >= 2 * interval * 0.95
    assert gaps[1] >= 4 * interval * 0.95
    assert gaps[2] < gaps[1]  # a success resets the backoff


@pytest.mark.asyncio
async def test_backoff_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        poller_module, "random", type("NoJitter", (), {"uniform": staticmethod(lambda a, b: b)})
    )
    monkeypatch.setattr(poller_module, "MAX_BACKOFF_S", 0.05)
    FakeBackend.reset(pending_polls=0, fail_calls=4)
    shared = SharedStatusPoller.for_backend(backend(), 0.04)
    status = await asyncio.wait_for(shared.next_status(make_handle()), 10)
    assert status.state is RunnerState.READY
    t = FakeBackend.call_times
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert len(gaps) == 4
    assert max(gaps) < 0.05 + 0.5  # capped at MAX_BACKOFF_S (0.04 * 2**4 would be 0.64 s)


@pytest.mark.asyncio
async def test_missing_status_is_an_error_for_that_waiter_only() -> None:
    class Forgetful(FakeBackend):
        def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
            found = super().status_many(handles)
            found.pop("fake-2", None)
            return found

    FakeBackend.reset(pending_polls=0)
    shared = SharedStatusPoller.for_backend(
        Forgetful(ConnectionConfig(conn_id="forgetful", conn_type="runners_fake")), INTERVAL
    )
    results = await asyncio.gather(
        *(shared.next_status(make_handle(n)) for n in (1, 2)), return_exceptions=True
    )
    assert isinstance(results[0], RunnerStatus)
    assert isinstance(results[1], KeyError)
    assert "fake-2" in str(results[1])


# -- RunnerReadyTrigger ------------------------------------------------------------------------
def test_trigger_serializes_into_an_equal_trigger() -> None:
    original = trigger(not_before=CREATED.isoformat(), provision_ti=PROVISION_TI)
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_runners.triggers.readiness.RunnerReadyTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # stored as JSON in the trigger table
    rebuilt = import_string(classpath)(**kwargs)
    assert isinstance(rebuilt, RunnerReadyTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert RunnerHandle.from_xcom(rebuilt.handle) == make_handle()
    assert rebuilt.poll_interval == INTERVAL
    assert rebuilt.not_before == CREATED.isoformat()
    assert rebuilt.provision_ti == PROVISION_TI


def test_a_trigger_serialized_by_an_older_version_still_loads() -> None:
    old = {"conn_id": "runners_fake_test", "handle": make_handle().to_xcom(), "deadline": CREATED.isoformat()}
    rebuilt = RunnerReadyTrigger(**old)
    assert rebuilt.not_before is None
    assert rebuilt.provision_ti is None


@pytest.mark.asyncio
async def test_trigger_yields_one_ready_event_with_learned_endpoints() -> None:
    FakeBackend.reset(pending_polls=2)
    events = await asyncio.wait_for(events_of(trigger()), 10)
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "ready"
    assert payload["message"] == "running"
    ready = RunnerHandle.from_xcom(payload["handle"])
    assert ready.endpoints == {"scheduler": SCHEDULER}
    assert ready.details["pid"] == 7
    assert ready.resource_id == make_handle().resource_id
    assert FakeBackend.polls == {"fake-0": 3}


@pytest.mark.asyncio
@pytest.mark.parametrize("final", [RunnerState.FAILED, RunnerState.GONE])
async def test_trigger_yields_one_failed_event(final: RunnerState) -> None:
    FakeBackend.reset(pending_polls=1, final=final)
    events = await asyncio.wait_for(events_of(trigger()), 10)
    assert len(events) == 1
    assert events[0].payload["status"] == "failed"
    assert events[0].payload["message"] == f"{final.value}: instance terminated"
    assert RunnerHandle.from_xcom(events[0].payload["handle"]) == make_handle()
    assert FakeBackend.teardowns == 0  # waiting has no side effects


@pytest.mark.asyncio
async def test_trigger_yields_one_timeout_event_after_the_deadline() -> None:
    FakeBackend.reset(pending_polls=1000)
    past = datetime.now(UTC) - timedelta(seconds=1)
    events = await asyncio.wait_for(events_of(trigger(deadline=past)), 10)
    assert len(events) == 1
    assert events[0].payload["status"] == "timeout"
    assert past.isoformat() in events[0].payload["message"]
    assert "starting (1)" in events[0].payload["message"]
    assert FakeBackend.calls == 1


@pytest.mark.asyncio
async def test_trigger_times_out_while_the_status_api_keeps_failing() -> None:
    """The poller retries a failing status call forever; the deadline still ends the wait."""
    FakeBackend.reset(fail_calls=10_000)
    events = await asyncio.wait_for(
        events_of(trigger(deadline=datetime.now(UTC) + timedelta(seconds=0.3))), 10
    )
    assert [e.payload["status"] for e in events] == ["timeout"]
    assert "the status API did not answer" in events[0].payload["message"]
    assert FakeBackend.calls >= 1


@pytest.mark.asyncio
async def test_trigger_keeps_waiting_until_the_deadline() -> None:
    FakeBackend.reset(pending_polls=1000)
    events = await asyncio.wait_for(
        events_of(trigger(deadline=datetime.now(UTC) + timedelta(seconds=0.3))), 10
    )
    assert [e.payload["status"] for e in events] == ["timeout"]
    assert FakeBackend.calls >= 3  # it polled repeatedly before giving up


@pytest.mark.asyncio
async def test_running_the_same_trigger_twice_yields_the_same_event() -> None:
    FakeBackend.reset(pending_polls=2)
    original = trigger()
    classpath, kwargs = original.serialize()
    first = await asyncio.wait_for(events_of(original), 10)
    # Triggerer failover: the same serialized trigger runs again elsewhere.
    second = await asyncio.wait_for(events_of(import_string(classpath)(**kwargs)), 10)
    assert len(first) == len(second) == 1
    assert first == second
    assert first[0].payload["status"] == "ready"
    assert FakeBackend.teardowns == 0


@pytest.mark.asyncio
async def test_fifty_triggers_batch_their_polls() -> None:
    FakeBackend.reset(pending_polls=3)
    triggers = [trigger(make_handle(n)) for n in range(50)]
    results = await asyncio.wait_for(asyncio.gather(*(events_of(t) for t in triggers)), 20)
    assert [len(events) for events in results] == [1] * 50
    assert {events[0].payload["status"] for events in results} == {"ready"}
    assert sum(FakeBackend.batch_sizes) == 50 * 4  # every runner polled exactly 4 times
    # Triggers start as their backends are looked up, so the first ones may get a tick of their own;
    # polling each on its own would take 200 calls.
    assert FakeBackend.calls <= 8


@pytest.mark.asyncio
async def test_trigger_with_an_undefined_connection_fails_with_one_event() -> None:
    trig = RunnerReadyTrigger(
        conn_id="runners_no_such_conn",
        handle=make_handle().to_xcom(),
        deadline=(datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
        poll_interval=INTERVAL,
    )
    events = await asyncio.wait_for(events_of(trig), 10)
    assert len(events) == 1
    assert events[0].payload["status"] == "failed"
    assert "runners_no_such_conn" in events[0].payload["message"]
    assert FakeBackend.calls == 0


@pytest.mark.asyncio
async def test_on_kill_tears_the_runner_down() -> None:
    await trigger().on_kill()
    assert FakeBackend.teardowns == 1


@pytest.mark.asyncio
async def test_a_ready_event_waits_for_not_before() -> None:
    """The minimum dwell: a runner ready at once is reported no sooner than not_before."""
    FakeBackend.reset(pending_polls=0)
    started = time.monotonic()
    events = await asyncio.wait_for(
        events_of(trigger(not_before=(datetime.now(UTC) + timedelta(seconds=0.6)).isoformat())), 10
    )
    assert [e.payload["status"] for e in events] == ["ready"]
    assert time.monotonic() - started >= 0.5
    assert FakeBackend.calls == 1  # it dwelt without polling again


@pytest.mark.asyncio
async def test_a_failure_is_not_delayed_by_not_before() -> None:
    FakeBackend.reset(pending_polls=0, final=RunnerState.FAILED)
    events = await asyncio.wait_for(
        events_of(trigger(not_before=(datetime.now(UTC) + timedelta(hours=1)).isoformat())), 10
    )
    assert [e.payload["status"] for e in events] == ["failed"]


@pytest.mark.asyncio
async def test_on_kill_records_the_end_once(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp_path))
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", "none")
    killed = trigger(provision_ti=PROVISION_TI)
    await killed.on_kill()
    await killed.on_kill()  # the triggerer may cancel it twice: one entry
    assert FakeBackend.teardowns == 2  # teardown is idempotent; the record is not repeated
    (chain,) = list(iter_chains("etl", "manual__1"))
    report = verify_chain(chain, complete=True)
    assert report.ok, report.problems
    # the killed provision ran no callback: its own entry first, then the end
    killed_entry, end = report.entries
    assert (killed_entry["event"], killed_entry["outcome"], killed_entry["task_id"]) == (
        "provision",
        "failed",
        "cluster.provision",
    )
    assert killed_entry["facts"] == {"noticed_by": "trigger on_kill"}
    assert killed_entry["try_number"] == PROVISION_TI["try_number"]
    assert (end["event"], end["by"], end["terminal"], end["task_id"]) == (
        "end",
        "trigger on_kill",
        True,
        "cluster.provision",
    )
    assert end["lineage_key"] == make_handle().lineage_key
    assert end["facts"]["teardown"][0]["existed"] is True
