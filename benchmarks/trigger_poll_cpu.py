"""CPU per waiting ``RunnerReadyTrigger`` per poll, in one event loop, and the full garbage
collections meanwhile: the trigger runner's share of docs/benchmarks.md's "a real triggerer",
without the triggerer around it.

    .venv/bin/python benchmarks/trigger_poll_cpu.py --n 1000 --polls 200

N triggers wait on the fake backend of tests/unit/test_poller_trigger.py, whose runners never
become ready, with a 10 ms poll interval. After 20 polls to settle, it measures the process's
CPU time over ``--polls`` polls, divided by N × polls. The fake backend builds a status per
runner per poll, as a real one parses its reply; it is the same for any version of the trigger,
so an A/B of two commits (run this file from each) compares the trigger and poller only.
Creates nothing outside this process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import REPO

sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args(argv)

    import pytest

    from airflow_provider_runners.testing.contract import use_backend
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger
    from tests.unit.test_poller_trigger import FakeBackend, make_handle

    full_gc_ms: list[float] = []
    began = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                full_gc_ms.append((time.perf_counter() - began[0]) * 1000)

    backend = FakeBackend(pending_polls=10**9)
    monkeypatch = pytest.MonkeyPatch()
    use_backend(monkeypatch, "runners_fake_test", backend)
    gc.callbacks.append(on_gc)

    async def run() -> tuple[float, int, int, float]:
        deadline = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        triggers = [
            RunnerReadyTrigger(
                conn_id="runners_fake_test",
                handle=make_handle(k).to_xcom(),
                deadline=deadline,
                poll_interval=0.01,
            )
            for k in range(args.n)
        ]

        async def first_event(trigger: RunnerReadyTrigger) -> Any:
            return await anext(aiter(trigger.run()))

        async def polls_reached(count: int) -> None:
            while backend.calls < count:  # noqa: ASYNC110 - the fake backend's counter has no event
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(first_event(t)) for t in triggers]
        await polls_reached(20)
        calls0, cpu0, gcs0 = backend.calls, time.process_time(), len(full_gc_ms)
        await polls_reached(calls0 + args.polls)
        calls, cpu = backend.calls - calls0, time.process_time() - cpu0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return cpu, calls, len(full_gc_ms) - gcs0, sum(full_gc_ms[gcs0:])

    cpu, polls, gcs, gc_ms = asyncio.run(run())
    monkeypatch.undo()
    print(
        f"N={args.n}: {cpu * 1e6 / (args.n * polls):.1f} µs CPU per waiter per poll over {polls} polls; "
        f"{gcs} full garbage collections ({gc_ms:.0f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
