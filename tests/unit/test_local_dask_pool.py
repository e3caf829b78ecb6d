"""The local_dask warm pool's parts that need no cluster: its Connection extras, the atomic claim,
the pool key, and the FIFO readiness signal (real FIFOs, real processes).
The pool with real clusters: tests/integration/test_local_dask_pool.py."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
from airflow_provider_runners.backends.local_dask.daemon import signal_change, signal_path, try_claim
from airflow_provider_runners.backends.local_dask.pool import pool_config, pool_key
from airflow_provider_runners.core.backend import ConnectionConfig, WaitsForChange
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.exceptions import ConnectionConfigError


def _backend(state: Path, **extra: object) -> LocalDaskBackend:
    return LocalDaskBackend(
        ConnectionConfig("pool", "runners_local_dask", extra={"state_dir": str(state), **extra})
    )


def test_the_pool_is_off_by_default(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "s")
    assert (backend.pool_size, backend.pool_idle_s) == (0, 600.0)
    assert _backend(tmp_path / "s", pool_size=2, pool_idle="30").pool_size == 2


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("pool_size", -1, "an integer from 0"),
        ("pool_size", 17, "to 16"),
        ("pool_size", "two", "an integer from 0"),
        ("pool_size", 1.5, "an integer from 0"),
        ("pool_size", True, "an integer from 0"),
        ("pool_idle", 0, "seconds from 1 to 86400"),
        ("pool_idle", "soon", "seconds from 1 to 86400"),
    ],
)
def test_a_bad_pool_extra_names_connection_field_value_and_what_is_allowed(
    tmp_path: Path, field: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConnectionConfigError) as err:
        pool_config("my_dask", {field: value})
    message = str(err.value)
    for part in ("'my_dask'", f"'{field}'", repr(value), allowed):
        assert part in message
    with pytest.raises(ConnectionConfigError):
        _backend(tmp_path / "never", **{field: value})
    assert not (tmp_path / "never").exists()  # nothing created


def test_the_pool_key_separates_shapes_and_holds_no_secret() -> None:
    shape = {"workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB", "dashboard": False}
    key = pool_key("c", "dev", "Small", {**shape, "idle_timeout_s": 5})
    assert key == pool_key("c", "dev", "Small", {**shape, "idle_timeout_s": None})  # not part of the shape
    assert key.startswith("small-")
    assert key != pool_key("c", "dev", "Small", {**shape, "workers": 3})
    assert key != pool_key("c", "prod", "Small", shape)
    assert key != pool_key("other", "dev", "Small", shape)


def _race(state_dir: str, rid: str, who: str, start: object, out: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    out.put((who, try_claim(Path(state_dir), rid, who)))  # type: ignore[attr-defined]


def test_exactly_one_of_many_processes_claims_a_member(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(str(tmp_path), "ld-pool-x", f"p{i}", start, out)) for i in range(6)
    ]
    for proc in procs:
        proc.start()
    start.set()
    results = dict(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(30)
    winners = [who for who, won in results.items() if won]
    assert len(winners) == 1
    assert (tmp_path / "ld-pool-x.claim").read_text() == winners[0]
    assert not try_claim(tmp_path, "ld-pool-x", "later")  # never handed out again


def _handle(rid: str) -> RunnerHandle:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return RunnerHandle(
        backend="local_dask",
        runner_class="dask_cluster",
        resource_id=rid,
        conn_id="pool",
        lineage_key="k",
        attempt_token="t",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        environment="dev",
        profile="small",
    )


def _prepared(tmp_path: Path, rid: str) -> tuple[LocalDaskBackend, RunnerHandle, Path]:
    import os

    backend = _backend(tmp_path)
    state = tmp_path / f"{rid}.json"
    state.write_text("{}")
    os.mkfifo(signal_path(state))
    handle = _handle(rid)
    backend.status(handle)  # what the waiter last saw
    return backend, handle, state


def test_wait_for_change_wakes_on_the_daemons_signal_not_at_its_timeout(tmp_path: Path) -> None:
    backend, handle, state = _prepared(tmp_path, "ld-a")
    assert isinstance(backend, WaitsForChange)
    sent: list[float] = []

    def daemon() -> None:
        time.sleep(0.3)
        sent.append(time.monotonic())
        signal_change(state)

    thread = threading.Thread(target=daemon)
    thread.start()
    assert backend.wait_for_change([handle], timeout=10.0) is True
    woke = time.monotonic()
    thread.join()
    # woken by the signal, long before the timeout (the latency itself: benchmarks/lifecycle_warm.py)
    assert woke - sent[0] < 1.0


def test_wait_for_change_times_out_without_a_signal(tmp_path: Path) -> None:
    backend, handle, _state = _prepared(tmp_path, "ld-b")
    started = time.monotonic()
    assert backend.wait_for_change([handle], timeout=0.2) is False
    assert time.monotonic() - started >= 0.19


def test_a_state_change_before_the_wait_is_not_lost(tmp_path: Path) -> None:
    backend, handle, state = _prepared(tmp_path, "ld-c")
    time.sleep(0.01)
    state.write_text('{"status": "running"}')  # the daemon wrote (and signalled) before we waited
    signal_change(state)  # nobody was reading: dropped
    started = time.monotonic()
    assert backend.wait_for_change([handle], timeout=10.0) is True
    assert time.monotonic() - started < 1.0


def test_signalling_without_a_waiter_or_a_fifo_is_harmless(tmp_path: Path) -> None:
    signal_change(tmp_path / "none.json")  # no FIFO
    _, _, state = _prepared(tmp_path, "ld-d")
    signal_change(state)  # FIFO but no reader: ENXIO, ignored


def _member(backend: LocalDaskBackend, rid: str, key: str, pid: int, status: str = "running") -> None:
    """A pool member's state file whose 'daemon' is ``pid`` (a real process of this test)."""
    import psutil

    from airflow_provider_runners.backends.local_dask.daemon import write_state

    backend.state_dir.mkdir(parents=True, exist_ok=True)
    handle = _handle(rid).evolve(lineage_key=f"pool:{key}", tags={"managed-by": "airflow-provider-runners"})
    write_state(
        backend._state_path(rid),
        {
            "managed_by": "airflow-provider-runners",
            "resource_id": rid,
            "lineage_key": f"pool:{key}",
            "status": status,
            "expires_at": handle.expires_at.isoformat(),
            "settings": {"workers": 1, "idle_timeout_s": None},
            "handle": handle.to_xcom(),
            "pool": {"key": key, "idle_s": 600},
            "pid": pid,
            "pid_create_time": psutil.Process(pid).create_time(),
            "scheduler_address": "tcp://127.0.0.1:1",
        },
    )


