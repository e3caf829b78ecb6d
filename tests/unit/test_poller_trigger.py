from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import threading
import time
from collections.abc import Iterable
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
from airflow_provider_runners.testing.contract import use_backend
from airflow_provider_runners.triggers import poller as poller_module
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

INTERVAL = 0.02
CREATED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SCHEDULER = "tcp://127.0.0.1:8786"


class FakeBackend(Backend):
    """A test double of the Backend interface: each runner is PENDING for ``pending_polls`` polls, then
    ``final``. Counts every ``status_many`` call and the size of each batch (on this instance)."""

    name = "fake"
    conn_type = "runners_fake"
    hook_name = "Runners: fake"
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dask_cluster"})
    poll_interval = INTERVAL

    def __init__(
        self,
        config: ConnectionConfig | None = None,
        pending_polls: int = 2,
        final: RunnerState = RunnerState.READY,
        fail_calls: int = 0,
    ) -> None:
        super().__init__(config or ConnectionConfig(conn_id="runners_fake_test", conn_type=self.conn_type))
        self.pending_polls, self.final, self.fail_calls = pending_polls, final, fail_calls
        self.calls = 0
        self.call_times: list[float] = []
        self.batch_sizes: list[int] = []
        self.polls: dict[str, int] = {}
        self.teardowns = 0
        self.lock = threading.Lock()

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        handles = list(handles)
        with self.lock:
            self.calls += 1
            self.call_times.append(time.monotonic())
            self.batch_sizes.append(len(handles))
            if self.fail_calls > 0:
                self.fail_calls -= 1
                raise ConnectionError("DescribeInstances: RequestLimitExceeded")
            return {handle.resource_id: self._next(handle) for handle in handles}

    def _next(self, handle: RunnerHandle) -> RunnerStatus:
        seen = self.polls[handle.resource_id] = self.polls.get(handle.resource_id, 0) + 1
        if seen <= self.pending_polls:
            return RunnerStatus(RunnerState.PENDING, f"starting ({seen})")
        if self.final is RunnerState.READY:
            return RunnerStatus(
                RunnerState.READY, "running", endpoints={"scheduler": SCHEDULER}, details={"pid": 7}
            )
        return RunnerStatus(self.final, "instance terminated")

    def status(self, handle: RunnerHandle) -> RunnerStatus:  # pragma: no cover - status_many is overridden
        raise AssertionError("the poller must use status_many")

    def create(self, request: ProvisionRequest) -> RunnerHandle:  # pragma: no cover - not used here
        raise NotImplementedError

    def find(self, lineage_key: str) -> RunnerHandle | None:  # pragma: no cover - not used here
        return None

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        self.teardowns += 1
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
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    """This test's one FakeBackend: what ``get_backend("runners_fake_test")`` returns (trigger,
    on_kill, poller), with fresh counters and a fresh set of shared pollers. A test sets its
    behaviour (``pending_polls``, ``final``, ``fail_calls``) on it before it starts polling."""
    monkeypatch.setattr(SharedStatusPoller, "_pollers", {})
    backend = FakeBackend()
    use_backend(monkeypatch, "runners_fake_test", backend)
    return backend


