"""Part b) of ``k8s_api_calls.py``: N pods waited on at once, ours vs Airflow's own trigger.

Three processes, so that each side's CPU and RSS are its own:

* the API server (``tests/fakes/kubernetes.py``'s emulator, no kubelet: pods stay Pending until
  this script patches their status), which counts every request by kind;
* one waiter process per pattern, forked, running N triggers in one event loop as a triggerer
  would:

  - **ours**: N ``RunnerReadyTrigger`` s of the ``kubernetes`` backend at its default 5 s poll
    (one shared LIST per namespace per poll);
  - **peer** (and **peer-reused-client**, the same with apache/airflow#73399's fix applied): N
    ``KubernetesPodTrigger`` s (``apache-airflow-providers-cncf-kubernetes``, the
    trigger behind ``KubernetesPodOperator(deferrable=True)``) at its defaults: while the pod is
    Pending it reads the pod every ``startup_check_interval`` (5 s) and watches the pod's events
    (``log_events_on_startup``; the watch is re-opened every 5 s after one more pod read); once
    the pod runs it reads the pod every ``poll_interval`` (2 s) until the container ends;

* this process, which patches each pod to Running at a random moment of a 10 s window and
  records when the patch was answered.

Detection latency = when the waiter saw the pod leave Pending (ours: the trigger's event; the
peer: its startup wait returning, timed by a wrapper that changes nothing else) minus when the
patch was answered.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psutil

from benchmarks._common import summarize

NAMESPACE = "bench"
WARMUP_S = 10.0  # the first reads of N triggers starting at once are not the steady state
FLIP_WINDOW_S = 10.0


def _kind(request: Any) -> str:
    path = request.url.path
    watch = request.params.get("watch") == "true"
    if "/events" in path:
        return "WATCH events" if watch else "GET events"
    if path.endswith("/pods"):
        verb = "WATCH" if watch else "LIST" if request.method.value == "GET" else request.method.value
        return f"{verb} pods" + (" (labelSelector)" if "labelSelector" in request.params else "")
    if path.endswith("/status"):
        return f"{request.method.value} pods/<pod>/status"
    return f"{request.method.value} pods/<pod>"


def serve(conn: Any) -> None:
    """The API server's process: answers ``counts`` with every request so far by kind, until ``stop``."""
    from tests.fakes.kubernetes import KubeCluster

    counts: Counter[str] = Counter()
    with KubeCluster(kubelet=False) as kube:
        kube.server.log_requests = False
        kube.server.on_request = lambda request: counts.update((_kind(request),))
        conn.send(kube.url)
        while (message := conn.recv()) != "stop":
            assert message == "counts", message
            conn.send(Counter(counts))


def _cpu_s(pid: int) -> float:
    cpu = psutil.Process(pid).cpu_times()
    return float(cpu.user + cpu.system)


def _rss_mib(pid: int | None = None) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _kubeconfig(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "anonymous", "user": {}}],
        "contexts": [{"name": "bench", "context": {"cluster": "emulator", "user": "anonymous"}}],
        "current-context": "bench",
    }


def _ours(pods: list[dict[str, Any]], conn_id: str, seen: dict[str, float]) -> list[Any]:
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

    backend = get_backend(conn_id)
    deadline = datetime.fromtimestamp(4_102_444_800, UTC).isoformat()
    triggers = [
        RunnerReadyTrigger(conn_id, backend._handle(pod, conn_id).to_xcom(), deadline) for pod in pods
    ]

    async def wait(trigger: Any, name: str) -> None:
        async for event in trigger.run():
            assert event.payload["status"] == "ready", event.payload
            seen[name] = time.time()
            return

    return [wait(t, p["metadata"]["name"]) for t, p in zip(triggers, pods, strict=True)]


def _reuse_one_client_per_hook() -> None:
    """What apache/airflow#73399 (open) changes: a hook keeps one API client instead of one per call.

    As released, ``AsyncKubernetesHook.get_conn`` builds a new ``ApiClient`` for every request,
    and with it ``ssl.create_default_context()`` (the system CA bundle parsed on the event loop)
    and a new aiohttp session. Patched here so the peer is also measured at its best.
    """
    import contextlib

    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
    from airflow.providers.cncf.kubernetes.kube_client import _TimeoutAsyncK8sApiClient

    @contextlib.asynccontextmanager
    async def get_conn(self: Any) -> Any:
        await self._load_config()
        if getattr(self, "_bench_client", None) is None:
            self._bench_client = _TimeoutAsyncK8sApiClient(configuration=self.client_configuration)
        yield self._bench_client

    AsyncKubernetesHook.get_conn = get_conn  # type: ignore[method-assign]


def _peer(pods: list[dict[str, Any]], url: str, seen: dict[str, float], reuse: bool) -> list[Any]:
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

    if reuse:
        _reuse_one_client_per_hook()
    config = _kubeconfig(url)
    waits = []
    for pod in pods:
        name = pod["metadata"]["name"]
        trigger = KubernetesPodTrigger(
            pod_name=name,
            pod_namespace=NAMESPACE,
            trigger_start_time=datetime.now(UTC),
            base_container_name="main",
            connection_extras={},  # the connection is the kubeconfig below; no lookup
            config_dict=config,
        )
        startup = trigger._wait_for_pod_start

        async def timed(startup: Any = startup, name: str = name) -> Any:
            state = await startup()
            seen[name] = time.time()
            return state

        trigger._wait_for_pod_start = timed  # type: ignore[method-assign]

        async def wait(trigger: Any = trigger) -> None:
            async for _ in trigger.run():  # only once the container ends, which it does not here
                return

        waits.append(wait())
    return waits