def test_claim_takes_a_running_member_once_and_hands_it_the_provisions_identity(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from airflow_provider_runners.backends.local_dask import pool
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec

    backend = _backend(tmp_path / "s", pool_size=1)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _member(backend, "ld-pool-starting", "k", alive.pid, status="starting")  # not ready: skipped
        _member(backend, "ld-pool-dead", "k", os.getpid())
        (backend.state_dir / "ld-pool-dead.json").write_text(
            (backend.state_dir / "ld-pool-dead.json")
            .read_text()
            .replace('"pid_create_time": ', '"pid_create_time": 1')
        )  # another process's start time: not our daemon
        _member(backend, "ld-pool-other-key", "other", alive.pid)
        _member(backend, "ld-pool-good", "k", alive.pid)
        spec = resolve_spec(
            RunnerSpec.parse(
                {"runner_class": "dask_cluster", "profile": "small", "ttl": "1h", "tags": {"tenant": "qa"}}
            )
        )
        lineage = Lineage("d", "r1", "provision")
        request = ProvisionRequest.build(spec, lineage, lineage.attempt_token(1), "pool", {})
        template = _handle("ld-cold").evolve(lineage_key=lineage.key, attempt_token=request.attempt_token)
        claimed = pool.claim(backend, request, "k", {"idle_timeout_s": 30.0}, template)
        assert claimed is not None
        assert claimed.resource_id == "ld-pool-good"
        assert claimed.lineage_key == lineage.key
        assert claimed.endpoints["scheduler"] == "tcp://127.0.0.1:1"
        state = backend._read("ld-pool-good")
        assert state is not None
        assert state["lineage_key"] == lineage.key
        assert state["settings"]["idle_timeout_s"] == 30.0
        assert state["pool"]["claimed_by"] == request.attempt_token
        assert state["expires_at"] == template.expires_at.isoformat()
        assert backend.find(lineage.key) is not None
        assert backend._claimed_by(request.attempt_token)["resource_id"] == "ld-pool-good"  # type: ignore[index]
        # nothing else is free: the next provision gets None (and would start its own cluster)
        other = Lineage("d", "r2", "provision")
        request2 = ProvisionRequest.build(spec, other, other.attempt_token(1), "pool", {})
        assert pool.claim(backend, request2, "k", {}, template) is None
        # the pool's members, claimed or not, are all listed for the reaper
        listed = {h.resource_id for h in backend.list_managed()}
        assert {"ld-pool-good", "ld-pool-starting", "ld-pool-other-key"} <= listed
    finally:
        alive.kill()
        alive.wait()


class _SignallingSource:
    """A status source whose runner signals readiness (the WaitsForChange capability)."""

    poll_interval = 30.0  # a poller that slept this long would time the test out

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.waits = 0

    def batch_key(self) -> str:
        return f"signalling:{id(self)}"

    def status_many(self, handles: list[RunnerHandle]) -> dict[str, object]:
        from airflow_provider_runners.core.backend import RunnerState, RunnerStatus

        state = RunnerState.READY if self.ready.is_set() else RunnerState.PENDING
        return {h.resource_id: RunnerStatus(state) for h in handles}

    def wait_for_change(self, handles: list[RunnerHandle], timeout: float) -> bool:
        self.waits += 1
        return self.ready.wait(timeout)


@pytest.mark.asyncio
async def test_the_shared_poller_reacts_to_the_signal_not_its_interval() -> None:
    import asyncio

    from airflow_provider_runners.core.backend import RunnerState
    from airflow_provider_runners.triggers.poller import SharedStatusPoller

    source = _SignallingSource()
    poller = SharedStatusPoller.for_backend(source)
    handle = _handle("ld-sig")
    assert (await poller.next_status(handle)).state is RunnerState.PENDING
    threading.Timer(0.2, source.ready.set).start()
    status = await asyncio.wait_for(poller.next_status(handle), timeout=10)  # not the 30 s interval
    assert status.state is RunnerState.READY
    assert source.waits >= 1


def test_a_daemon_stays_alive_to_its_backend_when_the_wall_clock_moves() -> None:
    """The liveness check compares the start in ticks since boot, not the wall-clock create time
    (which moves with the clock: psutil adds the kernel's boot time, re-read on every call)."""
    import subprocess
    import sys

    import psutil

    from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend, start_ticks

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ticks = start_ticks(proc.pid)
        assert ticks is not None
        wall = psutil.Process(proc.pid).create_time()
        stepped = {"pid": proc.pid, "pid_create_time": wall - 1.0, "pid_start_ticks": ticks}
        assert LocalDaskBackend._alive(stepped)  # the clock moved 1 s since it was recorded
        assert not LocalDaskBackend._alive({**stepped, "pid_start_ticks": ticks + 1})  # another process
        older = {"pid": proc.pid, "pid_create_time": wall}  # recorded by an older version
        assert LocalDaskBackend._alive(older)
    finally:
        proc.kill()
        proc.wait()
    assert not LocalDaskBackend._alive(stepped)
    assert start_ticks(proc.pid) is None