def import_string(classpath: str) -> Any:
    """How the triggerer rebuilds a trigger from its serialized classpath."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


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
async def test_registered_fake_backend_resolves_through_the_connection(
    fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one test that needs the class registered: it checks that a Connection's conn_type finds
    # its backend class through the registry, which use_backend (the fixture) short-circuits for
    # runners_fake_test. So: its own Connection, and the class registered for its conn_type.
    monkeypatch.setitem(registry.backend_classes(), FakeBackend.conn_type, FakeBackend)
    monkeypatch.setenv("AIRFLOW_CONN_RUNNERS_FAKE_REGISTERED", json.dumps({"conn_type": "runners_fake"}))
    resolved = await asyncio.to_thread(registry.get_backend, "runners_fake_registered")
    assert isinstance(resolved, FakeBackend)
    assert resolved is not fake_backend
    assert resolved.conn_id == "runners_fake_registered"


@pytest.mark.asyncio
async def test_fifty_waiters_share_one_status_call_per_tick(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 3
    handles = [make_handle(n) for n in range(50)]
    shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)
    statuses = await asyncio.wait_for(asyncio.gather(*(wait_until_settled(shared, h) for h in handles)), 10)
    assert all(s.state is RunnerState.READY for s in statuses)
    # 3 PENDING ticks + 1 READY tick, each a single call covering all 50 runners (not 50 x 4 = 200 calls).
    assert fake_backend.calls == 4
    assert fake_backend.batch_sizes == [50, 50, 50, 50]
    assert shared.calls == 4
    assert fake_backend.polls == {h.resource_id: 4 for h in handles}


@pytest.mark.asyncio
async def test_the_poller_keeps_polling_while_the_loops_default_thread_pool_is_busy(
    fake_backend: FakeBackend,
) -> None:
    """Airflow's triggerer logs each fired trigger's event on the event loop's default thread
    pool (structlog's ``ainfo``); a poll must not wait behind those calls (docs/benchmarks.md,
    a real triggerer at N = 1000): the poller calls the backend on a thread of its own."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blockers = [loop.run_in_executor(None, release.wait) for _ in range(64)]  # more than the pool has
    threads: list[str] = []
    status_many = fake_backend.status_many

    def record_thread(handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        threads.append(threading.current_thread().name)
        return status_many(handles)

    fake_backend.status_many = record_thread  # type: ignore[method-assign]
    fake_backend.pending_polls = 2
    try:
        shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)
        status = await asyncio.wait_for(wait_until_settled(shared, make_handle()), 10)
        assert status.state is RunnerState.READY
        assert fake_backend.calls == 3
        assert {name.rsplit("_", 1)[0] for name in threads} == {"runners-status-poller"}
    finally:
        release.set()
        await asyncio.gather(*blockers)


@pytest.mark.asyncio
async def test_waiters_on_the_same_batch_key_get_the_same_poller() -> None:
    first, second = FakeBackend(), FakeBackend()
    assert first is not second
    assert SharedStatusPoller.for_backend(first) is SharedStatusPoller.for_backend(second)
    other = FakeBackend(ConnectionConfig(conn_id="other_account", conn_type="runners_fake"))
    assert SharedStatusPoller.for_backend(other) is not SharedStatusPoller.for_backend(first)


@pytest.mark.asyncio
async def test_two_waiters_on_the_same_runner_share_its_poll(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 0
    shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)
    one, two = await asyncio.gather(shared.next_status(make_handle(1)), shared.next_status(make_handle(1)))
    assert one is two
    assert fake_backend.batch_sizes == [1]


