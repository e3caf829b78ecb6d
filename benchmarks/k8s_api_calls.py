"""Kubernetes API requests made by the ``kubernetes`` backend: per lifecycle, and at 500 concurrent waits.

The API server is kmock's emulator taught the real API (``tests/fakes/kubernetes.py``); the
backend uses the real ``kubernetes`` client through its shared token bucket (5 QPS, burst 10,
client-go's default), which counts every request.

a) one lifecycle as the operators drive it, in this process: ``acquire`` (find + create), the
   status check before deferring, the readiness wait through a ``RunnerReadyTrigger`` (shared
   poller), ``describe``, the pod's command followed to completion (``POD_COMMAND``: log stream +
   status reads), ``teardown`` (read, delete, read until NotFound). A kubelet stand-in runs the pod.
b) ``--waits`` (500) pods waited on at once, by our ``RunnerReadyTrigger`` s and, in a separate
   run, by Airflow's own ``KubernetesPodTrigger`` s (``KubernetesPodOperator(deferrable=True)``),
   each at its default intervals, in one event loop each (one triggerer), the API server in a
   process of its own: requests per second by kind while the pods are Pending, CPU and RSS of
   each side, and how soon each sees a pod leave Pending (``benchmarks/_k8s_waits.py``).

    .venv/bin/python benchmarks/k8s_api_calls.py [--waits 500] [--seconds 30]   # about 3 min

Prints Markdown and writes ``benchmarks/results/k8s_api_calls.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from benchmarks import _k8s_waits
from benchmarks._common import fmt, machine, machine_line, md_table, uptime, write_json

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
    """Requests of one provision → command → teardown, by verb and path kind (polls every 0.2 s)."""
    from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend

    saved = KubernetesBackend.poll_interval
    KubernetesBackend.poll_interval = 0.2
    try:
        return _lifecycle()
    finally:
        KubernetesBackend.poll_interval = saved


def _lifecycle() -> dict[str, Any]:
    from airflow_provider_runners.backends.kubernetes.backend import POD_COMMAND
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import CommandRequest
    from airflow_provider_runners.core.lifecycle import acquire
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger
    from tests.fakes.kubernetes import KubeCluster

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
            verb = "WATCH" if r.params.get("watch") == "true" else r.method.value
            calls[
                f"{verb} {kind} {target}" + (" (labelSelector)" if "labelSelector" in r.params else "")
            ] += 1
    return {"calls": dict(calls), "total": sum(calls.values()), "seconds": round(seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waits", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0, help="the Pending window measured")
    args = parser.parse_args(argv)
    life = lifecycle()
    server, server_conn, url = _k8s_waits.start_server()
    _conn(url)
    try:
        rows = [
            _k8s_waits.measure(p, args.waits, args.seconds, url, (server_conn, server.pid), CONN_ID, _request)
            for p in ("ours", "peer", "peer-reused-client")
        ]
    finally:
        _k8s_waits.stop_server(server, server_conn)
    info = machine()
    print(f"### Kubernetes API requests ({machine_line(info)}; load {uptime()})\n")
    print(f"One lifecycle ({life['seconds']} s, pod command `echo`): **{life['total']} requests**\n")
    print(md_table(["request", "count"], sorted(life["calls"].items())))
    print(f"\n{args.waits} pods waited on at once, one event loop each, each at its default intervals:\n")
    table = []
    for r in rows:
        d, pend = r["detection_s"], r["pending"]
        phases = [("Pending", pend)] + ([("Running", r["running"])] if r["running"] else [])
        for phase, w in phases:
            table.append(
                [
                    r["pattern"],
                    phase,
                    w["total_per_s"],
                    ", ".join(f"{k} {v}" for k, v in w["requests_per_s"].items()),
                    w["waiter_cpu_pct"],
                    w["server_cpu_pct"],
                    f"{r['rss_before_waits_mib']} -> {w['waiter_rss_mib']}",
                    f"{fmt(d['median'])} / {fmt(d['p90'])} / {fmt(d['max'])}" if phase == "Pending" else "",
                    r["not_detected"] if phase == "Pending" else "",
                ]
            )
    headers = [
        "waiter",
        "pods",
        "req/s",
        "by kind (req/s)",
        "waiter CPU %",
        "API server CPU %",
        "waiter RSS MiB (before -> during)",
        "Pending -> Running seen after (s): median / p90 / max",
        "missed",
    ]
    print(md_table(headers, table))
    write_json("k8s_api_calls", {"machine": info, "lifecycle": life, "waits": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
