"""Kubernetes API requests made by the ``kubernetes`` backend: per lifecycle, and at 500 concurrent waits.

The API server is kmock's emulator taught the real API (``tests/fakes/kubernetes.py``); the
backend uses the real ``kubernetes`` client through its shared token bucket (5 QPS, burst 10,
client-go's default), which counts every request.

a) one lifecycle as the operators drive it, in this process: ``acquire`` (find + create), the
   status check before deferring, the readiness wait through a ``RunnerReadyTrigger`` (shared
   poller), ``describe``, the pod's command followed to completion (``POD_COMMAND``: log stream +
   status reads), ``teardown`` (read, delete, read until NotFound). A kubelet stand-in runs the pod.
b) ``--waits`` (500) ``RunnerReadyTrigger`` s waiting at once in one event loop (one triggerer)
   for pods that stay Pending, for ``--seconds``; the API server runs in a child process so that
   CPU and RSS are the triggerer side's only. Batched (one LIST per namespace per poll, the
   backend's ``status_many``) vs. unbatched (one GET per pod per poll, ``Backend.status_many``'s
   default), both at the real 5 s poll interval and through the 5 QPS limiter.

    .venv/bin/python benchmarks/k8s_api_calls.py [--waits 500] [--seconds 30]

Prints Markdown and writes ``benchmarks/results/k8s_api_calls.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-k8s-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from benchmarks._common import machine, machine_line, md_table, write_json

CONN_ID = "runners_k8s_bench"
SPEC = {
    "runner_class": "pod",
    "profile": "small",
    "environment": "dev",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "bench"},
    "options": {"command": "echo sil-case; echo passed"},
}


def _conn(url: str) -> None:
    extra = {"namespace": "bench", "failure_grace_s": 60}
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "runners_kubernetes", "host": url, "extra": extra}
    )


def _request(task: str) -> Any:
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec

    lineage = Lineage("bench", "run-1", task)
    resolved = resolve_spec(RunnerSpec.parse(SPEC), backend="kubernetes")
    labels = {"tenant": "bench"}
    expires_at = datetime.fromtimestamp(4_102_444_800, UTC)
    return ProvisionRequest(resolved, lineage, lineage.attempt_token(1), CONN_ID, labels, expires_at)


def lifecycle() -> dict[str, Any]:
    """Requests of one provision → command → teardown, by verb and path kind."""
    from airflow_provider_runners.backends.kubernetes.backend import POD_COMMAND, KubernetesBackend
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import CommandRequest
    from airflow_provider_runners.core.lifecycle import acquire
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger
    from tests.fakes.kubernetes import KubeCluster

    KubernetesBackend.poll_interval = 0.2
    with KubeCluster() as kube:
        _conn(kube.url)
        backend = get_backend(CONN_ID)
        started = time.monotonic()
        handle, _ = acquire(backend, _request("lifecycle"))
        backend.status(handle)
        deadline = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        trigger = RunnerReadyTrigger(CONN_ID, handle.to_xcom(), deadline)

        async def wait() -> Any:
            async for event in trigger.run():
                return event.payload

        event = asyncio.run(wait())
        assert event["status"] == "ready", event
        backend.describe(handle)
        lines: list[str] = []
        result = backend.run_command(
            handle, CommandRequest(POD_COMMAND, "bench"), lines.append, threading.Event()
        )
        assert result.exit_code == 0, result
        backend.teardown(handle)
        seconds = time.monotonic() - started
        calls: Counter[str] = Counter()
        for r in kube.server.requests_by("airflow-provider-runners"):
            path = r.url.path
            kind = "log" if path.endswith("/log") else "events" if "/events" in path else "pods"
            target = "collection" if path.endswith(("/pods", "/events")) else "pod"
            calls[
                f"{r.method.value} {kind} {target}"
                + (" (labelSelector)" if "labelSelector" in r.params else "")
            ] += 1
    return {"calls": dict(calls), "total": sum(calls.values()), "seconds": round(seconds, 2)}


def _serve(conn: Any) -> None:
    from tests.fakes.kubernetes import KubeCluster

    with KubeCluster(kubelet=False) as kube:
        conn.send(kube.url)
        conn.recv()  # until the parent says stop


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def waits(n: int, seconds: float, batched: bool, url: str) -> dict[str, Any]:
    """``n`` triggers waiting ``seconds`` in one loop for Pending pods; requests/s, staleness, CPU, RSS."""
    from kubernetes import client

    from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend
    from airflow_provider_runners.backends.kubernetes.client import TokenBucket
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import Backend
    from airflow_provider_runners.triggers.poller import SharedStatusPoller

    TokenBucket._buckets.clear()
    SharedStatusPoller._pollers.clear()
    KubernetesBackend.poll_interval = 5.0
    if not batched:
        KubernetesBackend.status_many = Backend.status_many  # type: ignore[method-assign]
    backend = get_backend(CONN_ID)
    assert isinstance(backend, KubernetesBackend)
    setup = client.ApiClient(client.Configuration(host=url))  # unthrottled: setup is not measured
    api = client.CoreV1Api(setup)
    from airflow_provider_runners.backends.kubernetes import pod as podlib

    handles = []
    for i in range(n):
        req = _request(f"{'b' if batched else 'u'}-wait-{i}")
        options = podlib.check_options(req.spec, req.resolved)
        body = podlib.build_pod(
            req,
            options,
            name=podlib.pod_name(req.lineage.key),
            namespace="bench",
            image="hardened-base@sha256:00",
            labels=podlib.pod_labels(req, "dev"),
            service_account=None,
            tag_node_selector={},
            grace_period_s=30,
        )
        pod = json.loads(api.create_namespaced_pod("bench", body, _preload_content=False).data)
        handles.append(backend._handle(pod, CONN_ID))
    backend.api()
    bucket = backend.bucket
    seen: Counter[str] = Counter()

    async def one(handle: Any) -> None:
        poller = SharedStatusPoller.for_backend(backend, None)
        while True:  # what RunnerReadyTrigger.run does while the pod is PENDING, counting answers
            await poller.next_status(handle)
            seen[handle.resource_id] += 1

    async def main() -> None:
        tasks = [asyncio.create_task(one(h)) for h in handles]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    rounds: list[float] = []
    status_many = backend.status_many

    def timed(handles: Any) -> Any:  # how long one poll of every waiting pod takes
        started = time.monotonic()
        try:
            return status_many(handles)
        finally:
            rounds.append(time.monotonic() - started)

    backend.status_many = timed  # type: ignore[method-assign]
    rss_before = _rss_mib()
    before_requests = bucket.requests
    cpu0, wall0 = time.process_time(), time.monotonic()
    asyncio.run(main())
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    requests = bucket.requests - before_requests
    answers = sum(seen.values())
    per_wait = answers / n
    if not batched:
        KubernetesBackend.status_many = KubernetesBackend.__dict__.get("status_many", Backend.status_many)  # type: ignore[method-assign]
    return {
        "mode": "batched" if batched else "unbatched",
        "waits": n,
        "seconds": round(wall, 1),
        "requests": requests,
        "requests_per_s": round(requests / wall, 2),
        "statuses_per_wait": round(per_wait, 2),
        "mean_status_age_s": round(wall / per_wait, 1) if per_wait else None,
        "cpu_s": round(cpu, 2),
        "cpu_pct": round(100 * cpu / wall, 1),
        "rss_mib": round(_rss_mib(), 1),
        "rss_before_waits_mib": round(rss_before, 1),
        "poll_round_s": round(sum(rounds) / len(rounds), 2) if rounds else None,
        "poll_rounds": len(rounds),
        "waited_for_tokens_s": round(bucket.waited_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waits", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0, help="batched waits run this long")
    parser.add_argument(
        "--unbatched-seconds", type=float, default=None, help="default: long enough for two rounds at 5 QPS"
    )
    args = parser.parse_args(argv)
    life = lifecycle()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    url = parent.recv()
    _conn(url)
    try:
        batched = waits(args.waits, args.seconds, True, url)
        from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend

        saved = KubernetesBackend.status_many
        unbatched_s = args.unbatched_seconds or max(args.seconds, 2.2 * args.waits / 5)
        unbatched = waits(args.waits, unbatched_s, False, url)
        KubernetesBackend.status_many = saved  # type: ignore[method-assign]
    finally:
        parent.send("stop")
        server.join(timeout=15)
        if server.is_alive():
            server.terminate()
    info = machine()
    print(f"### Kubernetes API requests ({machine_line(info)})\n")
    print(f"One lifecycle ({life['seconds']} s, pod command `echo`): **{life['total']} requests**\n")
    print(md_table(["request", "count"], sorted(life["calls"].items())))
    print(
        f"\n{args.waits} concurrent waits in one event loop, poll interval 5 s, client limit 5 QPS / burst 10:\n"
    )
    rows = [
        [
            r["mode"],
            r["seconds"],
            r["requests"],
            r["requests_per_s"],
            f"{r['requests_per_s'] / 5:.0%}",
            r["poll_rounds"],
            r["poll_round_s"],
            r["statuses_per_wait"],
            r["cpu_pct"],
            f"{r['rss_before_waits_mib']} -> {r['rss_mib']}",
        ]
        for r in (batched, unbatched)
    ]
    headers = [
        "status_many",
        "seconds",
        "requests",
        "req/s",
        "of 5 QPS",
        "polls",
        "s per poll",
        "statuses per wait",
        "CPU %",
        "RSS MiB (before -> during)",
    ]
    print(md_table(headers, rows))
    write_json(
        "k8s_api_calls", {"machine": info, "lifecycle": life, "batched": batched, "unbatched": unbatched}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