@pytest.mark.asyncio
async def test_failing_status_call_is_retried_with_backoff(
    fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No jitter, so the backoff is exact: 2 x interval, then 4 x interval, then back to the interval.
    monkeypatch.setattr(
        poller_module, "random", type("NoJitter", (), {"uniform": staticmethod(lambda a, b: b)})
    )
    interval = 0.05
    fake_backend.pending_polls, fake_backend.fail_calls = 1, 2
    handles = [make_handle(n) for n in range(5)]
    shared = SharedStatusPoller.for_backend(fake_backend, interval)
    statuses = await asyncio.wait_for(asyncio.gather(*(wait_until_settled(shared, h) for h in handles)), 10)
    assert [s.state for s in statuses] == [RunnerState.READY] * 5
    assert fake_backend.calls == 4  # 2 failures, 1 PENDING, 1 READY
    assert fake_backend.batch_sizes == [5, 5, 5, 5]  # nobody was dropped by a failure
    t = fake_backend.call_times
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert gaps[0] >= 2 * interval * 0.95
    assert gaps[1] >= 4 * interval * 0.95
    assert gaps[2] < gaps[1]  # a success resets the backoff


@pytest.mark.asyncio
async def test_backoff_is_capped(fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        poller_module, "random", type("NoJitter", (), {"uniform": staticmethod(lambda a, b: b)})
    )
    monkeypatch.setattr(poller_module, "MAX_BACKOFF_S", 0.05)
    fake_backend.pending_polls, fake_backend.fail_calls = 0, 4
    shared = SharedStatusPoller.for_backend(fake_backend, 0.04)
    status = await asyncio.wait_for(shared.next_status(make_handle()), 10)
    assert status.state is RunnerState.READY
    t = fake_backend.call_times
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

    shared = SharedStatusPoller.for_backend(
        Forgetful(ConnectionConfig(conn_id="forgetful", conn_type="runners_fake"), pending_polls=0), INTERVAL
    )
    results = await asyncio.gather(
        *(shared.next_status(make_handle(n)) for n in (1, 2)), return_exceptions=True
    )
    assert isinstance(results[0], RunnerStatus)
    assert isinstance(results[1], KeyError)
    assert "fake-2" in str(results[1])


# -- watches: one registration for a whole wait --------------------------------------------------
def settled(seen: list[RunnerState]) -> Any:
    """A judge that records each state it is shown and decides on the first non-PENDING one."""

    def judge(status: RunnerStatus) -> RunnerStatus | None:
        seen.append(status.state)
        return None if status.state is RunnerState.PENDING else status

    return judge


@pytest.mark.asyncio
async def test_a_watch_is_judged_once_per_poll_and_fifty_share_each_call(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 3
    shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)
    seen: dict[int, list[RunnerState]] = {n: [] for n in range(50)}
    results = await asyncio.wait_for(
        asyncio.gather(*(shared.watch(make_handle(n), settled(seen[n])) for n in range(50))), 10
    )
    assert all(r.state is RunnerState.READY for r in results)
    # every watch saw every poll once: 3 PENDING, then the READY that decided it
    assert all(states == [RunnerState.PENDING] * 3 + [RunnerState.READY] for states in seen.values())
    assert fake_backend.batch_sizes == [50, 50, 50, 50]
    assert shared._task is not None
    await asyncio.wait_for(shared._task, 5)  # nobody left: the poller stops
    assert SharedStatusPoller._pollers == {}


@pytest.mark.asyncio
async def test_a_watch_and_a_waiter_on_one_runner_share_its_poll(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 1
    shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)
    seen: list[RunnerState] = []
    watched, answered = await asyncio.wait_for(
        asyncio.gather(shared.watch(make_handle(1), settled(seen)), shared.next_status(make_handle(1))), 10
    )
    assert answered.state is RunnerState.PENDING
    assert watched.state is RunnerState.READY
    assert fake_backend.batch_sizes == [1, 1]  # one runner, asked about once per poll


@pytest.mark.asyncio
async def test_a_watch_judges_in_its_watchers_context(fake_backend: FakeBackend) -> None:
    """Airflow's triggerer routes a trigger's log lines by contextvars bound in that trigger's
    task (structlog's ``trigger_id``); the poller's task was started by one of the waiters, so a
    judge run there would log every trigger's progress into that one trigger's log."""
    from structlog.contextvars import bind_contextvars, get_contextvars

    fake_backend.pending_polls = 2
    shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)
    heard: dict[int, set[Any]] = {1: set(), 2: set()}

    async def as_trigger(trigger_id: int) -> RunnerStatus:
        bind_contextvars(trigger_id=trigger_id)

        def judge(status: RunnerStatus) -> RunnerStatus | None:
            heard[trigger_id].add(get_contextvars().get("trigger_id"))
            return None if status.state is RunnerState.PENDING else status

        result: RunnerStatus = await shared.watch(make_handle(trigger_id), judge)
        return result

    await asyncio.wait_for(
        asyncio.gather(asyncio.create_task(as_trigger(1)), asyncio.create_task(as_trigger(2))), 10
    )
    assert heard == {1: {1}, 2: {2}}


