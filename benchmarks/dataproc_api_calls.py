"""Dataproc API calls made by ``dataproc_dask``: per lifecycle, and per minute at 1000 concurrent waits.

Everything runs against the fake Dataproc *transport* (``tests/fakes/dataproc.py``) under the
real ``DataprocHook`` and google clients, which records every request:

a) one lifecycle, as the operators drive it: ``acquire`` (find + create), the status check
   before deferring, the readiness wait through ``SharedStatusPoller`` (the fake cluster
   needs ``--ready-polls`` polls, ~2 min at the real 15 s interval), ``describe``, teardown
   (delete, then get until NotFound; ``--delete-polls``). The Dask job itself makes no
   Dataproc call.
b) ``--waits`` (1000) RunnerReadyTriggers waiting at once in one event loop, all sharing one
   poller (as in one triggerer). The interval is shortened to ``--interval`` seconds;
   calls per minute are scaled to the real ``poll_interval`` (15 s). The same wait with the
   unbatched fallback (one get_cluster per waiter per interval, what ``Backend.status_many``
   does by default and what a per-cluster trigger does) is measured for comparison.

    .venv/bin/python benchmarks/dataproc_api_calls.py [--waits 1000] [--ready-polls 8] [--interval 0.05]

Prints Markdown and writes ``benchmarks/results/dataproc_api_calls.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-dataproc-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"] = '{"conn_type": "google_cloud_platform"}'
EXTRA = {"project_id": "acme-data", "region": "europe-west1", "zone": "europe-west1-b"}
os.environ["AIRFLOW_CONN_RUNNERS_DATAPROC_BENCH"] = json.dumps(
    {"conn_type": "runners_dataproc_dask", "extra": EXTRA}
)

from benchmarks._common import RESULTS, machine, machine_line, md_table

QUOTA_READS_PER_MIN = 7500
SPEC = {
    "runner_class": "dask_cluster",
    "profile": "standard",
    "environment": "dev",
    "tags": {"tenant": "bench"},
}


class _Patch:
    """Minimal monkeypatch (setattr with undo) so pytest is not needed here."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def setattr(self, target: Any, name: str, value: Any, raising: bool = True) -> None:
        self._undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def undo(self) -> None:
        for target, name, value in reversed(self._undo):
            setattr(target, name, value)


def _setup(ready_polls: int, delete_polls: int, interval: float) -> tuple[Any, Any, _Patch]:
    from airflow_provider_runners.backends.dataproc_dask import backend as dataproc_dask
    from airflow_provider_runners.backends.dataproc_dask.backend import DataprocDaskBackend
    from tests.fakes.dataproc import FakeDataproc

    patch = _Patch()
    fake = FakeDataproc(ready_after=ready_polls, delete_reads=delete_polls).patch(patch)
    patch.setattr(dataproc_dask, "gcs_object_facts", lambda hook, uri: {"uri": uri, "generation": 1})
    patch.setattr(DataprocDaskBackend, "poll_interval", interval)
    patch.setattr(DataprocDaskBackend, "teardown_poll_s", 0.0)
    from airflow_provider_runners.backends.registry import get_backend

    return fake, get_backend("runners_dataproc_bench"), patch


def _request(n: int) -> Any:
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec

    lineage = Lineage("bench_dataproc", "run-1", "cluster.provision", n)
    return ProvisionRequest.build(
        resolve_spec(RunnerSpec.parse(SPEC), "dataproc_dask"),
        lineage,
        lineage.attempt_token(1),
        "runners_dataproc_bench",
        {"tenant": "bench"},
    )


async def _wait(handle: Any, interval: float) -> str:
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

    deadline = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    trigger = RunnerReadyTrigger("runners_dataproc_bench", handle.to_xcom(), deadline, interval)
    async for event in trigger.run():
        return str(event.payload["status"])
    return "none"


