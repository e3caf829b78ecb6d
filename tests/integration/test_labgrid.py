"""The ``labgrid`` backend against a real ``labgrid-coordinator`` process on 127.0.0.1 (free port).

The coordinator is labgrid's own (started by ``airflow_provider_runners.backends.labgrid.coordinator``
with labgrid's timings shortened: reservations expire 4 s after their last poll instead of 60 s,
and the coordinator's expiry/scheduling loop runs every 0.5 s instead of 15 s). Places are
created per test with tags unique to the test, through the coordinator's gRPC API.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.labgrid.backend import LabgridBackend
from airflow_provider_runners.backends.labgrid.client import CoordinatorClient
from airflow_provider_runners.backends.labgrid.coordinator import LocalCoordinator
from airflow_provider_runners.core.backend import (
    CommandRequest,
    ConnectionConfig,
    ProvisionRequest,
    RunnerState,
)
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import ProvisionError, RunnerCommandError

pytestmark = pytest.mark.integration

RESERVATION_TIMEOUT_S = 4.0


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCoordinator]:
    coord = LocalCoordinator(
        tmp_path_factory.mktemp("labgrid"),
        places={},
        reservation_timeout=RESERVATION_TIMEOUT_S,
        schedule_interval=0.5,
    ).start()
    yield coord
    coord.stop()
    assert coord.proc is None


@pytest.fixture
def client(coordinator: LocalCoordinator) -> Iterator[CoordinatorClient]:
    c = CoordinatorClient(coordinator.address)
    yield c
    c.close()


def make_backend(address: str, **extra: Any) -> LabgridBackend:
    host, port = address.rsplit(":", 1)
    return LabgridBackend(
        ConnectionConfig(
            conn_id="runners_labgrid_test",
            conn_type="runners_labgrid",
            host=host,
            port=int(port),
            extra={"keepalive_s": 0.5, **extra},
        )
    )


@pytest.fixture
def backend(coordinator: LocalCoordinator) -> LabgridBackend:
    return make_backend(coordinator.address)


@pytest.fixture
def board(client: CoordinatorClient) -> Iterator[str]:
    """A board type unique to this test; places made with :func:`add_places` are deleted after it."""
    name = "b" + uuid.uuid4().hex[:8]
    yield name
    leftovers = [p for p in client.places() if p.tags.get("board") == name]
    held = [(p.name, p.acquired) for p in leftovers if p.acquired]
    reserved = [
        r.token for r in client.reservations() if r.filters.get("board") == name and r.state != "expired"
    ]
    for token in reserved:
        client.cancel(token)
    for place in leftovers:
        if place.acquired:
            client.release(place.name, place.acquired)
        client.delete_place(place.name)
    assert not held, f"test left benches held: {held}"
    assert not reserved, f"test left reservations: {reserved}"


def add_places(client: CoordinatorClient, board: str, *names: str, **tags: str) -> list[str]:
    full = [f"{board}-{n}" for n in names]
    for name in full:
        client.add_place(name, {"board": board, **tags})
    return full


def request_for(task: str, options: dict[str, Any], ttl: str = "10m", run: str = "run1") -> ProvisionRequest:
    spec = RunnerSpec.parse(
        {"runner_class": "bench", "profile": "any", "tags": {"tenant": "hil"}, "ttl": ttl, "options": options}
    )
    lineage = Lineage("hil_dag", run, task)
    return ProvisionRequest.build(
        resolve_spec(spec, backend="labgrid"),
        lineage,
        lineage.attempt_token(1),
        "runners_labgrid_test",
        lineage.labels(),
    )


def wait_ready(backend: LabgridBackend, handle: RunnerHandle, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.status(handle)
        if status.state is not RunnerState.PENDING:
            return status
        time.sleep(0.2)
    return status


def test_reserve_by_tags_gets_the_matching_bench(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    add_places(client, board, "slow", speed="slow")
    (fast,) = add_places(client, board, "fast", speed="fast")
    handle = backend.create(request_for("t1", {"tags": {"board": board, "speed": "fast"}}))
    status = wait_ready(backend, handle)
    assert status.state is RunnerState.READY, status.message
    assert status.details["place"] == fast
    place = next(p for p in client.places() if p.name == fast)
    assert place.acquired == backend.owner_for(handle.lineage_key)
    assert f"owner={place.acquired}" in place.comment  # the lease marker: findable, with expiry
    ready = handle.evolve(details=dict(status.details))
    facts = backend.describe(ready)
    assert facts["bench"] == fast
    assert facts["place_tags"] == {"board": board, "speed": "fast"}
    assert facts["reservation"] == handle.details["reservation"]
    assert facts["held_by"] == place.acquired
    result = backend.teardown(ready)
    assert result.existed
    assert result.details["release_confirmed"] is True
    assert result.details["released_places"] == fast
    assert result.details["hold_s"] >= 0
    place = next(p for p in client.places() if p.name == fast)
    assert place.acquired is None
    assert "runners-lease" not in place.comment


def test_reserve_by_place_name(backend: LabgridBackend, client: CoordinatorClient, board: str) -> None:
    _first, second = add_places(client, board, "x", "y")
    handle = backend.create(request_for("t1", {"place": second}))
    status = wait_ready(backend, handle)
    assert status.state is RunnerState.READY
    assert status.details["place"] == second
    backend.teardown(handle.evolve(details=dict(status.details)))


def test_no_bench_matches_names_the_filters_and_creates_nothing(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    add_places(client, board, "a")
    before = client.reservations()
    with pytest.raises(ProvisionError) as err:
        backend.create(request_for("t1", {"tags": {"board": board, "flash": "emmc"}}))
    message = str(err.value)
    assert f"board={board} flash=emmc" in message
    assert f"{board}-a (board={board}, free)" in message  # what exists, to fix the filter
    assert client.reservations() == before


def test_queue_false_fails_at_once_naming_the_holder(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    (place,) = add_places(client, board, "a")
    first = backend.create(request_for("holder", {"tags": {"board": board}}))
    assert wait_ready(backend, first).state is RunnerState.READY
    with pytest.raises(ProvisionError, match=f"{place} held by {backend.owner_for(first.lineage_key)}"):
        backend.create(request_for("impatient", {"tags": {"board": board}, "queue": False}))
    backend.teardown(first)


def test_second_waits_and_gets_the_bench_after_release(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    (place,) = add_places(client, board, "only")
    first = backend.create(request_for("first", {"tags": {"board": board}}))
    ready_first = wait_ready(backend, first)
    assert ready_first.state is RunnerState.READY
    second = backend.create(request_for("second", {"tags": {"board": board}}))
    waiting = backend.status(second)
    assert waiting.state is RunnerState.PENDING
    # The message a timeout would carry: the matching bench and who holds it.
    assert f"{place} held by {backend.owner_for(first.lineage_key)}" in waiting.message
    backend.teardown(first.evolve(details=dict(ready_first.details)))
    got = wait_ready(backend, second, timeout=5)
    assert got.state is RunnerState.READY
    assert got.details["place"] == place
    assert backend.owner_for(first.lineage_key) in str(got.details["waited_behind"])
    assert got.details["waited_s"] > 0
    backend.teardown(second)


def test_reservation_kept_alive_across_a_long_wait(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    """The waiter polls every keepalive_s (0.5 s) and outlives 3x the (shortened) expiry; an
    unpolled reservation made the same way expires — so the expiry is real and the poll is what saves it."""
    add_places(client, board, "only")
    holder = backend.create(request_for("holder", {"tags": {"board": board}}))
    assert wait_ready(backend, holder).state is RunnerState.READY
    waiter = backend.create(request_for("waiter", {"tags": {"board": board}}))
    with client.owner_session("someone/else") as session:
        unpolled = session.create_reservation({"board": board})
    deadline = time.monotonic() + 3 * RESERVATION_TIMEOUT_S
    while time.monotonic() < deadline:
        assert backend.status(waiter).state is RunnerState.PENDING
        time.sleep(0.3)
    states = {r.token: r.state for r in client.reservations()}
    assert states.get(waiter.details["reservation"]) == "waiting"
    assert states.get(unpolled.token) in (None, "expired")  # gone: it was not polled
    backend.teardown(holder)
    assert wait_ready(backend, waiter, timeout=5).state is RunnerState.READY
    backend.teardown(waiter)


def test_retry_adopts_its_reservation_instead_of_queueing_again(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    add_places(client, board, "only")
    holder = backend.create(request_for("holder", {"tags": {"board": board}}))
    assert wait_ready(backend, holder).state is RunnerState.READY
    request = request_for("retried", {"tags": {"board": board}})
    first_try, how = acquire(backend, request)
    assert how == "created"
    # Try 2 of the same task instance (a new process: a new backend object).
    retry = ProvisionRequest.build(
        request.resolved, request.lineage, request.lineage.attempt_token(2), request.conn_id, request.labels
    )
    second_try, how = acquire(make_backend(backend.address), retry)
    assert how == "adopted"
    assert second_try.details["reservation"] == first_try.details["reservation"]
    mine = [r for r in client.reservations() if r.owner == backend.owner_for(request.lineage.key)]
    assert [r.token for r in mine] == [first_try.details["reservation"]]
    backend.teardown(holder)
    assert wait_ready(backend, second_try, timeout=5).state is RunnerState.READY
    # ...and a retry after it acquired the bench adopts the held bench too.
    third, how = acquire(make_backend(backend.address), retry)
    assert how == "adopted"
    assert backend.status(third).state is RunnerState.READY
    backend.teardown(third)


def test_release_twice_and_teardown_of_a_never_allocated_reservation(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    add_places(client, board, "only")
    handle = backend.create(request_for("t", {"tags": {"board": board}}))
    ready = handle.evolve(details=dict(wait_ready(backend, handle).details))
    assert backend.teardown(ready).existed is True
    again = backend.teardown(ready)
    assert again.existed is False
    assert again.details["release_confirmed"] is True
    assert backend.status(ready).state is RunnerState.GONE
    holder = backend.create(request_for("h", {"tags": {"board": board}}))
    assert wait_ready(backend, holder).state is RunnerState.READY
    queued = backend.create(request_for("q", {"tags": {"board": board}}))
    result = backend.teardown(queued)  # only a waiting reservation: cancelled, nothing released
    assert result.existed
    assert result.details["cancelled_reservations"] == queued.details["reservation"]
    assert result.details["released_places"] == ""
    backend.teardown(holder)


def test_teardown_never_releases_someone_elses_bench(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    (place,) = add_places(client, board, "only")
    with client.owner_session("lab/alice") as session:
        res = session.create_reservation({"board": board})
        session.acquire(place)
    handle = backend.create(request_for("t", {"tags": {"board": board}}))
    backend.teardown(handle)
    assert next(p for p in client.places() if p.name == place).acquired == "lab/alice"
    client.cancel(res.token)
    client.release(place, "lab/alice")


def test_health_command_decides_readiness(
    backend: LabgridBackend, client: CoordinatorClient, board: str, tmp_path: Path
) -> None:
    (place,) = add_places(client, board, "only")
    seen = tmp_path / "env"
    ok = backend.create(
        request_for(
            "ok", {"tags": {"board": board}, "health_command": f'echo "$LG_PLACE $LG_COORDINATOR" > {seen}'}
        )
    )
    status = wait_ready(backend, ok)
    assert status.state is RunnerState.READY
    assert status.details["readiness_checked"] == "health_command"
    assert seen.read_text().split() == [place, backend.address]
    backend.teardown(ok)
    bad = backend.create(
        request_for("bad", {"tags": {"board": board}, "health_command": "echo 'no uart'; exit 3"})
    )
    status = wait_ready(backend, bad)
    assert status.state is RunnerState.FAILED
    assert "health command failed: exit 3: no uart" in status.message
    backend.teardown(bad)


def test_run_command_exports_the_place_streams_and_maps_exit_codes(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    (place,) = add_places(client, board, "only")
    handle = backend.create(request_for("t", {"tags": {"board": board}}))
    ready = handle.evolve(details=dict(wait_ready(backend, handle).details))
    lines: list[str] = []
    # labgrid's own client, run by the HIL command, sees the bench held by this runner.
    script = 'labgrid-client -p "$LG_PLACE" show | grep "acquired:"; echo "place=$LG_PLACE"; exit 4'
    result = backend.run_command(
        ready, CommandRequest(command=script, name="hil-1", timeout=60), lines.append, threading.Event()
    )
    assert result.exit_code == 4
    assert result.details["bench"] == place
    assert f"acquired: {backend.owner_for(handle.lineage_key)}" in "\n".join(lines)
    assert f"place={place}" in lines
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    stopped = backend.run_command(
        ready, CommandRequest(command="sleep 30 & sleep 30; wait", name="hil-2"), lines.append, cancel
    )
    assert stopped.cancelled
    assert stopped.exit_code is None
    assert time.monotonic() - started < 10
    backend.teardown(ready)
    with pytest.raises(RunnerCommandError, match="not held by"):
        backend.run_command(
            ready, CommandRequest(command="true", name="hil-3"), lines.append, threading.Event()
        )


def test_list_managed_reports_leases_for_the_reaper(
    backend: LabgridBackend, client: CoordinatorClient, board: str
) -> None:
    add_places(client, board, "only")
    handle = backend.create(request_for("t", {"tags": {"board": board}}, ttl="60s"))
    assert wait_ready(backend, handle).state is RunnerState.READY
    managed = {h.resource_id: h for h in backend.list_managed()}
    assert handle.resource_id in managed
    # The expiry comes from the lease marker on the place: the reaper can act on it.
    assert abs((managed[handle.resource_id].expires_at - handle.expires_at).total_seconds()) < 1
    backend.teardown(handle)
    assert handle.resource_id not in {h.resource_id for h in backend.list_managed()}


def test_coordinator_restart_mid_wait_recovers_or_fails_clearly(tmp_path: Path) -> None:
    coord = LocalCoordinator(
        tmp_path,
        places={"rs-a": {"tags": {"board": "restart"}}},
        reservation_timeout=RESERVATION_TIMEOUT_S,
        schedule_interval=0.5,
    ).start()
    try:
        backend = make_backend(coord.address)
        client = CoordinatorClient(coord.address)
        with client.owner_session("lab/bob") as session:  # someone else holds the only bench
            session.create_reservation({"board": "restart"})
            session.acquire("rs-a")
        waiter = backend.create(request_for("waiter", {"tags": {"board": "restart"}}))
        assert backend.status(waiter).state is RunnerState.PENDING
        coord.kill()  # crash: reservations and acquisitions are lost, places stay (places.yaml)
        down = backend.status(waiter)
        assert down.state is RunnerState.PENDING
        assert "coordinator unreachable" in down.message
        coord.start()
        status = wait_ready(backend, waiter, timeout=15)  # re-queued, and the bench is free now
        assert status.state is RunnerState.READY
        assert status.details["place"] == "rs-a"
        assert status.details["reservation"] != waiter.details["reservation"]
        backend.teardown(waiter)
        assert not client.reservations()
        # Down for longer than coordinator_down_timeout_s: the wait fails with a clear message.
        impatient = make_backend(coord.address, coordinator_down_timeout_s=0.5)
        queued = impatient.create(request_for("w2", {"tags": {"board": "restart"}}))
        coord.kill()
        impatient.status(queued)
        time.sleep(0.7)
        failed = impatient.status(queued)
        assert failed.state is RunnerState.FAILED
        assert "coordinator unreachable for" in failed.message
        assert coord.address in failed.message
        # A waiter that never saw the outage (another triggerer) reports the loss instead of guessing.
        coord.start()
        fresh = make_backend(coord.address)
        gone = fresh.status(queued)
        assert gone.state is RunnerState.GONE
        assert "coordinator restarted" in gone.message
        client.close()
    finally:
        coord.stop()


def test_test_connection_asks_the_coordinator_once(
    backend: LabgridBackend, client: CoordinatorClient
) -> None:
    ok, message = backend.check_connection()
    assert ok, message
    assert message.startswith(
        f"labgrid Connection 'runners_labgrid_test': coordinator {backend.address} reachable; "
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    ok, message = make_backend(closed, rpc_timeout_s=2).check_connection()
    assert not ok
    assert f"coordinator {closed}" in message
