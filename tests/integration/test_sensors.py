"""The sensors through real dag.test() runs and their triggers against real platforms: a real
labgrid-coordinator, the HTTP bench server (tests/bench_http_server.py), real local_dask
runners and a moto server SQS queue (real boto3 through the Amazon provider's SqsHook)."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_runners.backends.labgrid.client import CoordinatorClient
from airflow_provider_runners.backends.labgrid.coordinator import LocalCoordinator
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from airflow_provider_runners.triggers.sensors import (
    BenchFreeTrigger,
    QueueDepthTrigger,
    RunnerAvailableTrigger,
)
from tests.bench_http_server import BenchHttpServer
from tests.integration.conftest import chain_for, live_daemons, run_dag, ti_states, wait_for, xcoms
from tests.moto_aws import AWS_CONN_ID, moto_server

pytestmark = pytest.mark.integration
os.environ["RUNNERS_QUEUE_AWS_CONN_ID"] = AWS_CONN_ID  # read when the DagBag parses dags/queue_burst.py
LABGRID_CONN = "runners_gate_labgrid"
HTTP_CONN = "runners_gate_http"
TOKEN = "gate-tok-SECRET-3c9d"


def values(dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
    return {(t, k): v for t, k, v in xcoms(dag_id, run_id)}


def run_trigger(trigger: Any) -> list[dict[str, Any]]:
    """Run a trigger to its first event in a fresh event loop (as a triggerer would)."""

    async def first() -> list[dict[str, Any]]:
        async for event in trigger.run():
            return [event.payload]
        return []

    return asyncio.run(first())


def rebuilt(trigger: Any) -> Any:
    """The trigger as the triggerer rebuilds it from ``serialize()``."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (classpath, kwargs)
    return again


# -- benches: labgrid --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCoordinator]:
    coord = LocalCoordinator(
        tmp_path_factory.mktemp("gate-labgrid"),
        places={"imx8-a": {"tags": {"board": "imx8"}}},
        schedule_interval=0.5,
    ).start()
    yield coord
    coord.stop()