def lifecycle(ready_polls: int, delete_polls: int, interval: float) -> dict[str, Any]:
    from airflow_provider_runners.core.backend import RunnerState
    from airflow_provider_runners.core.lifecycle import acquire

    fake, backend, patch = _setup(ready_polls, delete_polls, interval)
    try:
        phases: dict[str, Counter[str]] = {}
        mark = 0

        def phase(name: str) -> None:
            nonlocal mark
            phases[name] = Counter(fake.methods()[mark:])
            mark = len(fake.requests)

        handle, _ = acquire(backend, _request(0))
        phase("acquire (find + policy + create)")
        assert backend.status(handle).state is RunnerState.PENDING
        phase("status check before deferring")
        assert asyncio.run(_wait(handle, interval)) == "ready"
        phase("readiness wait (shared poller)")
        backend.describe(handle)
        phase("describe (evidence)")
        backend.teardown(handle)
        phase("teardown (delete + wait for NotFound)")
        return {"phases": {k: dict(v) for k, v in phases.items()}, "total": len(fake.requests)}
    finally:
        patch.undo()


def concurrent_waits(waits: int, ready_polls: int, interval: float, batched: bool) -> dict[str, Any]:
    from airflow_provider_runners.backends.dataproc_dask.backend import DataprocDaskBackend
    from airflow_provider_runners.core.backend import Backend
    from airflow_provider_runners.triggers.poller import SharedStatusPoller

    fake, backend, patch = _setup(ready_polls, 1, interval)
    if not batched:  # the fallback every backend inherits: one status (get_cluster) per waiter
        patch.setattr(DataprocDaskBackend, "status_many", Backend.status_many)
    try:
        handles = [backend.create(_request(n)) for n in range(waits)]
        fake.requests.clear()
        SharedStatusPoller._pollers.clear()

        async def main() -> list[str]:
            return await asyncio.gather(*(_wait(h, interval) for h in handles))

        started = time.monotonic()
        results = asyncio.run(main())
        elapsed = time.monotonic() - started
        reads = fake.reads()
        polls = reads if batched else reads / waits
        return {
            "waits": waits,
            "ready": results.count("ready"),
            "reads": reads,
            "methods": dict(Counter(fake.methods())),
            "poll_rounds": polls,
            "elapsed_s": round(elapsed, 2),
            "reads_per_round": reads / max(polls, 1),
        }
    finally:
        patch.undo()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--ready-polls", type=int, default=8, help="polls until RUNNING (8 x 15 s = 2 min)")
    parser.add_argument("--delete-polls", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.05, help="shortened poll interval (s)")
    args = parser.parse_args()
    from airflow_provider_runners.backends.dataproc_dask.backend import DataprocDaskBackend

    real_interval = DataprocDaskBackend.poll_interval
    per_min = 60.0 / real_interval
    one = lifecycle(args.ready_polls, args.delete_polls, args.interval)
    batched = concurrent_waits(args.waits, args.ready_polls, args.interval, batched=True)
    unbatched = concurrent_waits(args.waits, args.ready_polls, args.interval, batched=False)
    rows = []
    for name, counts in one["phases"].items():
        rows.append([name, sum(counts.values()), ", ".join(f"{m} {n}" for m, n in sorted(counts.items()))])
    rows.append(["**total per lifecycle**", one["total"], ""])
    print(f"## Dataproc API calls\n\n{machine_line(machine())}\n")
    print(
        f"### (a) One lifecycle ({args.ready_polls} polls to RUNNING, {args.delete_polls} reads while DELETING)\n"
    )
    print(md_table(["phase", "calls", "methods"], rows, align="lrl"))
    table = []
    for label, result in (
        ("shared poller, one list_clusters", batched),
        ("unbatched fallback, get_cluster", unbatched),
    ):
        rpm = result["reads_per_round"] * per_min
        table.append(
            [
                label,
                f"{result['ready']}/{result['waits']}",
                result["reads"],
                f"{result['reads_per_round']:.0f}",
                f"{rpm:,.0f}",
                f"{100 * rpm / QUOTA_READS_PER_MIN:.1f} %",
            ]
        )
    print(f"\n### (b) {args.waits} concurrent readiness waits, one event loop (poll {real_interval:.0f} s)\n")
    print(
        md_table(
            ["status polling", "ready", "read calls", "reads / poll", "reads / min", "of 7,500 reads/min"],
            table,
            align="lrrrrr",
        )
    )
    out = {"lifecycle": one, "batched": batched, "unbatched": unbatched, "real_interval_s": real_interval}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dataproc_api_calls.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
