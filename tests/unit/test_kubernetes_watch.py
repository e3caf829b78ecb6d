"""Between two polls the ``kubernetes`` backend watches its pods instead of sleeping (backends/kubernetes/watch.py).

Against the emulator of tests/fakes/kubernetes.py with the real ``kubernetes`` client; no
kubelet, so pods stay Pending until a test patches their status as a kubelet would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend
from airflow_provider_runners.backends.kubernetes.watch import MIN_LIST_GAP_S
from airflow_provider_runners.core.backend import ConnectionConfig, RunnerState
from airflow_provider_runners.core.handles import RunnerHandle
from tests.fakes.kubelet import running_status
from tests.fakes.kubernetes import KubeCluster
from tests.unit.test_kubernetes_backend import request

CONN = "k8s_watch_unit"


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeCluster]:
    with KubeCluster(kubelet=False) as cluster:
        yield cluster


@pytest.fixture
def b(kube: KubeCluster) -> Iterator[KubernetesBackend]:
    kube.server.refuse_watch = False
    backend = KubernetesBackend(
        ConnectionConfig(CONN, "runners_kubernetes", host=kube.url, extra={"namespace": "w"})
    )
    backend.teardown_poll_s = 0.05  # type: ignore[misc]
    yield backend
    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url)))
    for handle in backend.list_managed():  # no kubelet to end a bound pod's graceful deletion
        api.delete_namespaced_pod(handle.resource_id, "w", grace_period_seconds=0)


def start(kube: KubeCluster, handle: RunnerHandle) -> None:
    """What a kubelet does when the pod's container runs: bind it, then report it Running."""
    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url)))
    api.patch_namespaced_pod(handle.resource_id, "w", {"spec": {"nodeName": "node-1"}})
    api.patch_namespaced_pod_status(handle.resource_id, "w", {"status": running_status("x", "x@sha256:0")})


def watches(kube: KubeCluster) -> list[Any]:
    return [r for r in kube.server.requests_by("airflow-provider-runners") if r.params.get("watch") == "true"]


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - started


def test_a_pod_that_starts_ends_the_pause_at_once_with_one_watch(
    kube: KubeCluster, b: KubernetesBackend
) -> None:
    """As the poller does: LIST, pause in a watch, LIST again. The pod is bound, then runs (two
    changes, milliseconds apart): READY is read well before the 10 s pause would end."""
    handle = b.create(request("w-start"))
    assert b.status_many([handle])[handle.resource_id].state is RunnerState.PENDING
    before = len(watches(kube))
    delay = MIN_LIST_GAP_S + 0.3
    threading.Timer(delay, start, (kube, handle)).start()
    started, state = time.monotonic(), RunnerState.PENDING
    while state is RunnerState.PENDING and time.monotonic() - started < 5:
        assert b.wait_for_change([handle], 10.0) is True
        state = b.status_many([handle])[handle.resource_id].state
    seconds = time.monotonic() - started
    assert state is RunnerState.READY
    assert delay <= seconds < delay + MIN_LIST_GAP_S + 0.5, seconds  # not the 10 s pause
    sent = watches(kube)[before:]
    assert 1 <= len(sent) <= 2  # one per change seen, at most one per pause
    assert {r.params["labelSelector"] for r in sent} == {"managed-by=airflow-provider-runners"}
    assert {r.params["timeoutSeconds"] for r in sent} == {"10"}


def test_a_quiet_pause_lasts_its_interval(kube: KubeCluster, b: KubernetesBackend) -> None:
    handle = b.create(request("w-quiet"))
    b.status_many([handle])
    changed, seconds = timed(b.wait_for_change, [handle], 1.0)
    assert changed is False
    assert 0.9 <= seconds < 2.5, seconds
    changed, seconds = timed(b.wait_for_change, [handle], 0.3)  # shorter than the server's 1 s minimum
    assert changed is False
    assert 0.25 <= seconds < 1.0, seconds


def test_other_pods_changing_do_not_end_the_pause(kube: KubeCluster, b: KubernetesBackend) -> None:
    waited, other = b.create(request("w-waited")), b.create(request("w-other"))
    b.status_many([waited])
    threading.Timer(0.2, start, (kube, other)).start()
    changed, seconds = timed(b.wait_for_change, [waited], 1.0)
    assert changed is False
    assert seconds >= 0.9


def test_a_change_between_the_list_and_the_watch_is_not_missed(
    kube: KubeCluster, b: KubernetesBackend
) -> None:
    handle = b.create(request("w-gap"))
    b.status_many([handle])
    start(kube, handle)  # after the LIST, before the WATCH: only its resourceVersion tells
    changed, seconds = timed(b.wait_for_change, [handle], 10.0)
    assert changed is True
    assert seconds < MIN_LIST_GAP_S + 0.5, seconds  # the storm gap at most, not the pause