@pytest.mark.asyncio
async def test_a_cancelled_watch_is_no_longer_polled(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 10**6
    shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)
    polled_twice = asyncio.Event()

    def judge(status: RunnerStatus) -> None:
        if fake_backend.polls["fake-1"] >= 2:
            polled_twice.set()

    watch = shared.watch(make_handle(1), judge)
    await asyncio.wait_for(polled_twice.wait(), 5)
    watch.cancel()  # what a trigger's timeout or the triggerer's cancel does to the awaited future
    assert shared._task is not None
    await asyncio.wait_for(shared._task, 5)
    polled = fake_backend.polls["fake-1"]
    await asyncio.sleep(INTERVAL * 5)
    assert fake_backend.polls["fake-1"] == polled
    assert SharedStatusPoller._pollers == {}


@pytest.mark.asyncio
async def test_a_watch_that_starts_during_a_poll_is_answered_by_the_next_one(
    fake_backend: FakeBackend,
) -> None:
    class Slow(FakeBackend):
        def __init__(self) -> None:
            super().__init__(ConnectionConfig(conn_id="slow", conn_type="runners_fake"), pending_polls=1)
            self.in_call, self.release = threading.Event(), threading.Event()

        def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
            self.in_call.set()
            assert self.release.wait(5)
            return super().status_many(handles)

    slow = Slow()
    shared = SharedStatusPoller.for_backend(slow, INTERVAL)
    first: list[RunnerState] = []
    second: list[RunnerState] = []
    one = shared.watch(make_handle(1), settled(first))
    assert await asyncio.to_thread(slow.in_call.wait, 5)
    two = shared.watch(make_handle(2), settled(second))  # the call for fake-1 is in flight
    slow.release.set()
    results = await asyncio.wait_for(asyncio.gather(one, two), 10)
    assert [r.state for r in results] == [RunnerState.READY, RunnerState.READY]
    assert first == second == [RunnerState.PENDING, RunnerState.READY]
    assert slow.batch_sizes[0] == 1


