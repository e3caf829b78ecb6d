"""``local_host`` backend: a "dedicated host" that is the Airflow worker itself.

The local, runnable path for ``dedicated_host`` runners (docker-compose, laptops, CI): the
same DAG that runs commands on an EC2 host over SSM runs them here as subprocesses, so a
pipeline is developed locally and promoted by changing only the Connection.

Resources it creates, under ``state_dir`` (default ``$AIRFLOW_HOME/runners/local_host``):

* ``<resource_id>.json`` — the runner's record: lineage key, labels, expiry
  (``managed-by: airflow-provider-runners``); the reaper and ``find`` read it;
* ``<resource_id>/`` — the host's workspace: each command's working directory
  (``$RUNNER_WORKSPACE``); ephemeral like an EC2 host's disk, so put checkpoints and outputs
  in object storage;
* ``<resource_id>.pids/<pid>`` — one file per running command (its process group);
* ``<resource_id>.active`` — the activity mark for ``idle_timeout``
  (:mod:`~airflow_provider_runners.backends.local_host.idle`).

Backstop: every command runs under coreutils ``timeout`` capped at the runner's expiry, so
no process outlives the ttl even if the worker dies; an expired runner's files are removed
by the next ``status``/``find`` on it and by ``airflow-runners reap``. A spec's ``idle_timeout``
is enforced the same way: a host with no command running for that long ends on first sight
(``status``, ``find``, ``list_managed``, so the reaper's sweep).

Clean up by hand: ``kill -- -<pid>`` for each file in ``*.pids/``, then
``rm -rf <state_dir>/<resource_id>*``.

Commands get a minimal environment (PATH with the worker's Python first, HOME, LANG, TZ,
``RUNNER_ID``, ``RUNNER_WORKSPACE``), the Connection's ``host_env`` extra, the task's ``env``
and the values of ``secret_env`` references resolved on the worker (``conn:``/``var:``) —
never the worker's own environment, which holds Airflow's configuration.

Connection (conn type ``runners_local_host``), all optional, in extra:
``{"state_dir": "...", "host_env": {"JAVA_HOME": "/usr/lib/jvm/default"}}``.
A Connection id :data:`LOCAL_HOST_CONN_ID` that is not defined anywhere selects this backend.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from airflow_provider_runners.backends.local_host.idle import idle_too_long, mark_active
from airflow_provider_runners.backends.shared.subprocess import argv_for, command_environment, run_subprocess
from airflow_provider_runners.core.backend import (
    Backend,
    CommandRequest,
    CommandResult,
    ConnField,
    OutputSink,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.core.secret_refs import masking_sink
from airflow_provider_runners.exceptions import RunnerNotFoundError

LOCAL_HOST_CONN_ID = "runners_local_host"
#: Seconds a command may run past the runner's expiry before the host kills it (TERM then KILL).
_KILL_AFTER_S = 10


def default_state_dir() -> Path:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / "runners" / "local_host"


class LocalHostOptions(BaseModel):
    """``spec.options`` of a local host: none (commands come from RunnerCommandOperator)."""

    model_config = ConfigDict(extra="forbid")


class LocalHostBackend(Backend):
    """Commands as subprocesses on the Airflow worker, one workspace per runner."""

    name = "local_host"
    conn_type = "runners_local_host"
    hook_name = "Runners: local host (subprocess on the worker)"
    placeholders: ClassVar[Mapping[str, str]] = {
        "extra": '{"host_env": {"JAVA_HOME": "/usr/lib/jvm/default"}}'
    }
    conn_fields: ClassVar[Mapping[str, ConnField]] = {
        "state_dir": ConnField(
            "State directory",
            "Where runner state files are kept.",
            placeholder="/opt/airflow/runners/local_host",
        ),
    }
    runner_classes = frozenset({"dedicated_host"})
    options_model: ClassVar[type[BaseModel] | None] = LocalHostOptions
    poll_interval = 1.0
    secret_ref_kinds = frozenset({"conn", "var"})
    idle_timeout_unsupported: ClassVar[str | None] = None  # the .active mark (local_host/idle.py)

    def now(self) -> datetime:
        """The clock of the idle test (tests replace it)."""
        return datetime.now(UTC)

    @property
    def state_dir(self) -> Path:
        configured = self.config.extra.get("state_dir")
        return Path(configured) if configured else default_state_dir()

    def _record_path(self, resource_id: str) -> Path:
        return self.state_dir / f"{resource_id}.json"

    def _workspace(self, resource_id: str) -> Path:
        return self.state_dir / resource_id

    def _pids_dir(self, resource_id: str) -> Path:
        return self.state_dir / f"{resource_id}.pids"

    def _active_mark(self, resource_id: str) -> Path:
        return self.state_dir / f"{resource_id}.active"

    def _ended_idle(self, handle: RunnerHandle) -> str | None:
        """End the host when idle past its idle_timeout; return why (None: it is not)."""
        mark = self._active_mark(handle.resource_id)
        why = idle_too_long(handle, mark, len(self._running_pids(handle.resource_id)), self.now())
        if why is not None:
            self.teardown(handle)
        return why

    # -- lifecycle -----------------------------------------------------------------------------
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        resource_id = f"host-{request.attempt_token}"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        created_at = datetime.now(UTC)
        handle = RunnerHandle(
            backend=self.name,
            runner_class=request.spec.runner_class,
            resource_id=resource_id,
            conn_id=request.conn_id,
            lineage_key=request.lineage.key,
            attempt_token=request.attempt_token,
            created_at=created_at,
            expires_at=request.expires_at,
            environment=request.resolved.environment,
            profile=request.spec.profile,
            tags=request.resource_labels(),
            endpoints={"workspace": str(self._workspace(resource_id))},
            details={"hostname": socket.gethostname()},
            pricing=request.pricing(),
        )
        record = self._record_path(resource_id)
        try:  # exclusive create: the same attempt token twice is the same host
            with open(record, "x", encoding="utf-8") as fh:
                json.dump({"managed_by": MANAGED_BY, "handle": handle.to_xcom()}, fh)
        except FileExistsError:
            existing = self._read(resource_id)
            if existing is not None:
                return existing
        self._workspace(resource_id).mkdir(parents=True, exist_ok=True)
        self._pids_dir(resource_id).mkdir(exist_ok=True)
        mark_active(self._active_mark(resource_id), self.now())
        return handle

    def _read(self, resource_id: str) -> RunnerHandle | None:
        try:
            data = json.loads(self._record_path(resource_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("managed_by") != MANAGED_BY:
            return None
        return RunnerHandle.from_xcom(data["handle"])

    def _records(self) -> list[RunnerHandle]:
        if not self.state_dir.is_dir():
            return []
        handles = []
        for path in sorted(self.state_dir.glob("host-*.json")):
            handle = self._read(path.stem)
            if handle is not None:
                handles.append(handle)
        return handles

    def find(self, lineage_key: str) -> RunnerHandle | None:
        for handle in self._records():
            if handle.lineage_key == lineage_key and self.status(handle).state is not RunnerState.GONE:
                return handle
        return None

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        if not self._record_path(handle.resource_id).exists():
            return RunnerStatus(RunnerState.GONE, "no such local host")
        if datetime.now(UTC) >= handle.expires_at:
            self.teardown(handle)  # the backstop: an expired host ends on first sight
            return RunnerStatus(RunnerState.GONE, f"expired at {handle.expires_at.isoformat()}")
        idle = self._ended_idle(handle)
        if idle is not None:
            return RunnerStatus(RunnerState.GONE, f"ended by its idle_timeout: {idle}")
        running = len(self._running_pids(handle.resource_id))
        return RunnerStatus(
            RunnerState.READY,
            f"ready ({running} command(s) running)",
            endpoints={"workspace": str(self._workspace(handle.resource_id))},
        )

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        rid = handle.resource_id
        existed = self._record_path(rid).exists() or self._workspace(rid).exists()
        killed = 0
        for pid in self._running_pids(rid):
            try:
                os.killpg(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self._workspace(rid), ignore_errors=True)
        shutil.rmtree(self._pids_dir(rid), ignore_errors=True)
        self._record_path(rid).unlink(missing_ok=True)
        self._active_mark(rid).unlink(missing_ok=True)
        message = f"removed local host {rid}" if existed else f"local host {rid} already gone"
        if killed:
            message += f"; killed {killed} running command(s)"
        return TeardownResult(existed=existed, message=message, details={"killed_commands": killed})

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        return {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "workspace": str(self._workspace(handle.resource_id)),
            "user": _user(),
        }

    def list_managed(self) -> list[RunnerHandle]:
        """Every host, less those their idle_timeout ends now (the reaper then finds them gone)."""
        return [h for h in self._records() if self._ended_idle(h) is None]

    # -- commands ------------------------------------------------------------------------------
    def _running_pids(self, resource_id: str) -> list[int]:
        pids_dir = self._pids_dir(resource_id)
        if not pids_dir.is_dir():
            return []
        alive = []
        for path in pids_dir.iterdir():
            try:
                pid = int(path.name)
                os.killpg(pid, 0)
                alive.append(pid)
            except (ValueError, ProcessLookupError, PermissionError):
                path.unlink(missing_ok=True)
        return alive

    def command_env(self, handle: RunnerHandle, request: CommandRequest) -> tuple[dict[str, str], list[str]]:
        """The command's complete environment (secret values included: never log it) and the secrets."""
        runner_env = {str(k): str(v) for k, v in (self.config.extra.get("host_env") or {}).items()}
        runner_env.update(
            RUNNER_ID=handle.resource_id,
            RUNNER_WORKSPACE=str(self._workspace(handle.resource_id)),
            RUNNER_LINEAGE=handle.lineage_key,
        )
        return command_environment(request, runner_env)

    def run_command(
        self, handle: RunnerHandle, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult:
        if self.status(handle).state is not RunnerState.READY:
            raise RunnerNotFoundError(f"local host {handle.resource_id} is gone (torn down or expired)")
        remaining = (handle.expires_at - datetime.now(UTC)).total_seconds()
        limit = max(1, int(min(request.timeout, remaining)))
        workspace = self._workspace(handle.resource_id)
        cwd = workspace / request.workdir if request.workdir else workspace
        cwd.mkdir(parents=True, exist_ok=True)
        # coreutils timeout is the host-side backstop: it ends the command at the runner's
        # expiry even if this worker process dies first.
        wrapped = CommandRequest(
            command=("timeout", "-k", str(_KILL_AFTER_S), str(limit), *argv_for(request.command)),
            name=request.name,
            timeout=limit + _KILL_AFTER_S + 5,
        )
        pid_holder: dict[str, int] = {}

        def track(pid: int) -> None:
            pid_holder["pid"] = pid
            (self._pids_dir(handle.resource_id) / str(pid)).touch()
            mark_active(self._active_mark(handle.resource_id), self.now())

        env, secrets = self.command_env(handle, request)
        result = run_subprocess(
            wrapped, masking_sink(output, secrets), cancel, env=env, cwd=str(cwd), on_start=track
        )
        if "pid" in pid_holder:
            (self._pids_dir(handle.resource_id) / str(pid_holder["pid"])).unlink(missing_ok=True)
        if self._record_path(handle.resource_id).exists():
            mark_active(self._active_mark(handle.resource_id), self.now())  # the idle clock restarts
        if result.exit_code == 124 and float(result.details["elapsed_s"]) >= limit:  # coreutils timeout fired
            ended_by = "runner expiry" if limit < request.timeout else "timeout"
            return CommandResult(
                exit_code=None, timed_out=True, details={**result.details, "ended_by": ended_by}
            )
        return CommandResult(
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            cancelled=result.cancelled,
            details={**result.details, "host": socket.gethostname(), "workspace": str(cwd)},
        )


def _memory_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001 - a fact we can live without
        return None


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"
