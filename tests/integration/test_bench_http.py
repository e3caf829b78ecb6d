"""The ``bench_http`` backend against a bench platform implementing docs/bench_http.openapi.yaml.

The server (tests/bench_http_server.py) is real HTTP on 127.0.0.1 (a free port); it checks each
request and each of its own responses against the OpenAPI document, and every test ends by
asserting it saw no contract violation. The client is the backend's real ``requests`` session.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_runners.backends.bench_http.backend import BenchHttpBackend
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
from tests.bench_http_server import BenchHttpServer, load_contract, validator_for

pytestmark = pytest.mark.integration
TOKEN = "bench-tok-SECRET-77e1"
BENCHES = {
    "imx8-a": {"tags": {"board": "imx8", "lab": "muc"}},
    "imx8-b": {"tags": {"board": "imx8", "lab": "ber"}},
    "stm32-a": {"tags": {"board": "stm32"}},
    "broken-a": {"tags": {"board": "broken"}, "healthy": False},
}


@pytest.fixture
def server() -> Iterator[BenchHttpServer]:
    srv = BenchHttpServer(BENCHES, token=TOKEN, ready_after_s=0.2).start()
    yield srv
    srv.stop()
    assert srv.violations == []
    live = [
        (r["id"], r["owner"])
        for r in srv.platform.reservations.values()
        if r["state"] in ("queued", "preparing", "ready")
    ]
    assert not live, f"test left reservations: {live}"


def make_backend(server: BenchHttpServer, token: str = TOKEN, **extra: Any) -> BenchHttpBackend:
    return BenchHttpBackend(
        ConnectionConfig(
            conn_id="runners_bench_http_test",
            conn_type="runners_bench_http",
            host="127.0.0.1",
            port=server.port,
            schema="http",
            password=token,
            extra={"base_path": "/api/v1", "timeout_s": 5, **extra},
        )
    )


@pytest.fixture
def backend(server: BenchHttpServer) -> BenchHttpBackend:
    return make_backend(server)


def request_for(task: str, options: dict[str, Any], ttl: str = "10m") -> ProvisionRequest:
    spec = RunnerSpec.parse(
        {"runner_class": "bench", "profile": "any", "tags": {"tenant": "hil"}, "ttl": ttl, "options": options}
    )
    lineage = Lineage("hil_dag", "run1", task)
    return ProvisionRequest.build(
        resolve_spec(spec, backend="bench_http"),
        lineage,
        lineage.attempt_token(1),
        "runners_bench_http_test",
        lineage.labels(),
    )


def wait_ready(backend: BenchHttpBackend, handle: RunnerHandle, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = backend.status(handle)
        if status.state is not RunnerState.PENDING or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_contract_document_is_valid_openapi_31_and_the_server_follows_it(server: BenchHttpServer) -> None:
    contract = load_contract()
    assert contract["openapi"].startswith("3.1")
    for name, schema in contract["components"]["schemas"].items():
        validator_for(contract, schema).check_schema({k: v for k, v in schema.items()})
        assert name
    url = f"http://127.0.0.1:{server.port}/api/v1"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{url}/benches", timeout=5).status_code == 401
    bad = requests.post(f"{url}/reservations", json={"owner": "x", "lineage": "l"}, headers=auth, timeout=5)
    assert bad.status_code == 400
    assert "ttl_s" in bad.json()["message"]
    created = requests.post(
        f"{url}/reservations",
        json={"bench_id": "stm32-a", "owner": "a/b", "lineage": "l1", "ttl_s": 60},
        headers=auth,
        timeout=5,
    )
    assert created.status_code == 201
    again = requests.post(
        f"{url}/reservations",
        json={"tags": {"board": "stm32"}, "owner": "a/b", "lineage": "l1", "ttl_s": 60},
        headers=auth,
        timeout=5,
    )
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]
    rid = created.json()["id"]
    assert requests.get(f"{url}/reservations/{rid}", headers=auth, timeout=5).json()["bench_id"] == "stm32-a"
    assert requests.delete(f"{url}/reservations/{rid}", headers=auth, timeout=5).json()["state"] == "released"
    assert requests.delete(f"{url}/reservations/{rid}", headers=auth, timeout=5).status_code == 200
    assert requests.delete(f"{url}/reservations/nope", headers=auth, timeout=5).status_code == 404
    assert server.violations == []


def test_reserve_by_tags_gets_the_matching_bench_and_releases(
    backend: BenchHttpBackend, server: BenchHttpServer
) -> None:
    handle = backend.create(request_for("t", {"tags": {"board": "imx8", "lab": "ber"}}))
    status = wait_ready(backend, handle)
    assert status.state is RunnerState.READY, status.message
    assert status.details["bench"] == "imx8-b"
    assert status.details["bench_tags"] == "board=imx8 lab=ber"
    ready = handle.evolve(details=dict(status.details))
    facts = backend.describe(ready)
    assert facts["bench"] == "imx8-b"
    assert facts["reservation"] == handle.details["reservation"]
    assert facts["held_by"] == backend.owner_for(handle.lineage_key)
    result = backend.teardown(ready)
    assert result.existed
    assert result.details["release_confirmed"]
    assert result.details["final_state"] == "released"
    assert result.details["hold_s"] >= 0
    again = backend.teardown(ready)  # release twice: fine
    assert again.details["release_confirmed"] is True
    assert backend.status(ready).state is RunnerState.GONE


def test_second_waits_for_a_named_bench_and_gets_it_after_release(backend: BenchHttpBackend) -> None:
    first = backend.create(request_for("first", {"bench_id": "stm32-a"}))
    assert wait_ready(backend, first).state is RunnerState.READY
    second = backend.create(request_for("second", {"tags": {"board": "stm32"}}))
    waiting = backend.status(second)
    assert waiting.state is RunnerState.PENDING
    assert "queued at position 1" in waiting.message
    assert f"stm32-a held by {backend.owner_for(first.lineage_key)}" in waiting.message  # what a timeout says
    backend.teardown(first)
    got = wait_ready(backend, second)
    assert got.state is RunnerState.READY
    assert got.details["bench"] == "stm32-a"
    assert got.details["waited_s"] > 0
    backend.teardown(second)


def test_no_match_and_busy_without_queue_are_clear_errors(
    backend: BenchHttpBackend, server: BenchHttpServer
) -> None:
    with pytest.raises(ProvisionError, match="no bench matches filters board=riscv"):
        backend.create(request_for("t", {"tags": {"board": "riscv"}}))
    holder = backend.create(request_for("h", {"bench_id": "stm32-a"}))
    with pytest.raises(ProvisionError, match=f"stm32-a held by {backend.owner_for(holder.lineage_key)}"):
        backend.create(request_for("q", {"bench_id": "stm32-a", "queue": False}))
    assert len(server.platform.reservations) == 1  # neither error left a reservation
    backend.teardown(holder)


def test_retry_adopts_by_lineage_instead_of_queueing_again(
    backend: BenchHttpBackend, server: BenchHttpServer
) -> None:
    holder = backend.create(request_for("h", {"bench_id": "stm32-a"}))
    request = request_for("retried", {"bench_id": "stm32-a"})
    first, how = acquire(backend, request)
    assert how == "created"
    second, how = acquire(make_backend(server), request)
    assert how == "adopted"
    assert second.details["reservation"] == first.details["reservation"]
    assert sum(1 for r in server.platform.reservations.values() if r["lineage"] == request.lineage.key) == 1
    backend.teardown(holder)
    backend.teardown(second)


def test_platform_readiness_failure_and_health_command(backend: BenchHttpBackend) -> None:
    broken = backend.create(request_for("b", {"tags": {"board": "broken"}}))
    status = wait_ready(backend, broken)
    assert status.state is RunnerState.FAILED
    assert "failed its readiness check" in status.message
    backend.teardown(broken)
    unhealthy = backend.create(
        request_for("u", {"bench_id": "imx8-a", "health_command": "echo 'no console'; exit 2"})
    )
    status = wait_ready(backend, unhealthy)
    assert status.state is RunnerState.FAILED
    assert "exit 2: no console" in status.message
    backend.teardown(unhealthy)


def test_ttl_backstop_is_enforced_by_the_platform(backend: BenchHttpBackend, server: BenchHttpServer) -> None:
    handle = backend.create(request_for("t", {"bench_id": "imx8-a"}, ttl="5s"))
    assert wait_ready(backend, handle).state is RunnerState.READY
    server.platform.reservations[handle.details["reservation"]]["_expires"] = time.time()  # fast-forward
    assert backend.status(handle).state is RunnerState.GONE
    assert backend.teardown(handle).details["final_state"] == "expired"


def test_transient_errors_are_retried_and_an_outage_fails_clearly(
    backend: BenchHttpBackend, server: BenchHttpServer
) -> None:
    server.fail_next = [503, 502]
    handle = backend.create(request_for("t", {"bench_id": "imx8-a"}))  # two retries, then 201
    assert server.fail_next == []
    impatient = make_backend(server, platform_down_timeout_s=0.2, retries=0)
    server.fail_next = [503] * 3
    assert impatient.status(handle).state is RunnerState.PENDING
    time.sleep(0.3)
    failed = impatient.status(handle)
    assert failed.state is RunnerState.FAILED
    assert "platform unreachable" in failed.message
    server.fail_next = []
    backend.teardown(handle)


def test_wrong_token_is_refused_and_never_shown(
    server: BenchHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProvisionError, match="refused the token") as err:
        make_backend(server, token="wrong-SECRET-token").create(request_for("t", {"bench_id": "imx8-a"}))
    assert "wrong-SECRET-token" not in str(err.value)
    assert "wrong-SECRET-token" not in caplog.text
    handle = make_backend(server).create(request_for("t2", {"bench_id": "imx8-a"}))
    assert TOKEN not in handle.model_dump_json()
    make_backend(server).teardown(handle)


def test_run_command_exports_the_bench_and_refuses_after_release(backend: BenchHttpBackend) -> None:
    handle = backend.create(request_for("t", {"bench_id": "imx8-a"}))
    ready = handle.evolve(details=dict(wait_ready(backend, handle).details))
    lines: list[str] = []
    result = backend.run_command(
        ready,
        CommandRequest(command='echo "on $BENCH_ID via $BENCH_API"; exit 3', name="hil"),
        lines.append,
        threading.Event(),
    )
    assert result.exit_code == 3
    assert lines == [f"on imx8-a via {backend.base_url}"]
    backend.teardown(ready)
    with pytest.raises(RunnerCommandError, match="not ready any more"):
        backend.run_command(
            ready, CommandRequest(command="true", name="hil"), lines.append, threading.Event()
        )


def test_status_of_many_waiters_is_one_request(backend: BenchHttpBackend, server: BenchHttpServer) -> None:
    handles = [backend.create(request_for(f"t{i}", {"tags": {"board": "imx8"}})) for i in range(4)]
    server.calls.clear()
    statuses = backend.status_many(handles)
    assert len(statuses) == 4
    assert server.calls["GET /api/v1/reservations"] == 1
    assert server.calls["GET /api/v1/benches"] == 1  # who holds what, for the queued ones' messages
    assert sum(server.calls.values()) == 2
    for handle in handles:
        backend.teardown(handle)
