"""The Kubernetes emulator (tests/fakes/kubernetes.py) answers watches as the real API server does.

The benchmark of docs/benchmarks.md compares our trigger with Airflow's ``KubernetesPodTrigger``
against this emulator, so the parts of the API the peer uses must behave as on a real cluster:
``kubernetes_asyncio`` asks ``watch=True`` (the API server parses Go booleans), the server ends a
watch after ``timeoutSeconds``, and ``fieldSelector`` narrows the stream. Without them the peer's
event watch broke on its first line and was never re-opened, so it cost less than it does.
"""

from __future__ import annotations

import asyncio
import time

from kubernetes import client

from tests.fakes.kubernetes import KubeCluster


def _event(api: client.CoreV1Api, pod: str, n: int) -> None:
    api.create_namespaced_event(
        "ns",
        {
            "metadata": {"name": f"{pod}.{n}", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": "ns"},
            "reason": "Scheduled",
            "message": f"event {n} of {pod}",
        },
    )


def test_the_provider_watch_of_pod_events_sees_only_its_pod_and_is_ended_by_the_server() -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

    with KubeCluster(kubelet=False) as kube:
        api = client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url)))
        api.create_namespaced_pod("ns", {"metadata": {"name": "a"}, "spec": {"containers": []}})
        _event(api, "a", 1)
        _event(api, "b", 1)
        config = {
            "clusters": [{"name": "e", "cluster": {"server": kube.url}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "c", "context": {"cluster": "e", "user": "u"}}],
            "current-context": "c",
        }
        hook = AsyncKubernetesHook(connection_extras={}, config_dict=config)

        async def watch_once() -> tuple[list[str], float]:
            seen: list[str] = []
            started = time.monotonic()
            stream = hook.watch_pod_events("a", "ns", timeout_seconds=1)
            # one watch lasts 1 s, then the hook re-reads the pod and watches again: take 3 s
            try:
                async with asyncio.timeout(3):
                    async for event in stream:
                        seen.append(event.message)
                        if len(seen) == 1:
                            await asyncio.to_thread(_event, api, "a", 2)
                            await asyncio.to_thread(_event, api, "b", 2)
            except TimeoutError:
                pass
            return seen, time.monotonic() - started

        seen, _ = asyncio.run(watch_once())
        watches = [r for r in kube.server._requests if r.params.get("watch") == "true"]

    assert seen[:2] == ["event 1 of a", "event 2 of a"], seen
    assert all(message.endswith(" of a") for message in seen), seen
    # kubernetes_asyncio sent watch=True; the server ended each watch after 1 s, so the hook
    # opened it again (a 3 s wait, 1 s per watch: 3, or 2 if the third one was just opening)
    assert 2 <= len(watches) <= 4, [r.params for r in watches]
    assert all(r.params.get("timeoutSeconds") == "1" for r in watches)


def test_without_the_request_log_the_server_keeps_only_requests_being_dispatched() -> None:
    with KubeCluster(kubelet=False) as kube:
        kube.server.log_requests = False
        seen: list[str] = []
        kube.server.on_request = lambda request: seen.append(request.method.value)
        api = client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url)))
        api.create_namespaced_pod("ns", {"metadata": {"name": "a"}, "spec": {"containers": []}})
        for _ in range(20):
            assert api.read_namespaced_pod("a", "ns").status.phase == "Pending"
        left = len(kube.server._requests)

    assert seen == ["POST"] + ["GET"] * 20
    assert left == 0