@pytest.mark.asyncio
async def test_a_judges_error_ends_only_its_own_watch(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 2
    shared = SharedStatusPoller.for_backend(fake_backend, INTERVAL)

    def broken(status: RunnerStatus) -> None:
        raise ValueError(f"cannot judge {status.message}")

    seen: list[RunnerState] = []
    results = await asyncio.wait_for(
        asyncio.gather(
            shared.watch(make_handle(1), broken),
            shared.watch(make_handle(2), settled(seen)),
            return_exceptions=True,
        ),
        10,
    )
    assert isinstance(results[0], ValueError)
    assert "cannot judge starting (1)" in str(results[0])
    assert results[1].state is RunnerState.READY
    assert fake_backend.polls == {"fake-1": 1, "fake-2": 3}


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
async def test_trigger_yields_one_ready_event_with_learned_endpoints(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 2
    events = await asyncio.wait_for(events_of(trigger()), 10)
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "ready"
    assert payload["message"] == "running"
    ready = RunnerHandle.from_xcom(payload["handle"])
    assert ready.endpoints == {"scheduler": SCHEDULER}
    assert ready.details["pid"] == 7
    assert ready.resource_id == make_handle().resource_id
    assert fake_backend.polls == {"fake-0": 3}


@pytest.mark.asyncio
@pytest.mark.parametrize("final", [RunnerState.FAILED, RunnerState.GONE])
async def test_trigger_yields_one_failed_event(fake_backend: FakeBackend, final: RunnerState) -> None:
    fake_backend.pending_polls, fake_backend.final = 1, final
    events = await asyncio.wait_for(events_of(trigger()), 10)
    assert len(events) == 1
    assert events[0].payload["status"] == "failed"
    assert events[0].payload["message"] == f"{final.value}: instance terminated"
    assert RunnerHandle.from_xcom(events[0].payload["handle"]) == make_handle()
    assert fake_backend.teardowns == 0  # waiting has no side effects


@pytest.mark.asyncio
async def test_trigger_yields_one_timeout_event_after_the_deadline(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 1000
    past = datetime.now(UTC) - timedelta(seconds=1)
    events = await asyncio.wait_for(events_of(trigger(deadline=past)), 10)
    assert len(events) == 1
    assert events[0].payload["status"] == "timeout"
    assert past.isoformat() in events[0].payload["message"]
    assert "starting (1)" in events[0].payload["message"]
    assert fake_backend.calls == 1


@pytest.mark.asyncio
async def test_trigger_times_out_while_the_status_api_keeps_failing(fake_backend: FakeBackend) -> None:
    """The poller retries a failing status call forever; the deadline still ends the wait."""
    fake_backend.fail_calls = 10_000
    events = await asyncio.wait_for(
        events_of(trigger(deadline=datetime.now(UTC) + timedelta(seconds=0.3))), 10
    )
    assert [e.payload["status"] for e in events] == ["timeout"]
    assert "the status API did not answer" in events[0].payload["message"]
    assert fake_backend.calls >= 1


@pytest.mark.asyncio
async def test_trigger_keeps_waiting_until_the_deadline(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 1000
    events = await asyncio.wait_for(
        events_of(trigger(deadline=datetime.now(UTC) + timedelta(seconds=0.3))), 10
    )
    assert [e.payload["status"] for e in events] == ["timeout"]
    assert fake_backend.calls >= 3  # it polled repeatedly before giving up


@pytest.mark.asyncio
async def test_running_the_same_trigger_twice_yields_the_same_event(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 2
    original = trigger()
    classpath, kwargs = original.serialize()
    first = await asyncio.wait_for(events_of(original), 10)
    # Triggerer failover: the same serialized trigger runs again elsewhere.
    second = await asyncio.wait_for(events_of(import_string(classpath)(**kwargs)), 10)
    assert len(first) == len(second) == 1
    assert first == second
    assert first[0].payload["status"] == "ready"
    assert fake_backend.teardowns == 0


@pytest.mark.asyncio
async def test_fifty_triggers_batch_their_polls(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls = 3
    triggers = [trigger(make_handle(n)) for n in range(50)]
    results = await asyncio.wait_for(asyncio.gather(*(events_of(t) for t in triggers)), 20)
    assert [len(events) for events in results] == [1] * 50
    assert {events[0].payload["status"] for events in results} == {"ready"}
    assert sum(fake_backend.batch_sizes) == 50 * 4  # every runner polled exactly 4 times
    # Triggers start as their backends are looked up, so the first ones may get a tick of their own;
    # polling each on its own would take 200 calls.
    assert fake_backend.calls <= 8


@pytest.mark.asyncio
async def test_trigger_with_an_undefined_connection_fails_with_one_event(fake_backend: FakeBackend) -> None:
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
    assert fake_backend.calls == 0


@pytest.mark.asyncio
async def test_on_kill_tears_the_runner_down(fake_backend: FakeBackend) -> None:
    await trigger().on_kill()
    assert fake_backend.teardowns == 1


@pytest.mark.asyncio
async def test_a_ready_event_waits_for_not_before(fake_backend: FakeBackend) -> None:
    """The minimum dwell: a runner ready at once is reported no sooner than not_before."""
    fake_backend.pending_polls = 0
    started = time.monotonic()
    events = await asyncio.wait_for(
        events_of(trigger(not_before=(datetime.now(UTC) + timedelta(seconds=0.6)).isoformat())), 10
    )
    assert [e.payload["status"] for e in events] == ["ready"]
    assert time.monotonic() - started >= 0.5
    assert fake_backend.calls == 1  # it dwelt without polling again


@pytest.mark.asyncio
async def test_a_failure_is_not_delayed_by_not_before(fake_backend: FakeBackend) -> None:
    fake_backend.pending_polls, fake_backend.final = 0, RunnerState.FAILED
    events = await asyncio.wait_for(
        events_of(trigger(not_before=(datetime.now(UTC) + timedelta(hours=1)).isoformat())), 10
    )
    assert [e.payload["status"] for e in events] == ["failed"]


@pytest.mark.asyncio
async def test_on_kill_records_the_end_once(
    fake_backend: FakeBackend, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp_path))
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", "none")
    killed = trigger(provision_ti=PROVISION_TI)
    await killed.on_kill()
    await killed.on_kill()  # the triggerer may cancel it twice: one entry
    assert fake_backend.teardowns == 2  # teardown is idempotent; the record is not repeated
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


@pytest.mark.asyncio
async def test_a_wait_logs_its_first_status_each_change_and_otherwise_every_five_minutes(
    fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each progress line costs Airflow's triggerer supervisor 1-2 ms (docs/benchmarks.md, a real
    triggerer at N = 200 / 1000): a wait logs its first status, each new status message (at most
    one line per 30 s) and otherwise one line per 5 min, not one every 30 s."""
    import types

    from airflow_provider_runners.triggers import readiness

    def next_status(handle: RunnerHandle) -> RunnerStatus:
        seen = fake_backend.polls[handle.resource_id] = fake_backend.polls.get(handle.resource_id, 0) + 1
        if seen > 200:
            return RunnerStatus(RunnerState.READY, "running", endpoints={"scheduler": SCHEDULER})
        if seen in (52, 53):  # two changes within 30 s: the second waits for the next line
            return RunnerStatus(RunnerState.PENDING, f"queued (position {54 - seen})")
        message = "queued (position 3)" if seen < 52 else "preparing"
        return RunnerStatus(RunnerState.PENDING, message)

    monkeypatch.setattr(fake_backend, "_next", next_status)
    ticks = itertools.count()
    # this module's clock only: each reading is 10 s later (the event loop keeps the real one)
    monkeypatch.setattr(readiness, "time", types.SimpleNamespace(monotonic=lambda: 10.0 * next(ticks)))
    lines: list[str] = []

    class Log:
        def info(self, msg: str, *args: Any) -> None:
            lines.append(msg % args)

    waiting = trigger()
    waiting._log = Log()  # type: ignore[assignment]
    events = await asyncio.wait_for(events_of(waiting), 30)
    assert [e.payload["status"] for e in events] == ["ready"]
    logged = [
        (line.split(": ", 1)[1].rsplit(" (", 1)[0], int(line.rsplit("(", 1)[1].split("s")[0]))
        for line in lines
    ]
    # poll k is read at 10 k s: the first status at once, no change for 300 s, the changes at
    # polls 52 (30 s or more since the last line) and 55 (poll 53's and 54's lines would come
    # within 30 s of it), then every 300 s (was a line after 30, 90, 210, 450 s, ...)
    assert logged == [
        ("queued (position 3)", 10),
        ("queued (position 3)", 310),
        ("queued (position 2)", 520),
        ("preparing", 550),
        ("preparing", 850),
        ("preparing", 1150),
        ("preparing", 1450),
        ("preparing", 1750),
    ]


def test_a_heartbeat_is_due_at_first_and_again_after_its_interval() -> None:
    from airflow_provider_runners.governance.heartbeat import Heartbeat

    now = [1000.0]

    class Registry:
        def heartbeat(self, key: str, _holder: Any, at: float) -> bool:
            return True

    pulse = Heartbeat("rl0", registry=Registry(), interval=30, clock=lambda: now[0])  # type: ignore[arg-type]
    assert pulse.due()
    assert pulse.maybe() is True
    now[0] += 29
    assert not pulse.due()
    assert pulse.maybe() is None
    now[0] += 1
    assert pulse.due()
    assert pulse.maybe() is True
