"""``local_dask``: a real dask.distributed LocalCluster in its own process (conn type ``runners_local_dask``).

The embedded default backend: it needs no cloud account, runs wherever the Airflow worker
runs (docker-compose, a laptop, CI) and is what ``make demo`` uses.

**Resources created** (all on the worker host, under the state directory)

==========================  ================================================================
what                        where / name
==========================  ================================================================
a daemon process            ``python -m airflow_provider_runners.backends.local_dask.daemon``,
                            its own session (it outlives the task that started it)
its LocalCluster            scheduler on ``127.0.0.1:<free port>``, N worker processes
a state file                ``<state_dir>/<resource_id>.json``: lineage key, pid, address,
                            ``expires_at``, status (starting / running / stopped)
a log file                  ``<state_dir>/<resource_id>.log``
==========================  ================================================================

``state_dir`` is the Connection extra ``state_dir``, default ``$AIRFLOW_HOME/runners/local_dask``.
Work tasks in other processes connect by the scheduler address in the handle.

**Backstop.** The daemon exits by itself at ``expires_at`` (the spec's ttl) and, with an
``idle_timeout``, when the scheduler has been idle that long — even if teardown never runs.
Workers have a ``death_timeout``, so they follow a daemon that was SIGKILLed.

**Connection extras** (all optional): ``state_dir``; ``worker_env`` — a mapping of
environment variables for the workers, treated as secrets (masked, never written to the
handle, state file or evidence); ``dashboard`` (default true); ``pool_size`` (0-16, default 0)
and ``pool_idle`` (seconds, default 600): a warm pool of pre-started clusters per profile that
a provision claims at once (see ``pool.py`` for its resources, isolation and cleanup).

**Manual cleanup**::

    airflow-runners reap                      # ends every expired local runner
    grep -l '"status": "running"' $AIRFLOW_HOME/runners/local_dask/*.json   # what is live
    kill -TERM -<pid>                         # one cluster (its process group)
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import psutil
from pydantic import BaseModel, ConfigDict, PositiveInt

from airflow_provider_runners.backends.local_dask.daemon import signal_path, write_state
from airflow_provider_runners.core.backend import (
    Backend,
    ConnectionConfig,
    ConnField,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.catalog import effective_vcpus
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.core.runtime import host_identity, runtime_versions

TEARDOWN_GRACE_S = 30.0
_INHERITED_DASK_MARKERS = frozenset({"__DASK_PARENT_PID"})


def default_state_dir() -> Path:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / "runners" / "local_dask"


class LocalDaskOptions(BaseModel):
    """``spec.options`` of a local Dask cluster: override the profile's sizes."""

    model_config = ConfigDict(extra="forbid")
    workers: PositiveInt | None = None
    threads_per_worker: PositiveInt | None = None
    memory_limit: str | None = None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of /proc/<pid>/stat);
    None without /proc or without the process. Unlike psutil's ``create_time()`` (those ticks
    plus the boot time the kernel derives from the wall clock, re-read on every call) a clock
    adjustment never changes it: a daemon checked right after an NTP step once looked like a
    different process, and its provision failed with "daemon exited while starting"."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