def _waiter(pattern: str, names: list[str], url: str, conn_id: str, conn: Any) -> None:
    """A waiter process: N triggers of ``pattern`` in one loop; reports when they run, then on request."""
    log = os.open(f"/tmp/k8s-bench-{pattern}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)  # both patterns log as they would in a triggerer; not into this report
    from kubernetes import client

    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=url)))
    pods = [json.loads(api.read_namespaced_pod(n, NAMESPACE, _preload_content=False).data) for n in names]
    if pattern.startswith("peer"):
        import airflow.providers.cncf.kubernetes.triggers.pod  # noqa: F401  # imports before the baseline
    else:
        import airflow_provider_runners.triggers.readiness  # noqa: F401
    rss_before = _rss_mib()
    seen: dict[str, float] = {}

    async def main() -> None:
        if pattern == "ours":
            waits = _ours(pods, conn_id, seen)
        else:
            waits = _peer(pods, url, seen, reuse=pattern == "peer-reused-client")
        tasks = [asyncio.create_task(w) for w in waits]
        await asyncio.sleep(0.5)
        conn.send({"rss_before_mib": rss_before})
        loop = asyncio.get_running_loop()
        while (message := await loop.run_in_executor(None, conn.recv)) != "stop":
            assert message == "report", message
            conn.send(
                {
                    "seen": dict(seen),
                    "failed": [str(t.exception()) for t in tasks if t.done() and t.exception()],
                }
            )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    conn.send("stopped")


def _pod_bodies(prefix: str, n: int, conn_id: str, request_for: Any) -> list[dict[str, Any]]:
    """The pods the backend would create for N tasks (``pod_body``), sent below without its 5 QPS bucket."""
    from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend
    from airflow_provider_runners.backends.registry import get_backend

    backend = get_backend(conn_id)
    assert isinstance(backend, KubernetesBackend), backend
    return [backend.pod_body(request_for(f"{prefix}-wait-{i}")) for i in range(n)]


def _running() -> dict[str, Any]:
    from tests.fakes.kubelet import running_status

    image = "hardened-base@sha256:00"
    return {"status": running_status(image, f"docker.io/library/{image}")}


def measure(
    pattern: str, n: int, seconds: float, url: str, server: Any, conn_id: str, request_for: Any
) -> dict[str, Any]:
    """One pattern: Pending window, then pods flipped to Running, detection, (peer) running window."""
    from kubernetes import client

    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=url)))
    bodies = _pod_bodies(pattern, n, conn_id, request_for)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda b: api.create_namespaced_pod(NAMESPACE, b, _preload_content=False), bodies))
    names = [b["metadata"]["name"] for b in bodies]
    server_conn, server_pid = server

    def counts() -> Counter[str]:
        server_conn.send("counts")
        return server_conn.recv()

    def window(child_pid: int, length: float) -> dict[str, Any]:
        c0, w0, s0, t0 = counts(), _cpu_s(child_pid), _cpu_s(server_pid), time.monotonic()
        time.sleep(length)
        c1, w1, s1, t1 = counts(), _cpu_s(child_pid), _cpu_s(server_pid), time.monotonic()
        wall = t1 - t0
        by_kind = {k: round((c1[k] - c0[k]) / wall, 2) for k in sorted(c1) if c1[k] > c0[k]}
        return {
            "seconds": round(wall, 1),
            "requests_per_s": by_kind,
            "total_per_s": round(sum(by_kind.values()), 2),
            "waiter_cpu_pct": round(100 * (w1 - w0) / wall, 1),
            "server_cpu_pct": round(100 * (s1 - s0) / wall, 1),
            "waiter_rss_mib": round(_rss_mib(child_pid), 1),
        }

    ctx = multiprocessing.get_context("fork")
    parent, child_end = ctx.Pipe()
    child = ctx.Process(target=_waiter, args=(pattern, names, url, conn_id, child_end), daemon=True)
    child.start()
    try:
        started = parent.recv()
        time.sleep(WARMUP_S)
        pending = window(child.pid, seconds)
        flips: dict[str, float] = {}
        rng = random.Random(18)
        schedule = sorted((rng.uniform(0, FLIP_WINDOW_S), name) for name in names)
        flip_start = time.monotonic()
        for offset, name in schedule:
            time.sleep(max(0.0, flip_start + offset - time.monotonic()))
            api.patch_namespaced_pod_status(name, NAMESPACE, _running())
            flips[name] = time.time()
        deadline = time.monotonic() + 60
        while True:
            parent.send("report")
            report = parent.recv()
            if len(report["seen"]) == n or time.monotonic() > deadline or report["failed"]:
                break
            time.sleep(1)
        running = window(child.pid, seconds / 2) if pattern.startswith("peer") else None
        parent.send("stop")
        parent.recv()
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: api.delete_namespaced_pod(n, NAMESPACE, grace_period_seconds=0), names))
    latencies = [report["seen"][n] - flips[n] for n in names if n in report["seen"]]
    return {
        "pattern": pattern,
        "waits": n,
        "pending": pending,
        "rss_before_waits_mib": round(started["rss_before_mib"], 1),
        "detection_s": summarize(latencies),
        "not_detected": n - len(latencies),
        "failed": report["failed"][:3],
        "running": running,
    }


def start_server() -> tuple[Any, Any, str]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=serve, args=(child,), daemon=True)
    process.start()
    return process, parent, parent.recv()


def stop_server(process: Any, conn: Any) -> None:
    conn.send("stop")
    process.join(timeout=15)
    if process.is_alive():
        process.terminate()