def test_a_refused_watch_is_logged_once_and_the_pause_is_slept(
    kube: KubeCluster, b: KubernetesBackend, caplog: pytest.LogCaptureFixture
) -> None:
    kube.server.refuse_watch = True
    handle = b.create(request("w-refused"))
    b.status_many([handle])
    with caplog.at_level(logging.WARNING):
        first, seconds = timed(b.wait_for_change, [handle], 0.5)
        before = len(kube.server.requests_by("airflow-provider-runners"))
        second = b.wait_for_change([handle], 0.5)
    assert first is False
    assert second is False
    assert seconds >= 0.45
    assert len(kube.server.requests_by("airflow-provider-runners")) == before  # not asked again
    refusals = [r.getMessage() for r in caplog.records if "refuses to watch pods" in r.getMessage()]
    assert len(refusals) == 1
    assert "grant the 'watch' verb on pods" in refusals[0]
    assert "(403 Forbidden)" in refusals[0]  # the status, not the response's headers and body


def test_readiness_is_seen_well_within_the_poll_interval(
    kube: KubeCluster, b: KubernetesBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RunnerReadyTrigger at the backend's 5 s poll sees a pod start in about a second, not 2.5 s on average."""
    from airflow_provider_runners.triggers.poller import SharedStatusPoller
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}",
        json.dumps({"conn_type": "runners_kubernetes", "host": kube.url, "extra": {"namespace": "w"}}),
    )
    handle = b.create(request("w-trigger"))
    deadline = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    trigger = RunnerReadyTrigger(CONN, handle.to_xcom(), deadline)
    assert KubernetesBackend.poll_interval == 5.0

    async def wait() -> tuple[dict[str, Any], float]:
        SharedStatusPoller._pollers.clear()
        waiting = asyncio.create_task(anext(aiter(trigger.run())))
        await asyncio.sleep(1.0)  # the trigger has polled once and now waits in the watch
        started = time.monotonic()
        await asyncio.to_thread(start, kube, handle)
        event = await asyncio.wait_for(waiting, 10)
        return event.payload, time.monotonic() - started

    payload, seen_after = asyncio.run(wait())
    assert payload["status"] == "ready", payload
    assert seen_after < 2.0, seen_after  # the 5 s poll alone: 4 s here (it polled 1 s before)


def test_a_quiet_pause_streams_no_pod_however_many_wait(
    kube: KubeCluster, b: KubernetesBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch starts at the LIST's resourceVersion: the pods the LIST just read are not sent
    again (without it, every pause streamed every pod: 1000 JSON objects per poll at 1000 waits)."""
    from airflow_provider_runners.backends.kubernetes import watch as watchlib

    handles = [b.create(request(f"w-many-{i}")) for i in range(12)]
    b.status_many(handles)
    listed_at = b._watch.list_version
    assert listed_at is not None
    received: list[dict[str, Any]] = []
    real_events = watchlib._events

    def counted(response: Any) -> Iterator[dict[str, Any]]:
        for event in real_events(response):
            received.append(event)
            yield event

    monkeypatch.setattr(watchlib, "_events", counted)
    before = len(watches(kube))
    changed, seconds = timed(b.wait_for_change, handles, 1.0)
    assert changed is False
    assert seconds >= 0.9
    assert received == []
    (sent,) = watches(kube)[before:]
    assert sent.params["resourceVersion"] == listed_at
    threading.Timer(0.3, start, (kube, handles[5])).start()  # a change after the LIST still ends it
    changed, seconds = timed(b.wait_for_change, handles, 10.0)
    assert changed is True
    assert seconds < 0.3 + MIN_LIST_GAP_S + 0.5, seconds
    assert [e["object"]["metadata"]["name"] for e in received][:1] == [handles[5].resource_id]


def test_an_expired_version_ends_the_pause_and_the_next_list_renews_it(
    kube: KubeCluster, b: KubernetesBackend
) -> None:
    """410 Expired (the server's watch cache no longer holds the LIST's version): LIST again at
    once rather than wait the pause blind; the new LIST's version watches normally."""
    handle = b.create(request("w-expired"))
    b.status_many([handle])
    old = b._watch.list_version
    assert old is not None
    kube.server.expire_versions_before = int(old) + 1
    try:
        changed, seconds = timed(b.wait_for_change, [handle], 5.0)
        assert changed is True
        assert seconds < MIN_LIST_GAP_S + 0.5, seconds  # not the 5 s pause
        assert b.status_many([handle])[handle.resource_id].state is RunnerState.PENDING
        assert int(b._watch.list_version or 0) > int(old)
        changed, seconds = timed(b.wait_for_change, [handle], 1.0)
        assert changed is False
        assert seconds >= 0.9
    finally:
        kube.server.expire_versions_before = None
