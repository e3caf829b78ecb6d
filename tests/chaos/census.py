"""Count what is running on the machine, the way an operator would: state files and processes.

A *runner* here is what a backend leaves on the host while it lives:

* ``local_dask`` — a state file ``runners/local_dask/<id>.json`` not marked ``stopped`` whose
  daemon process is alive (``live``), or not alive (``stale``: state the reaper must clean);
* ``local_host`` — a record ``runners/local_host/host-*.json`` (its workspace next to it);
* any process whose working directory lies under ``runners/`` (a Dask worker, a host command):
  ``procs``. A daemon that was SIGKILLed leaves its workers here until they notice.

:class:`Sampler` takes a census every ``interval`` seconds in a thread while a test runs and
remembers every sample where one lineage had two live runners at once (a duplicate).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psutil


@dataclass(frozen=True)
class Runner:
    backend: str
    resource_id: str
    lineage_key: str
    kind: str  # live | stale


@dataclass(frozen=True)
class Proc:
    pid: int
    cwd: str
    lineage_key: str  # "?" when no runner claims it
    cmdline: str


@dataclass
class Census:
    at: float
    runners: list[Runner]
    procs: list[Proc]  # processes working for a runner (daemons, Dask workers, host commands)

    def live(self) -> list[Runner]:
        return [r for r in self.runners if r.kind == "live"]

    def left(self, lineages: set[str] | None = None, ignore_pids: frozenset[int] = frozenset()) -> list[str]:
        """Everything still there (runners, stale state, processes), as readable strings; only
        what belongs to ``lineages`` (and processes nobody claims but ``ignore_pids``) when given."""

        def mine(key: str) -> bool:
            return lineages is None or key in lineages or key == "?"

        found = [
            f"{r.backend}:{r.resource_id} ({r.kind}, lineage {r.lineage_key})"
            for r in self.runners
            if mine(r.lineage_key)
        ]
        found += [
            f"pid {p.pid} ({p.cmdline[:80]}) in {p.cwd}, lineage {p.lineage_key}"
            for p in self.procs
            if mine(p.lineage_key) and p.pid not in ignore_pids
        ]
        return found

    def duplicates(self) -> dict[str, list[str]]:
        by_lineage: dict[str, list[str]] = defaultdict(list)
        for r in self.live():
            by_lineage[r.lineage_key].append(f"{r.backend}:{r.resource_id}")
        return {key: ids for key, ids in by_lineage.items() if len(ids) > 1}


def _read_json(path: Path) -> dict[str, Any] | None:
    for _ in range(3):  # writes are atomic renames; a vanished file is simply gone
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            time.sleep(0.01)
    return None


def _daemon_alive(state: dict[str, Any]) -> bool:
    pid, started = state.get("pid"), state.get("pid_create_time")
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if started is not None and abs(proc.create_time() - float(started)) >= 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def take_census(home: Path, known: dict[str, str] | None = None) -> Census:
    """What runs now under ``home``. ``known`` (resource id -> lineage key) is filled in and
    used to name the lineage of processes whose runner's file is already gone."""
    at = time.monotonic()
    root = home / "runners"
    known = {} if known is None else known
    runners: list[Runner] = []
    owner: dict[int, str] = {}  # daemon pid -> lineage
    for path in sorted((root / "local_dask").glob("*.json")):
        state = _read_json(path)
        if not state:
            continue
        lineage = str(state.get("lineage_key"))
        known[path.stem] = lineage
        if state.get("pid"):
            owner[int(state["pid"])] = lineage
        if state.get("status") == "stopped":
            continue
        starting_now = state.get("status") == "starting" and not state.get("pid")
        kind = "live" if starting_now or _daemon_alive(state) else "stale"
        runners.append(Runner("local_dask", path.stem, lineage, kind))
    for path in sorted((root / "local_host").glob("host-*.json")):
        record = _read_json(path)
        if record is None:
            continue
        lineage = str((record.get("handle") or {}).get("lineage_key"))
        known[path.stem] = lineage
        runners.append(Runner("local_host", path.stem, lineage, "live"))
    procs = []
    prefix = str(root) + "/"
    host_prefix = str(root / "local_host") + "/"
    for proc in psutil.process_iter(["pid"]):
        try:
            cwd = proc.cwd()
            if not cwd.startswith(prefix) or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            lineage = "?"
            if cwd.startswith(host_prefix):
                lineage = known.get(cwd[len(host_prefix) :].split("/")[0], "?")
            else:
                for candidate in [proc, *proc.parents()]:
                    if candidate.pid in owner:
                        lineage = owner[candidate.pid]
                        break
            procs.append(Proc(proc.pid, cwd, lineage, " ".join(proc.cmdline())))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return Census(at=at, runners=runners, procs=procs)


@dataclass
class Sampler:
    """Censuses in a background thread; duplicates and the timeline of runner counts."""

    home: Path
    interval: float = 0.5
    samples: int = 0
    max_live: int = 0
    duplicates: list[tuple[float, dict[str, list[str]]]] = field(default_factory=list)
    lineages: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    last_seen: dict[str, float] = field(default_factory=dict)  # lineage -> last census it was in
    known: dict[str, str] = field(default_factory=dict)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (t, runners, procs)
    baseline_pids: frozenset[int] = frozenset()  # runner processes that were there before
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.baseline_pids = frozenset(p.pid for p in take_census(self.home, self.known).procs)
        self._thread = threading.Thread(target=self._loop, name="runner-census", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            census = take_census(self.home, self.known)
            self.samples += 1
            live = census.live()
            self.max_live = max(self.max_live, len(live))
            for runner in census.runners:
                self.lineages[runner.lineage_key].add(f"{runner.backend}:{runner.resource_id}")
                self.last_seen[runner.lineage_key] = census.at
            for proc in census.procs:
                self.last_seen[proc.lineage_key] = census.at
            if dupes := census.duplicates():
                self.duplicates.append((census.at, dupes))
            self.timeline.append((census.at, len(census.runners), len(census.procs)))
            self._stop.wait(self.interval)
