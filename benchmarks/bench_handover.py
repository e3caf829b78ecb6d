"""Bench hand-over on a real labgrid coordinator: release -> next waiter's acquisition, and
coordinator calls per waiting reservation per minute.

a) **Hand-over latency.** One bench; a holder has it; a waiter waits in a real
   ``RunnerReadyTrigger`` (shared poller, ``--interval`` s). The holder's teardown runs; we time
   from the end of the teardown to the waiter's ``ready`` event (bench acquired by the waiter).
   Target: within one poll interval. Side by side, the same with the naive teardown order
   (release the place, *then* cancel the reservation): labgrid's scheduler then sees the place
   still marked for the cancelled reservation and frees it only at its next periodic run
   (every 15 s), which is why the backend cancels first. The coordinator runs with labgrid's
   own timings (60 s expiry, 15 s scheduling).
b) **Calls per waiting reservation per minute.** ``--waiters`` reservations wait behind a held
   bench for ``--seconds`` with the poll interval and keep-alive divided by ``--speedup``
   (default 10: 0.2 s / 1.5 s for the real 2 s / 15 s); counts are scaled back to real minutes.
   Compared with a per-waiter poll once a second (``labgrid-client reserve --wait``).

    .venv/bin/python benchmarks/bench_handover.py [--rounds 5] [--interval 1.0] [--waiters 1 10 50]

Prints Markdown and writes ``benchmarks/results/bench_handover.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-handover-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from _common import fmt, machine, machine_line, md_table, summarize, write_json


def backend_for(address: str, cls: Any = None, **extra: Any) -> Any:
    from airflow_provider_runners.backends.labgrid.backend import LabgridBackend
    from airflow_provider_runners.core.backend import ConnectionConfig

    host, port = address.rsplit(":", 1)
    config = ConnectionConfig("bench", "runners_labgrid", host=host, port=int(port), extra=extra)
    return (cls or LabgridBackend)(config)


def request_for(task: str, board: str) -> Any:
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec

    spec = RunnerSpec.parse(
        {
            "runner_class": "bench",
            "profile": "any",
            "tags": {"tenant": "bench"},
            "options": {"tags": {"board": board}},
        }
    )
    lineage = Lineage("bench_handover", "run", f"{task}-{random.random()}")
    return ProvisionRequest.build(
        resolve_spec(spec, backend="labgrid"), lineage, lineage.attempt_token(1), "bench", {}
    )


def naive_backend_class() -> Any:
    """The same backend with the teardown order reversed (release, then cancel)."""
    from airflow_provider_runners.backends.labgrid.backend import LabgridBackend

    class ReleaseFirst(LabgridBackend):
        def teardown(self, handle: Any) -> Any:
            owner = str(handle.details["owner"])
            for place in self.client.places():
                if place.acquired == owner:
                    self.client.release(place.name, owner)
            for res in self.client.reservations():
                if res.owner == owner:
                    self.client.cancel(res.token)
            return None

    return ReleaseFirst


def wait_ready(backend: Any, handle: Any) -> Any:
    from airflow_provider_runners.core.backend import RunnerState

    while (status := backend.status(handle)).state is RunnerState.PENDING:
        time.sleep(0.05)
    return status


def handover(address: str, board: str, interval: float, rounds: int, cls: Any = None) -> list[float]:
    """Seconds from the end of the holder's teardown to the waiter's ready event, per round."""
    from airflow_provider_runners.triggers.poller import SharedStatusPoller
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

    latencies = []
    for _ in range(rounds):
        backend = backend_for(address, cls)
        holder = backend.create(request_for("holder", board))
        holder = holder.evolve(details=dict(wait_ready(backend, holder).details))
        waiter = backend.create(request_for("waiter", board))
        SharedStatusPoller._pollers.clear()
        trigger = RunnerReadyTrigger(
            "bench", waiter.to_xcom(), "2100-01-01T00:00:00+00:00", poll_interval=interval
        )
        trigger._backend = _async_const(backend_for(address))  # type: ignore[method-assign]
        released: dict[str, float] = {}

        def release(
            backend: Any = backend, holder: Any = holder, released: dict[str, float] = released
        ) -> None:
            time.sleep(random.uniform(1.0, 1.0 + interval))  # a random phase against the poll ticks
            backend.teardown(holder)
            released["at"] = time.monotonic()

        thread = threading.Thread(target=release)
        thread.start()

        async def first_event(trigger: Any = trigger) -> Any:
            async for event in trigger.run():
                return event

        event = asyncio.run(first_event())
        got = time.monotonic()
        thread.join()
        assert event.payload["status"] == "ready", event.payload
        latencies.append(got - released["at"])
        backend_for(address).teardown(waiter.evolve(details=event.payload["handle"]["details"]))
    return latencies


def _async_const(value: Any) -> Any:
    async def get() -> Any:
        return value

    return get


def calls_per_minute(
    address: str, board: str, waiters: int, seconds: float, speedup: float
) -> dict[str, Any]:
    """Coordinator calls per waiting reservation per (real) minute, through one shared poller."""
    from airflow_provider_runners.triggers.poller import SharedStatusPoller
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

    holder_backend = backend_for(address)
    holder = holder_backend.create(request_for("holder", board))
    holder = holder.evolve(details=dict(wait_ready(holder_backend, holder).details))
    backend = backend_for(address, keepalive_s=15.0 / speedup, poll_interval_s=2.0 / speedup)
    handles = [backend.create(request_for(f"w{i}", board)) for i in range(waiters)]
    backend.client.calls = 0
    SharedStatusPoller._pollers.clear()

    async def wait_all() -> None:
        triggers = []
        for handle in handles:
            trigger = RunnerReadyTrigger("bench", handle.to_xcom(), "2100-01-01T00:00:00+00:00")
            trigger._backend = _async_const(backend)  # type: ignore[method-assign]
            triggers.append(trigger)

        async def run(trigger: Any) -> None:
            async for _ in trigger.run():
                return

        tasks = [asyncio.create_task(run(t)) for t in triggers]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(wait_all())
    calls = backend.client.calls
    alive = {r.token for r in backend.client.reservations() if r.state == "waiting"}
    kept = sum(1 for h in handles if h.details["reservation"] in alive)
    for handle in handles:
        backend.teardown(handle)
    holder_backend.teardown(holder)
    real_minutes = seconds * speedup / 60.0
    return {
        "waiters": waiters,
        "calls": calls,
        "per_reservation_per_min": calls / waiters / real_minutes,
        "kept_alive": kept,
        "naive_per_reservation_per_min": 60.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval for the hand-over (s)")
    parser.add_argument("--waiters", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=12.0, help="wait measured per waiter count (s)")
    parser.add_argument("--speedup", type=float, default=10.0)
    args = parser.parse_args(argv)

    from airflow_provider_runners.backends.labgrid.coordinator import LocalCoordinator

    places = {"bench-a": {"tags": {"board": "handover"}}, "bench-b": {"tags": {"board": "calls"}}}
    coord = LocalCoordinator(Path(tempfile.mkdtemp(prefix="bench-labgrid-")), places=places).start()
    try:
        sys.stderr.write(f"coordinator at {coord.address} (labgrid's own timings)\n")
        ours = handover(coord.address, "handover", args.interval, args.rounds)
        sys.stderr.write(f"cancel->release: {ours}\n")
        naive = handover(
            coord.address, "handover", args.interval, max(2, args.rounds // 2), naive_backend_class()
        )
        sys.stderr.write(f"release->cancel: {naive}\n")
        calls = [
            calls_per_minute(coord.address, "calls", n, args.seconds, args.speedup) for n in args.waiters
        ]
    finally:
        coord.stop()

    s_ours, s_naive = summarize(ours), summarize(naive)
    print(f"### Bench hand-over (labgrid {_version()}; poll interval {args.interval:g} s)\n")
    print(
        md_table(
            ["teardown order", "rounds", "median (s)", "p90 (s)", "max (s)", "median / poll interval"],
            [
                [
                    "cancel, then release (the backend)",
                    s_ours["n"],
                    fmt(s_ours["median"]),
                    fmt(s_ours["p90"]),
                    fmt(s_ours["max"]),
                    fmt(s_ours["median"] / args.interval),
                ],
                [
                    "release, then cancel (naive)",
                    s_naive["n"],
                    fmt(s_naive["median"]),
                    fmt(s_naive["p90"]),
                    fmt(s_naive["max"]),
                    fmt(s_naive["median"] / args.interval),
                ],
            ],
        )
    )
    print(
        f"\n### Coordinator calls per waiting reservation (poll 2 s, keep-alive 15 s; run {args.speedup:g}x faster, scaled)\n"
    )
    print(
        md_table(
            [
                "waiting reservations",
                "calls in the window",
                "calls / reservation / min",
                "kept alive",
                "per-waiter 1 s poll (labgrid-client reserve --wait)",
            ],
            [
                [
                    c["waiters"],
                    c["calls"],
                    fmt(c["per_reservation_per_min"], 1),
                    f"{c['kept_alive']}/{c['waiters']}",
                    fmt(c["naive_per_reservation_per_min"], 0),
                ]
                for c in calls
            ],
        )
    )
    print("\n" + machine_line(machine()))
    write_json(
        "bench_handover",
        {"handover_s": ours, "naive_handover_s": naive, "interval_s": args.interval, "calls": calls},
    )
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("labgrid")


if __name__ == "__main__":
    raise SystemExit(main())
