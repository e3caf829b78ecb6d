"""The process that owns one local Dask cluster (started by the ``local_dask`` backend).

Run as ``python -m airflow_provider_runners.backends.local_dask.daemon STATE_FILE``. It reads
its settings from the state file the backend wrote, starts a ``distributed.LocalCluster``
(scheduler on 127.0.0.1, worker processes), writes ``status: running`` with the scheduler
address, then waits for one of:

* SIGTERM / SIGINT (teardown)                  -> stop_reason ``teardown``
* the ttl deadline (``expires_at``, or ``ttl_s`` after its own start, whichever comes first)
                                               -> stop_reason ``ttl-expired``   (the backstop)
* no task queued or running for ``idle_timeout`` (the scheduler's ``idle_since``) -> ``idle-timeout``
* the scheduler dying                          -> ``scheduler-exited``
* an unclaimed warm-pool member's idle deadline -> ``pool-idle`` (pool.py)

and then closes the cluster and writes ``status: stopped``. After each of its two writes
(running, stopped) it writes a byte into the state file's FIFO (``<resource_id>.signal``) so
that a waiting provision reacts at once instead of at its next poll. Workers are started with a
``death_timeout`` so that even a SIGKILLed daemon leaves no worker behind for long.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Seconds the cluster may take for all its workers to join before the runner fails.
WORKER_JOIN_TIMEOUT_S = 120
#: How long a worker outlives a daemon that was SIGKILLed. distributed also uses it as the nanny's
#: limit for *starting* a worker process: at 30 s, all 5 clusters started at once failed with
#: ``TimeoutError`` on a loaded 2-core machine (tests/chaos, docs/reliability.md).
WORKER_DEATH_TIMEOUT_S = 90
#: Seconds the daemon waits for its import of dask.dataframe before it reports running anyway.
PRELOAD_TIMEOUT_S = 60
#: What the daemon (its scheduler) and every worker import before the cluster reports running,
#: so that a first DataFrame job pays no import (the state's ``preloaded`` lists what the
#: scheduler has; distributed's worker ``preload`` imports them in the workers).
PRELOAD_MODULES = ("dask.dataframe",)


def _fork_workers_from_a_preloaded_server() -> None:
    """Start the workers by forking a server process that imported distributed and
    ``PRELOAD_MODULES`` once (multiprocessing's forkserver), instead of spawning each worker as a
    fresh interpreter that imports them all again: on 2 cores that is the largest part of a cold
    cluster's start (docs/benchmarks.md, issue 18)."""
    import dask
    from distributed.utils import get_mp_context

    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    get_mp_context().set_forkserver_preload(["distributed", *PRELOAD_MODULES])


def _now() -> datetime:
    return datetime.now(UTC)


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace the state file (readers never see a half-written file)."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def try_claim(state_dir: Path, resource_id: str, by: str) -> bool:
    """Atomically take ``resource_id`` for ``by``: True for exactly one caller, ever (an
    ``O_EXCL`` create of ``<resource_id>.claim``; the warm pool, pool.py, claims with it)."""
    try:
        fd = os.open(state_dir / f"{resource_id}.claim", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(by)
    return True


def signal_path(state_path: Path) -> Path:
    """The FIFO the backend creates next to a state file; the daemon writes a byte into it when
    the cluster is running and when it stopped (``LocalDaskBackend.wait_for_change``)."""
    return state_path.with_suffix(".signal")


def signal_change(state_path: Path) -> None:
    """Wake whoever waits on the state file's FIFO; nobody waiting is fine."""
    try:
        fd = os.open(signal_path(state_path), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no FIFO (older backend) or no reader (ENXIO): nobody waits
        return
    try:
        os.write(fd, b"!")
    except OSError:  # full pipe: the reader has a wake-up pending anyway
        pass
    finally:
        os.close(fd)


def _warm_imports() -> None:
    """Import ``PRELOAD_MODULES`` (the scheduler unpickles a DataFrame graph with them)."""
    import importlib

    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - dask without its dataframe extra
            pass


def main(state_path: Path) -> int:
    started = time.monotonic()
    state = json.loads(state_path.read_text())
    settings = state["settings"]
    stop = threading.Event()
    reason = {"value": "teardown"}

    def _on_signal(signum: int, _frame: object) -> None:
        reason["value"] = "teardown"
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    # A warm-pool refill starts after a pause, so the run that claimed a member has the CPUs to
    # itself for its first job (pool.py, REFILL_DELAY_S). A teardown meanwhile ends it at once.
    delay = float((state.get("pool") or {}).get("start_delay_s") or 0)
    if delay and stop.wait(delay):
        _record_stopped(state_path, state, reason["value"])
        return 0

    from distributed import LocalCluster

    _fork_workers_from_a_preloaded_server()

    # Import dask.dataframe while the cluster starts, and finish before reporting running: the
    # scheduler unpickles a DataFrame graph by importing it, and two threads importing that
    # package at once can fail with "partially initialized module" (its modules import each
    # other), which failed the first job of a cluster whose job arrived during this import.
    importing = threading.Thread(target=_warm_imports, name="warm-imports", daemon=True)
    importing.start()
    cluster = LocalCluster(
        n_workers=settings["workers"],
        threads_per_worker=settings["threads_per_worker"],
        memory_limit=settings["memory_limit"],
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0" if settings.get("dashboard", True) else None,
        death_timeout=WORKER_DEATH_TIMEOUT_S,
        silence_logs=30,
        preload=list(PRELOAD_MODULES),  # each worker imports them before it joins the scheduler
    )
    try:
        latest = json.loads(state_path.read_text())
        if latest.get("status") != "starting":  # torn down while starting: do not resurrect it
            reason["value"] = f"teardown-while-starting ({latest.get('status')})"
            state = latest
            return 0
        state = latest
        # Ready means every worker has joined the scheduler (the cached scheduler_info can lag).
        cluster.wait_for_workers(settings["workers"], timeout=WORKER_JOIN_TIMEOUT_S)
        importing.join(timeout=PRELOAD_TIMEOUT_S)
        info = cluster.scheduler_info
        state.update(
            status="running",
            preloaded=sorted(m for m in PRELOAD_MODULES if m in sys.modules),
            ready_at=_now().isoformat(),
            scheduler_address=cluster.scheduler_address,
            dashboard_link=cluster.dashboard_link if settings.get("dashboard", True) else None,
            worker_count=len(info.get("workers", {})),
            worker_pids=sorted(
                w.pid for w in cluster.workers.values() if getattr(w, "pid", None) is not None
            ),
        )
        write_state(state_path, state)
        print(f"local_dask {state['resource_id']}: running at {cluster.scheduler_address}", flush=True)
        signal_change(state_path)
        # The ttl also counts on this process's own monotonic clock from its start, so the backstop
        # holds when the provisioning process's wall clock is ahead of this one (docs/testing.md);
        # not for a warm-pool member, whose ttl starts at its claim.
        ttl_s = settings.get("ttl_s")
        ends_by = started + float(ttl_s) if ttl_s is not None else float("inf")
        seen_mtime = 0
        while not stop.wait(0.5):
            # A warm-pool member (pool.py) learns its claim from the state file: lineage, ttl, idle.
            mtime = state_path.stat().st_mtime_ns
            if mtime != seen_mtime:
                seen_mtime, state = mtime, json.loads(state_path.read_text())
            pool = state.get("pool") or {}
            past_ttl = not pool and time.monotonic() >= ends_by
            if past_ttl or _now() >= datetime.fromisoformat(state["expires_at"]):
                if pool and "claimed_by" not in pool:
                    if try_claim(state_path.parent, state["resource_id"], "pool-idle"):
                        reason["value"] = "pool-idle"
                        break
                    continue  # a provision claimed it just now: re-read its ttl
                reason["value"] = "ttl-expired"
                break
            scheduler = cluster.scheduler
            if "clos" in str(getattr(scheduler, "status", "")):
                reason["value"] = "scheduler-exited"
                break
            # The scheduler keeps idle_since itself (no task queued or processing since then);
            # a pooled cluster counts from its claim.
            idle_timeout_s = state["settings"].get("idle_timeout_s")
            idle_since = getattr(scheduler, "idle_since", None)
            if idle_since and pool.get("claimed_at"):
                idle_since = max(idle_since, float(pool["claimed_at"]))
            if idle_timeout_s and idle_since and time.time() - idle_since >= idle_timeout_s:
                reason["value"] = "idle-timeout"
                break
    finally:
        print(f"local_dask {state['resource_id']}: stopping ({reason['value']})", flush=True)
        try:
            cluster.close(timeout=20)
        finally:
            _record_stopped(state_path, state, reason["value"])
    return 0


def _record_stopped(state_path: Path, state: dict[str, Any], reason: str) -> None:
    """Write ``status: stopped`` (merged: a claim written meanwhile is kept) and signal it."""
    latest = json.loads(state_path.read_text())
    if latest.get("status") != "stopped":
        if latest.get("status") == "starting":
            latest.update({k: v for k, v in state.items() if k not in latest})
        latest.update(status="stopped", stop_reason=reason, stopped_at=_now().isoformat())
        write_state(state_path, latest)
    signal_change(state_path)


if __name__ == "__main__":
    code = main(Path(sys.argv[1]))
    # The cluster is closed and "stopped" is written: leave without the interpreter's shutdown
    # (distributed's atexit hooks and thread joins add ~0.3 s that a teardown would wait for).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