class LocalDaskBackend(Backend):
    """Dask clusters as local processes. See the module docstring for resources and cleanup."""

    name = "local_dask"
    conn_type = "runners_local_dask"
    hook_name = "Runners: local Dask cluster"
    placeholders: ClassVar[Mapping[str, str]] = {"extra": '{"worker_env": {"AWS_PROFILE": "etl"}}'}
    conn_fields: ClassVar[Mapping[str, ConnField]] = {
        "state_dir": ConnField(
            "State directory",
            "Where the cluster daemons keep their state files.",
            placeholder="/opt/airflow/runners/local_dask",
        ),
        "dashboard": ConnField("Dashboard", "Serve the Dask dashboard.", type="boolean", default=True),
        "pool_size": ConnField(
            "Warm pool size",
            "Pre-started clusters kept per profile; a provision claims one at once (0: no pool).",
            type="integer",
            default=0,
        ),
        "pool_idle": ConnField(
            "Warm pool idle seconds",
            "An unclaimed pooled cluster ends after this many seconds.",
            type="number",
            default=600,
        ),
    }
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dask_cluster"})
    options_model: ClassVar[type[BaseModel] | None] = LocalDaskOptions
    poll_interval = 0.1  # reads a local file: cheap
    idle_timeout_unsupported: ClassVar[str | None] = None  # the daemon reads the scheduler's idle_since
    secret_extra_fields: ClassVar[frozenset[str]] = frozenset({"worker_env"})

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        extra = config.extra
        self.state_dir = Path(extra.get("state_dir") or default_state_dir()).expanduser()
        self.worker_env: dict[str, str] = {str(k): str(v) for k, v in (extra.get("worker_env") or {}).items()}
        self.dashboard = bool(extra.get("dashboard", True))
        self._seen: dict[str, int] = {}  # state file mtimes status() read (wait_for_change)
        from airflow_provider_runners.backends.local_dask.pool import pool_config

        self.pool_size, self.pool_idle_s = pool_config(config.conn_id, extra)

    def batch_key(self) -> str:
        return f"{self.name}:{self.state_dir}"

    # -- paths and state ---------------------------------------------------------------------
    def _state_path(self, resource_id: str) -> Path:
        return self.state_dir / f"{resource_id}.json"

    def _read(self, resource_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_path(resource_id).read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:  # pragma: no cover - writes are atomic
            return None

    def _states(self) -> list[dict[str, Any]]:
        if not self.state_dir.is_dir():
            return []
        states = []
        for path in sorted(self.state_dir.glob("*.json")):
            state = self._read(path.stem)
            if state is not None and state.get("managed_by") == MANAGED_BY:
                states.append(state)
        return states

    @staticmethod
    def _alive(state: dict[str, Any]) -> bool:
        """The daemon process exists and is the one we started: same pid *and* start time.

        (Not its command line: distributed renames a scheduler process's title.)
        """
        pid, started = state.get("pid"), state.get("pid_create_time")
        if not pid or started is None:
            return False
        try:
            proc = psutil.Process(int(pid))
            ticks = state.get("pid_start_ticks")
            if ticks is not None and (now := start_ticks(int(pid))) is not None:
                same = now == int(ticks)
            else:  # recorded by an older version, or no /proc: the wall-clock create time
                same = abs(proc.create_time() - float(started)) < 0.05
            return same and proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return False

    def _handle(self, state: dict[str, Any]) -> RunnerHandle:
        handle = RunnerHandle.model_validate(state["handle"])
        endpoints = {}
        if state.get("scheduler_address"):
            endpoints["scheduler"] = state["scheduler_address"]
        if state.get("dashboard_link"):
            endpoints["dashboard"] = state["dashboard_link"]
        return handle.evolve(endpoints=endpoints) if endpoints else handle

    # -- interface ---------------------------------------------------------------------------
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        resource_id = f"ld-{request.attempt_token}"
        existing = self._read(resource_id) or self._claimed_by(request.attempt_token)
        if existing is not None and self._alive(existing):  # same token: idempotent
            return self._handle(existing)
        spec = request.resolved.spec
        profile = request.resolved.profile
        options = spec.options
        now = datetime.now(UTC)
        expires_at = request.expires_at
        handle = RunnerHandle(
            backend=self.name,
            runner_class=spec.runner_class,
            resource_id=resource_id,
            conn_id=request.conn_id,
            lineage_key=request.lineage.key,
            attempt_token=request.attempt_token,
            created_at=now,
            expires_at=expires_at,
            environment=request.resolved.environment,
            profile=spec.profile,
            tags=request.resource_labels(),
            details={"state_file": str(self._state_path(resource_id)), "host": socket.gethostname()},
            pricing=request.pricing(),
        )
        settings = {
            "workers": int(options.get("workers", profile.workers or 1)),
            "threads_per_worker": int(options.get("threads_per_worker", profile.threads_per_worker or 1)),
            "memory_limit": str(options.get("memory_limit", f"{profile.memory_gib or 1}GiB")),
            "idle_timeout_s": spec.idle_timeout.total_seconds() if spec.idle_timeout else None,
            "ttl_s": spec.ttl.total_seconds(),
            "dashboard": self.dashboard,
        }
        state: dict[str, Any] = {
            "managed_by": MANAGED_BY,
            "resource_id": resource_id,
            "lineage_key": request.lineage.key,
            "status": "starting",
            "created_at": now.isoformat(),
            "expires_at": expires_at.isoformat(),
            "settings": settings,
            "worker_env_names": sorted(self.worker_env),
            "handle": handle.to_xcom(),
        }
        if self.pool_size:
            from airflow_provider_runners.backends.local_dask import pool

            key = pool.pool_key(request.conn_id, request.resolved.environment, spec.profile, settings)
            claimed = pool.claim(self, request, key, settings, handle)
            pid = None if claimed else self._spawn(resource_id, state)
            pool.refill(self, key, settings, handle)  # does not wait for the new members
            if claimed:
                return claimed
        else:
            pid = self._spawn(resource_id, state)
        return handle.evolve(details={"pid": pid})

    def _spawn(self, resource_id: str, state: dict[str, Any]) -> int:
        """Write ``state`` and start its daemon in its own session; the daemon's pid."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state_path = self._state_path(resource_id)
        if not signal_path(state_path).exists():
            os.mkfifo(signal_path(state_path), 0o600)
        write_state(state_path, state)
        # A process that ever hosted a LocalCluster carries distributed's parent marker; passing
        # it on would make the daemon's scheduler think it is a worker child of this task.
        env = {k: v for k, v in os.environ.items() if k not in _INHERITED_DASK_MARKERS}
        env.update(self.worker_env, PYTHONUNBUFFERED="1")
        with open(self.state_dir / f"{resource_id}.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "airflow_provider_runners.backends.local_dask.daemon",
                    str(state_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.state_dir,
                start_new_session=True,  # outlives the task process and its process group
                close_fds=True,
            )
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:  # died at once; status() reports it as failed
            create_time = 0.0
        # The daemon rewrites the file when running; merge so its update is never lost.
        latest = self._read(resource_id) or state
        latest.update(pid=proc.pid, pid_create_time=create_time, pid_start_ticks=start_ticks(proc.pid))
        write_state(state_path, latest)
        return proc.pid

    def _claimed_by(self, attempt_token: str) -> dict[str, Any] | None:
        """The warm-pool member this attempt already claimed (pool.py), if any."""
        if not self.pool_size:
            return None
        for state in self._states():
            if (state.get("pool") or {}).get("claimed_by") == attempt_token:
                return state
        return None

    def find(self, lineage_key: str) -> RunnerHandle | None:
        for state in self._states():
            if state.get("lineage_key") == lineage_key and state.get("status") != "stopped":
                return self._handle(state)
        return None

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        self._seen[handle.resource_id] = self._mtime(handle.resource_id)  # before the read
        state = self._read(handle.resource_id)
        if state is None:
            return RunnerStatus(RunnerState.GONE, "no state file: never created or cleaned up")
        status = state.get("status")
        if status == "stopped":
            return RunnerStatus(RunnerState.GONE, f"stopped ({state.get('stop_reason')})")
        if not self._alive(state):
            if (
                status == "starting"
                and time.time() - Path(self._state_path(handle.resource_id)).stat().st_mtime < 2
            ):
                return RunnerStatus(RunnerState.PENDING, "daemon starting")
            return RunnerStatus(RunnerState.FAILED, f"daemon exited while {status}: {self._log_tail(handle)}")
        if status == "running":
            return RunnerStatus(
                RunnerState.READY,
                f"running at {state['scheduler_address']}",
                endpoints=self._handle(state).endpoints,
                details={"pid": state["pid"]},
            )
        return RunnerStatus(RunnerState.PENDING, "starting the cluster")

    def _mtime(self, resource_id: str) -> int:
        try:
            return self._state_path(resource_id).stat().st_mtime_ns
        except OSError:
            return 0

    def wait_for_change(self, handles: Iterable[RunnerHandle], timeout: float) -> bool:
        """Block until a daemon of ``handles`` writes its FIFO (running, stopped) or ``timeout``
        seconds pass; True when one did (the ``WaitsForChange`` capability: a provision reacts
        within milliseconds, not at its next poll). A state file written since the last
        :meth:`status` counts as a change, so a signal sent before this call is not lost."""
        fds: list[int] = []
        selector = selectors.DefaultSelector()
        try:
            for handle in handles:
                try:  # O_RDWR: the FIFO never reports EOF while we hold it (Linux)
                    fd = os.open(signal_path(self._state_path(handle.resource_id)), os.O_RDWR | os.O_NONBLOCK)
                except OSError:
                    continue
                fds.append(fd)
                selector.register(fd, selectors.EVENT_READ)
            if any(self._mtime(h.resource_id) != self._seen.get(h.resource_id) for h in handles):
                return True
            if not fds:
                time.sleep(timeout)
                return False
            events = selector.select(timeout)
            for key, _ in events:
                with contextlib.suppress(BlockingIOError):
                    os.read(key.fd, 512)
            return bool(events)
        finally:
            selector.close()
            for fd in fds:
                os.close(fd)

    def _log_tail(self, handle: RunnerHandle, lines: int = 5) -> str:
        try:
            text = (self.state_dir / f"{handle.resource_id}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        state = self._read(handle.resource_id)
        if state is None:
            return TeardownResult(existed=False, message="already gone (no state file)")
        if state.get("status") == "stopped" and not self._alive(state):
            return TeardownResult(
                existed=False,
                message=f"already stopped ({state.get('stop_reason')})",
                details={"stop_reason": state.get("stop_reason"), "stopped_at": state.get("stopped_at")},
            )
        pid = int(state.get("pid") or 0)
        forced = False
        if pid and self._alive(state):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + TEARDOWN_GRACE_S
            while self._alive(state) and time.monotonic() < deadline:
                time.sleep(0.02)  # a liveness check costs well under a millisecond
            if self._alive(state):
                forced = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        final = self._read(handle.resource_id) or state
        if final.get("status") != "stopped":
            final.update(
                status="stopped", stop_reason="teardown-forced", stopped_at=datetime.now(UTC).isoformat()
            )
            write_state(self._state_path(handle.resource_id), final)
        return TeardownResult(
            existed=True,
            message="stopped" + (" (forced)" if forced else ""),
            details={
                "stop_reason": final.get("stop_reason"),
                "stopped_at": final.get("stopped_at"),
                "process_gone": not self._alive(final),
            },
        )

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        state = self._read(handle.resource_id) or {}
        settings = state.get("settings", {})
        return {
            "host": host_identity(),
            "runtime": runtime_versions(("dask", "distributed", "apache-airflow")),
            "pid": state.get("pid"),
            "scheduler_address": state.get("scheduler_address"),
            "workers": state.get("worker_count", settings.get("workers")),
            "threads_per_worker": settings.get("threads_per_worker"),
            "memory_limit": settings.get("memory_limit"),
            "vcpus": effective_vcpus(None, settings.get("workers") or 0, settings.get("threads_per_worker")),
            "worker_env_names": state.get("worker_env_names", []),
            "status": state.get("status"),
            "ready_at": state.get("ready_at"),
            "stop_reason": state.get("stop_reason"),
            "user": getpass.getuser(),
            "platform": platform.platform(),
        }

    def list_managed(self) -> list[RunnerHandle]:
        return [self._handle(s) for s in self._states() if s.get("status") != "stopped" and self._alive(s)]

    def stale(self) -> list[RunnerHandle]:
        """State files whose daemon died without writing 'stopped' (for the reaper)."""
        return [
            self._handle(s) for s in self._states() if s.get("status") != "stopped" and not self._alive(s)
        ]