@pytest.fixture
def labgrid(coordinator: LocalCoordinator, monkeypatch: pytest.MonkeyPatch) -> Iterator[CoordinatorClient]:
    conn = {
        "conn_type": "runners_labgrid",
        "host": "127.0.0.1",
        "port": coordinator.port,
        "extra": {"poll_interval_s": 0.2, "keepalive_s": 1},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{LABGRID_CONN.upper()}", json.dumps(conn))
    SharedStatusPoller._pollers.clear()
    client = CoordinatorClient(coordinator.address)
    yield client
    held = [(p.name, p.acquired) for p in client.places() if p.acquired]
    live = [(r.owner, r.state) for r in client.reservations() if r.state != "expired"]
    client.close()
    assert not held, f"benches left held: {held}"
    assert not live, f"reservations left: {live}"


def test_bench_gate_waits_until_the_bench_is_free_and_reserves_nothing(
    dagbag: Any, labgrid: CoordinatorClient
) -> None:
    with labgrid.owner_session("lab/alice") as session:
        reservation = session.create_reservation({"board": "imx8"})
        session.acquire("imx8-a")
    labgrid.cancel(reservation.token)
    seen: list[str] = []  # reservations of airflow owners while alice holds the bench
    released_at: list[float] = []

    def alice_works_then_releases() -> None:
        until = time.monotonic() + 4.0
        while time.monotonic() < until:
            seen.extend(r.owner for r in labgrid.reservations() if r.owner.startswith("airflow/"))
            time.sleep(0.2)
        released_at.append(time.time())
        labgrid.release("imx8-a", "lab/alice")

    alice = threading.Thread(target=alice_works_then_releases)
    alice.start()
    try:
        dr = run_dag(dagbag, "bench_gate", conf={"conn_id": LABGRID_CONN})
    finally:
        alice.join()
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    assert set(states.values()) == {"success"}
    assert seen == []  # the sensor never queued for the bench
    out = values("bench_gate", dr.run_id)
    assert out[("wait_for_bench", "return_value")] == ["imx8-a"]
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        sensor_end = s.scalar(
            select(TaskInstance.end_date).where(
                TaskInstance.run_id == dr.run_id, TaskInstance.task_id == "wait_for_bench"
            )
        )
    assert sensor_end.timestamp() >= released_at[0]  # it waited for alice
    report = chain_for("bench_gate", dr.run_id)
    assert report.ok, report.problems
    assert [e["event"] for e in report.entries] == ["provision", "work", "teardown"]


def test_bench_free_trigger_fails_at_once_when_no_bench_matches(labgrid: CoordinatorClient) -> None:
    trigger = rebuilt(BenchFreeTrigger(LABGRID_CONN, None, {"board": "nrf52"}, 1, _in(30), poll_interval=0.2))
    (event,) = run_trigger(trigger)
    assert event["status"] == "failed"
    assert event["message"] == "no bench matches board=nrf52; benches there: imx8-a (board=imx8)"


# -- benches: HTTP platform -------------------------------------------------------------------------
@pytest.fixture
def bench_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[BenchHttpServer]:
    srv = BenchHttpServer(
        {"imx8-a": {"tags": {"board": "imx8"}}, "imx8-b": {"tags": {"board": "imx8"}}}, token=TOKEN
    ).start()
    conn = {
        "conn_type": "runners_bench_http",
        "host": "127.0.0.1",
        "port": srv.port,
        "schema": "http",
        "password": TOKEN,
        "extra": {"base_path": "/api/v1", "poll_interval_s": 0.2},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{HTTP_CONN.upper()}", json.dumps(conn))
    SharedStatusPoller._pollers.clear()
    yield srv
    srv.stop()
    assert srv.violations == []


def _in(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _reserve(srv: BenchHttpServer, bench: str, owner: str) -> str:
    response = requests.post(
        f"http://127.0.0.1:{srv.port}/api/v1/reservations",
        json={"bench_id": bench, "owner": owner, "lineage": f"lin-{owner}-{bench}", "ttl_s": 600},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def _release(srv: BenchHttpServer, rid: str) -> None:
    requests.delete(
        f"http://127.0.0.1:{srv.port}/api/v1/reservations/{rid}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )


def test_bench_free_trigger_on_an_http_platform_times_out_naming_holders_then_sees_the_free_bench(
    bench_http: BenchHttpServer,
) -> None:
    held = [_reserve(bench_http, b, "lab/bob") for b in ("imx8-a", "imx8-b")]
    try:
        trigger = rebuilt(
            # 4 s: the timeout names the holders only once the platform has answered, and on a
            # loaded CI machine (load 7.6 on 2 CPUs) the first answer took longer than 1.5 s
            BenchFreeTrigger(HTTP_CONN, None, {"board": "imx8"}, 1, _in(4), poll_interval=0.2)
        )
        (event,) = run_trigger(trigger)
        assert event["status"] == "timeout"
        assert (
            "0 of 2 benches matching board=imx8 free (need 1): imx8-a held by lab/bob; imx8-b held by lab/bob"
            in (event["message"])
        )
        before = {r["id"] for r in bench_http.platform.reservations.values()}
        _release(bench_http, held[1])
        trigger = BenchFreeTrigger(HTTP_CONN, None, {"board": "imx8"}, 1, _in(10), poll_interval=0.2)
        first, second = run_trigger(rebuilt(trigger)), run_trigger(rebuilt(trigger))  # safe to run twice
        assert first == second
        assert first[0]["status"] == "done"
        assert first[0]["free"] == ["imx8-b"]
        # Waiting reserved nothing on the platform.
        assert {r["id"] for r in bench_http.platform.reservations.values()} == before
    finally:
        for rid in held:
            _release(bench_http, rid)


# -- a runner provisioned elsewhere ---------------------------------------------------------------------
def test_runner_watch_waits_for_a_runner_another_dag_owns_and_leaves_it_running(dagbag: Any) -> None:
    from airflow_provider_runners.backends.base import ProvisionRequest, RunnerState
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.catalog import resolve_spec
    from airflow_provider_runners.lineage import Lineage
    from airflow_provider_runners.specs import RunnerSpec

    SharedStatusPoller._pollers.clear()
    backend = get_backend()
    owner = Lineage("shared_cluster", "manual__owner-1", "cluster.provision")
    spec = RunnerSpec.parse(
        {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}
    )
    request = ProvisionRequest.build(
        resolve_spec(spec, backend.name), owner, owner.attempt_token(1), "runners_default", owner.labels()
    )
    created: list[Any] = []
    # The owner starts its runner 2 s after the consumer began waiting for it.
    starter = threading.Timer(2.0, lambda: created.append(backend.create(request)))
    starter.start()
    try:
        dr = run_dag(
            dagbag,
            "runner_watch",
            conf={"dag_id": owner.dag_id, "run_id": owner.run_id, "task_id": owner.task_id},
        )
        starter.join()
        states = ti_states(dr)
        assert str(dr.state) == "success", states
        out = values("runner_watch", dr.run_id)
        (handle,) = created
        seen = out[("wait_for_cluster", "return_value")]
        assert seen["resource_id"] == handle.resource_id
        assert seen["lineage_key"] == owner.key
        assert seen["endpoints"]["scheduler"].startswith("tcp://")
        assert out[("job", "return_value")] == 499500
        assert out[("announce", "return_value")] == handle.resource_id
        assert backend.status(handle).state is RunnerState.READY  # the consumer left it to its owner
        # Once its owner ends it, a waiter fails instead of waiting for a runner that is gone.
        backend.teardown(handle)
        trigger = rebuilt(RunnerAvailableTrigger("runners_default", handle.to_xcom(), None, _in(10), 0.2))
        (event,) = run_trigger(trigger)
        assert event["status"] == "failed"
        assert f"runner {handle.resource_id} is gone" in event["message"]
    finally:
        starter.cancel()
        for handle in created:
            backend.teardown(handle)
    assert wait_for(lambda: not live_daemons(), timeout=15)


# -- queue depth -------------------------------------------------------------------------------------------
def test_queue_burst_waits_for_a_backlog_then_bursts_and_drains_it(dagbag: Any) -> None:
    with moto_server():
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        SharedStatusPoller._pollers.clear()
        sqs = SqsHook(aws_conn_id=AWS_CONN_ID).get_conn()
        url = sqs.create_queue(QueueName="queue-burst")["QueueUrl"]

        def send(first: int, count: int) -> None:
            for start in range(first, first + count, 10):
                sqs.send_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "MessageBody": json.dumps({"id": i, "size": 2000})}
                        for i in range(start, min(start + 10, first + count))
                    ],
                )

        send(0, 5)  # below MIN_MESSAGES = 20: the sensor waits
        trigger = rebuilt(QueueDepthTrigger(url, AWS_CONN_ID, 20, _in(5), poll_interval=0.2))
        (event,) = run_trigger(trigger)
        assert (event["status"], event["depth"]) == ("timeout", 5)
        later = threading.Timer(2.0, send, args=(5, 25))  # the backlog arrives while it waits
        later.start()
        try:
            dr = run_dag(dagbag, "queue_burst", conf={"queue_url": url})
        finally:
            later.join()
        states = ti_states(dr)
        assert str(dr.state) == "success", states
        out = values("queue_burst", dr.run_id)
        assert out[("wait_for_backlog", "return_value")] == 30
        decision = out[("plan", "burst_decision")]
        assert decision["state"]["queue_depth"] == 30
        assert decision["decision"]["launch"] == 2  # 30 jobs / 10 per runner = 3, capped at 2
        drained = [
            v for t, k, v in xcoms("queue_burst", dr.run_id) if t.endswith("drain") and k == "return_value"
        ]
        assert sum(d["jobs"] for d in drained) == 30
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert attributes == {
            "ApproximateNumberOfMessages": "0",
            "ApproximateNumberOfMessagesNotVisible": "0",
        }
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    reports = [verify_chain(c) for c in iter_chains("queue_burst", dr.run_id)]
    assert len(reports) == 2
    assert all(r.ok for r in reports)
    assert wait_for(lambda: not live_daemons(), timeout=15)
