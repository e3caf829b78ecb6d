"""Load: N concurrent provision waits deferred to one triggerer vs the same N as poke-mode sensors.

Deferred side (measured): one process runs N real ``RunnerReadyTrigger`` instances concurrently in
one asyncio event loop — the triggerer's execution model — against a backend whose runners become
ready after an artificial delay (``--ready-delay``, default 20 s, spread by up to 10 %). Reported:
time from start until every trigger has yielded its event (resume all), CPU seconds of that process,
its peak RSS, and backend status calls (batched by the shared poller).

CPU and RSS are whole-process figures (they include importing Airflow, as a real triggerer or task
process does). Poke side: every waiting sensor holds a worker slot (and a task process) for the whole wait. We
measure ``--poke-sample`` (default 10) real processes that import Airflow and the provider and poll
the same backend every ``poll_interval`` like a poke-mode sensor, then scale their RSS and CPU to N
(linear: each poke task is an independent process). Worker slots held = N for the whole delay.

    .venv/bin/python benchmarks/triggerer_load.py [--n 200 500 1000] [--ready-delay 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO, fmt, machine, machine_line, md_table, write_json

POLL_INTERVAL = 5.0  # seconds between polls, for both sides

# The child runs either N triggers (mode "defer") or one poke loop (mode "poke").
CHILD = r"""
import asyncio, json, os, random, resource, sys, time
from datetime import UTC, datetime, timedelta
mode, n, delay, poll = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])

from airflow.sdk import BaseHook  # noqa: F401 - a triggerer / task process has Airflow loaded already
from airflow_provider_runners.backends import registry
from airflow_provider_runners.core.backend import Backend, RunnerState, RunnerStatus, TeardownResult
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

CALLS = {"status_many": 0, "handles": 0}
READY_AT = {}

class DelayBackend(Backend):
    name = "bench_delay"
    conn_type = "runners_bench_delay"
    hook_name = "bench"
    runner_classes = frozenset({"dask_cluster"})
    poll_interval = poll
    def create(self, request): raise NotImplementedError
    def find(self, lineage_key): return None
    def status(self, handle):
        return self.status_many([handle])[handle.resource_id]
    def status_many(self, handles):
        handles = list(handles)
        CALLS["status_many"] += 1
        CALLS["handles"] += len(handles)
        now = time.monotonic()
        return {h.resource_id: RunnerStatus(RunnerState.READY if now >= READY_AT[h.resource_id] else RunnerState.PENDING)
                for h in handles}
    def teardown(self, handle): return TeardownResult(existed=False)
    def describe(self, handle): return {}
    def list_managed(self): return []

registry.reload_backends()
classes = registry.backend_classes()
classes["runners_bench_delay"] = DelayBackend
os.environ["AIRFLOW_CONN_RUNNERS_BENCH"] = json.dumps({"conn_type": "runners_bench_delay"})

def handle(i):
    now = datetime.now(UTC)
    return RunnerHandle(backend="bench_delay", runner_class="dask_cluster", resource_id=f"r{i}", conn_id="runners_bench",
                        lineage_key="rl" + "0" * 26, attempt_token="rl" + "0" * 26 + "-t1", created_at=now,
                        expires_at=now + timedelta(hours=1), environment="local", profile="small")

BACKEND = registry.get_backend("runners_bench")  # resolves the Connection once, before the clock starts
START = time.monotonic()
rng = random.Random(7)
for i in range(n):
    READY_AT[f"r{i}"] = START + delay * (1 + 0.1 * rng.random())

async def defer_side():
    deadline = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    triggers = [RunnerReadyTrigger("runners_bench", handle(i).to_xcom(), deadline) for i in range(n)]
    async def one(t):
        async for event in t.run():
            return event.payload["status"]
    return await asyncio.gather(*(one(t) for t in triggers))

def poke_side():
    h = handle(0)
    while BACKEND.status(h).state is not RunnerState.READY:
        time.sleep(poll)
    return ["ready"]

statuses = asyncio.run(defer_side()) if mode == "defer" else poke_side()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "resume_all_s": time.monotonic() - START,
    "ready": statuses.count("ready"),
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "max_rss_mib": usage.ru_maxrss / 1024,
    "status_many_calls": CALLS["status_many"],
    "handles_polled": CALLS["handles"],
}))
"""


def run_child(mode: str, n: int, delay: float, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [str(PYTHON), "-c", CHILD, mode, str(n), str(delay), str(POLL_INTERVAL)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--ready-delay", type=float, default=20.0, help="seconds until a runner is ready")
    parser.add_argument("--poke-sample", type=int, default=10, help="real poke processes measured")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="runners-bench-load-"))
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env["PYTHONPATH"] = str(REPO)
    info = machine()
    sys.stderr.write(f"AIRFLOW_HOME={home}\n")

    # Poke side: a sample of real processes, started together, each polling like a poke-mode sensor.
    procs = [
        subprocess.Popen(
            [str(PYTHON), "-c", CHILD, "poke", "1", str(args.ready_delay), str(POLL_INTERVAL)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.poke_sample)
    ]
    pokes = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    poke_rss = sum(p["max_rss_mib"] for p in pokes) / len(pokes)
    poke_cpu = sum(p["cpu_s"] for p in pokes) / len(pokes)
    poke_calls = sum(p["status_many_calls"] for p in pokes) / len(pokes)

    rows, results = [], []
    for n in args.n:
        sys.stderr.write(f"deferred: {n} triggers ...\n")
        d = run_child("defer", n, args.ready_delay, env)
        assert d["ready"] == n, d
        calls_per_min = d["status_many_calls"] / d["resume_all_s"] * 60
        results.append({"n": n, "deferred": d, "poke_per_process": {"rss_mib": poke_rss, "cpu_s": poke_cpu}})
        rows.append(
            [
                n,
                fmt(d["resume_all_s"], 1),
                fmt(d["cpu_s"], 2),
                fmt(d["max_rss_mib"], 0),
                f"{d['status_many_calls']} ({calls_per_min:.0f}/min)",
                "0",
                f"{n} (for {args.ready_delay:.0f}+ s)",
                fmt(poke_cpu * n, 1),
                fmt(poke_rss * n / 1024, 1),
                f"{poke_calls * n:.0f}",
            ]
        )
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"## Triggerer load — ready delay {args.ready_delay:.0f} s, poll interval {POLL_INTERVAL:.0f} s\n")
    print(machine_line(info) + "\n")
    print(
        md_table(
            [
                "N waits",
                "deferred: resume all (s)",
                "triggerer CPU (s)",
                "triggerer peak RSS (MiB)",
                "backend status calls",
                "worker slots held",
                "poke: worker slots held",
                "poke: CPU (s, scaled)",
                "poke: RSS (GiB, scaled)",
                "poke: status calls (scaled)",
            ],
            rows,
        )
    )
    print(
        f"\nPoke side measured on {args.poke_sample} real processes: {poke_rss:.0f} MiB RSS and "
        f"{poke_cpu:.2f} CPU-s each, {poke_calls:.0f} status calls each; scaled linearly to N."
    )
    write_json(
        "triggerer_load",
        {
            "machine": info,
            "ready_delay_s": args.ready_delay,
            "poll_interval_s": POLL_INTERVAL,
            "results": results,
            "pokes": pokes,
            "children_cpu_s": own.ru_utime + own.ru_stime,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
