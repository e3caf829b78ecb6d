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

and then closes the cluster and writes ``status: stopped``. Workers are started with a
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


def _now() -> datetime:
    return datetime.now(UTC)


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace the state file (readers never see a half-written file)."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _warm_imports() -> None:
    """Import what a first DataFrame graph needs while the DAG moves on to its first work task."""
    try:
        import dask.dataframe  # noqa: F401
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

    from distributed import LocalCluster

    idle_timeout_s = settings.get("idle_timeout_s")
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
        info = cluster.scheduler_info
        state.update(
            status="running",
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
        threading.Thread(target=_warm_imports, name="warm-imports", daemon=True).start()
        expires_at = datetime.fromisoformat(state["expires_at"])
        # The ttl also counts on this process's own monotonic clock from its start, so the backstop
        # holds when the provisioning process's wall clock is ahead of this one (docs/testing.md).
        ttl_s = settings.get("ttl_s")
        ends_by = started + float(ttl_s) if ttl_s is not None else float("inf")
        while not stop.wait(0.5):
            if _now() >= expires_at or time.monotonic() >= ends_by:
                reason["value"] = "ttl-expired"
                break
            scheduler = cluster.scheduler
            if "clos" in str(getattr(scheduler, "status", "")):
                reason["value"] = "scheduler-exited"
                break
            # The scheduler keeps idle_since itself (no task queued or processing since then).
            idle_since = getattr(scheduler, "idle_since", None)
            if idle_timeout_s and idle_since and time.time() - idle_since >= idle_timeout_s:
                reason["value"] = "idle-timeout"
                break
    finally:
        print(f"local_dask {state['resource_id']}: stopping ({reason['value']})", flush=True)
        try:
            cluster.close(timeout=20)
        finally:
            latest = json.loads(state_path.read_text())
            if latest.get("status") != "stopped":
                state.update(status="stopped", stop_reason=reason["value"], stopped_at=_now().isoformat())
                state["pid"], state["pid_create_time"] = latest.get("pid"), latest.get("pid_create_time")
                write_state(state_path, state)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
