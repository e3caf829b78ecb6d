"""Run a local labgrid coordinator with example benches: ``airflow-runners bench-coordinator``.

For the demo, docker-compose (service ``labgrid-coordinator``), the test suite and the
benchmarks. It is labgrid's own coordinator (``labgrid.remote.coordinator``, gRPC), started
in a working directory that first receives the places of a small YAML file::

    places:
      imx8-a: {tags: {board: imx8, lab: muc}}
      stm32-a: {tags: {board: stm32}, matches: ["*/stm32-a/*"]}

Places already in the directory's ``places.yaml`` (the coordinator's own state) are kept.

Two test knobs shorten labgrid's fixed timings (both default to labgrid's own values):
``--reservation-timeout`` (labgrid: a reservation expires 60 s after its last poll) and
``--schedule-interval`` (labgrid: expiry and scheduling run every 15 s, and on every change).

It prints ``listening on HOST:PORT`` when ready (``--listen 127.0.0.1:0`` picks a free port).
Stop it with SIGTERM (graceful, up to 5 s) or SIGINT. Files it leaves: ``places.yaml`` and
``resources.yaml`` in ``--workdir``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

LABGRID_RESERVATION_TIMEOUT_S = 60.0


def labgrid_places(spec: dict[str, Any]) -> dict[str, Any]:
    """Our small places file -> labgrid's ``places.yaml`` entries."""
    now = time.time()
    out = {}
    for name, entry in (spec.get("places") or {}).items():
        entry = entry or {}
        matches = []
        for pattern in entry.get("matches") or []:
            parts = str(pattern).split("/")
            if not 3 <= len(parts) <= 4:
                raise ValueError(f"places.{name}.matches: {pattern!r} is not 'exporter/group/cls[/name]'")
            matches.append(dict(zip(("exporter", "group", "cls", "name"), parts, strict=False)))
        out[str(name)] = {
            "aliases": [],
            "comment": str(entry.get("comment", "")),
            "tags": {str(k): str(v) for k, v in (entry.get("tags") or {}).items()},
            "matches": [{"name": None, "rename": None, **m} for m in matches],
            "created": now,
            "changed": now,
        }
    return out


def write_places(workdir: Path, places_file: Path | None) -> int:
    """Merge the places of ``places_file`` into ``workdir/places.yaml``; return how many were added."""
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / "places.yaml"
    existing = yaml.safe_load(target.read_text()) if target.exists() else None
    current: dict[str, Any] = existing or {}
    added = 0
    if places_file is not None:
        for name, entry in labgrid_places(yaml.safe_load(places_file.read_text()) or {}).items():
            if name not in current:
                current[name] = entry
                added += 1
    target.write_text(yaml.safe_dump(current, sort_keys=True))
    return added


def patch_timings(reservation_timeout: float | None, schedule_interval: float | None) -> None:
    """Shorten labgrid's hard-coded reservation expiry and scheduling period (tests, demos)."""
    from labgrid.remote import common, coordinator

    if reservation_timeout:
        original_init = common.Reservation.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            if "timeout" not in kwargs:
                self.timeout = time.time() + reservation_timeout

        def refresh(self: Any, delta: float = LABGRID_RESERVATION_TIMEOUT_S) -> None:
            if delta == LABGRID_RESERVATION_TIMEOUT_S:
                delta = reservation_timeout
            self.timeout = max(self.timeout, time.time() + delta)

        common.Reservation.__init__ = __init__
        common.Reservation.refresh = refresh

    if schedule_interval:

        async def poll(self: Any, step_func: Any) -> None:
            while not self.loop.is_closed():
                try:
                    await asyncio.sleep(schedule_interval)
                    await step_func()
                except asyncio.CancelledError:
                    break
                except Exception:  # noqa: BLE001 - as labgrid's own loop: log and go on
                    traceback.print_exc()

        coordinator.Coordinator.poll = poll


class LocalCoordinator:
    """This module as a child process on 127.0.0.1 (tests, benchmarks, the demo).

    ``start()`` waits for ``listening on``; ``port`` is then the bound port (kept across
    ``restart()``). ``stop()`` ends it (SIGTERM, SIGKILL after ``grace``); ``kill()`` crashes it.
    """

    def __init__(
        self,
        workdir: Path,
        places: dict[str, Any] | None = None,
        reservation_timeout: float | None = None,
        schedule_interval: float | None = None,
        port: int = 0,
    ) -> None:
        self.workdir = Path(workdir)
        self.places = places
        self.reservation_timeout = reservation_timeout
        self.schedule_interval = schedule_interval
        self.port = port
        self.proc: Any = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalCoordinator:
        import subprocess

        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "airflow_provider_runners.backends.labgrid.coordinator",
            "--listen",
            self.address,
        ]
        argv += ["--workdir", str(self.workdir)]
        if self.places is not None:
            places_file = self.workdir / "bench-places.yaml"
            places_file.write_text(yaml.safe_dump({"places": self.places}))
            argv += ["--places", str(places_file)]
        if self.reservation_timeout:
            argv += ["--reservation-timeout", str(self.reservation_timeout)]
        if self.schedule_interval:
            argv += ["--schedule-interval", str(self.schedule_interval)]
        log = open(self.workdir / "coordinator.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "0", "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self._log = log
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                self._drain()
                return self
        self.stop()
        raise RuntimeError(f"labgrid coordinator did not start; see {self.workdir / 'coordinator.log'}")

    def _drain(self) -> None:
        """Keep reading its stdout (labgrid prints every request) so it never blocks on a full pipe."""
        import threading

        stdout = self.proc.stdout
        log = self._log

        def pump() -> None:
            for line in iter(stdout.readline, b""):
                log.write(line)
                log.flush()

        threading.Thread(target=pump, daemon=True).start()

    def stop(self, grace: float = 8.0) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="airflow-runners bench-coordinator",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--listen", default="127.0.0.1:20408", help="HOST:PORT (port 0: a free one)")
    parser.add_argument("--workdir", default=".", help="the coordinator's state directory")
    parser.add_argument("--places", default=None, help="YAML file of places to create (see above)")
    parser.add_argument("--reservation-timeout", type=float, default=None, help="seconds (labgrid: 60)")
    parser.add_argument("--schedule-interval", type=float, default=None, help="seconds (labgrid: 15)")
    return parser


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    added = write_places(workdir, Path(args.places) if args.places else None)
    print(f"bench coordinator: {added} place(s) added in {workdir}", flush=True)
    patch_timings(args.reservation_timeout, args.schedule_interval)
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    os.chdir(workdir)
    from labgrid.remote import coordinator

    sys.argv = ["labgrid-coordinator", "--listen", args.listen]
    coordinator.main()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
