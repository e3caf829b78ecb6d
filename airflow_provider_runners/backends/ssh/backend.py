"""``ssh`` backend: ``dedicated_host`` runners on existing hosts reached by SSH (a host pool).

For machines that already exist — an on-premises build box, a GPU workstation, a licensed
host — listed in one Connection. A runner is a **lease** of one free host of the pool plus a
workspace directory on it; commands run there over SSH (``RunnerCommandOperator``); teardown
kills the runner's commands and removes its workspace and lease. The same DAG that runs
commands on ``local_host`` or an EC2 host runs them here by changing only the Connection.

Resources it creates, on the leased host, under ``workspace_root`` (Connection extra, default
``~/airflow-runners``):

* ``lease/`` — the claim (``mkdir`` is atomic: one runner per host at a time), with
  ``lease/runner.json`` (the runner's handle: lineage key, labels, expiry,
  ``managed_by: airflow-provider-runners``) and ``lease/resource_id``; ``find``, ``status``
  and the reaper read it;
* ``<resource_id>/`` — the workspace: each command's working directory (``$RUNNER_WORKSPACE``);
* ``<resource_id>.pids/<pgid>`` — one file per running command (its process group).

Nothing is created on the worker except a private temporary directory holding the key and
known_hosts during one ssh call.

Backstop: every command runs under coreutils ``timeout`` on the host, capped at the runner's
expiry, so no command outlives the ttl even if the worker dies; an expired lease is removed by
the next ``status``/``find``/``create`` that sees it and by ``airflow-runners reap``.

Clean up by hand, on the host: ``kill -- -<pgid>`` for each file in
``<workspace_root>/*.pids/``, then ``rm -rf <workspace_root>/lease <workspace_root>/ssh-*``.

Connection (conn type ``runners_ssh``): ``host`` one host or a comma-separated list
(``host`` or ``host:port``), ``port`` (default 22), ``login``; extra (unknown keys refused):
``private_key`` (secret) or ``key_file``, ``known_hosts`` (lines; else the worker's
``~/.ssh/known_hosts``), ``host_key_checking`` (default true), ``workspace_root``,
``host_env``, ``hosts`` (more hosts, ``{"host", "port", "workspace_root"}``),
``connect_timeout``. Uses the worker's OpenSSH client; no Python package needed.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from airflow_provider_runners.backends.ssh.connection import (
    SSH_CONNECT_FAILED,
    Host,
    SshClient,
    parse_connection,
    q,
)
from airflow_provider_runners.backends.ssh.errors import SSH_ERRORS, SshUnreachable
from airflow_provider_runners.core.backend import (
    Backend,
    CommandRequest,
    CommandResult,
    ConnectionConfig,
    ConnField,
    OutputSink,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.exceptions import ConnectionConfigError, ProvisionError, RunnerNotFoundError

log = logging.getLogger(__name__)

#: Seconds a command may run past its limit before the host kills it (TERM then KILL).
KILL_AFTER_S = 10
_PID_MARK = "__runners_pid__ "
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SshHostOptions(BaseModel):
    """``spec.options`` of an SSH host runner: ``host`` pins one host of the pool (``host:port``)."""

    model_config = ConfigDict(extra="forbid")
    host: str | None = None


def _root(host: Host) -> str:
    """Shell lines setting ``R`` to the absolute workspace root (relative = under $HOME)."""
    return f'R={q(host.workspace_root)}; case "$R" in /*) ;; *) R="$HOME/$R";; esac\n'


_READ_LEASE = 'if [ -f "$R/lease/runner.json" ]; then cat "$R/lease/runner.json"; elif [ -d "$R/lease" ]; then echo CLAIMING; fi\n'

_CLAIM = """mkdir -p "$R" || exit 3
if mkdir "$R/lease" 2>/dev/null; then
  printf %s "$RID" > "$R/lease/resource_id" && cat > "$R/lease/runner.json.tmp" \
    && mv "$R/lease/runner.json.tmp" "$R/lease/runner.json" && mkdir -p "$R/$RID" "$R/$RID.pids" || exit 3
  echo CLAIMED
else
  cat > /dev/null; echo BUSY
fi
"""

_TEARDOWN = """existed=0; killed=0
if [ -d "$R/$RID" ] || [ "$(cat "$R/lease/resource_id" 2>/dev/null)" = "$RID" ]; then existed=1; fi
for f in "$R/$RID.pids"/*; do
  [ -e "$f" ] || continue; p=${f##*/}
  kill -KILL "-$p" 2>/dev/null && killed=$((killed+1))
done
rm -rf "$R/$RID" "$R/$RID.pids"
if [ "$(cat "$R/lease/resource_id" 2>/dev/null)" = "$RID" ]; then rm -rf "$R/lease"; fi
echo "$existed $killed"
"""

_LAUNCH = """P="$R/$RID.pids"
[ -d "$P" ] || { echo "runner $RID is gone from this host" >&2; exit 254; }
mkdir -p "$W" || exit 254
S="$P/.script-$$"; (umask 077; cat > "$S") || exit 254
cd "$W" || exit 254
timeout -k {kill} {limit} sh "$S" &
c=$!
: > "$P/$c"
echo "{mark}$c"
wait "$c"; rc=$?
rm -f "$P/$c" "$S"
exit $rc
"""

_DESCRIBE = """hostname; uname -sr; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
awk '/^MemTotal/ {print $2}' /proc/meminfo 2>/dev/null || echo; id -un
"""


class SshBackend(Backend):
    """dedicated_host runners: a lease of one host of an SSH host pool, plus a workspace on it."""

    name = "ssh"
    conn_type = "runners_ssh"
    hook_name = "Runners: SSH host pool (existing hosts)"
    hidden_fields: ClassVar[tuple[str, ...]] = ("schema", "password")
    relabeling: ClassVar[Mapping[str, str]] = {"host": "Hosts (comma-separated, host or host:port)"}
    placeholders: ClassVar[Mapping[str, str]] = {
        "host": "build1.example.com,build2.example.com:2222",
        "port": "22",
        "login": "airflow",
    }
    conn_fields: ClassVar[Mapping[str, ConnField]] = {
        "private_key": ConnField("Private key", "OpenSSH private key text (no passphrase).", secret=True),
        "key_file": ConnField(
            "Key file", "Or a private key file on the worker.", placeholder="~/.ssh/id_ed25519"
        ),
        "known_hosts": ConnField("Known hosts", "known_hosts lines of the pool's host keys."),
        "host_key_checking": ConnField(
            "Check host keys", "Refuse unknown host keys.", type="boolean", default=True
        ),
        "workspace_root": ConnField(
            "Workspace root", "Runner workspaces and the lease on each host.", default="airflow-runners"
        ),
    }
    runner_classes = frozenset({"dedicated_host"})
    options_model: ClassVar[type[BaseModel] | None] = SshHostOptions
    error_map = SSH_ERRORS  # errors.py: ssh could not connect (255) transient, the rest permanent
    poll_interval = 2.0
    secret_extra_fields = frozenset({"private_key"})
    secret_ref_kinds = frozenset({"conn", "var"})

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        self.settings = parse_connection(config)
        self.client = SshClient(self.settings)
        #: The clock expiry is checked against (tests inject one).
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    # -- leases ------------------------------------------------------------------------------------
    def _host_of(self, handle: RunnerHandle) -> Host:
        return self.settings.host(str(handle.details.get("host", "")))

    def _lease(self, host: Host) -> RunnerHandle | str | None:
        """The handle leasing ``host``, "CLAIMING" while a claim is being written, None when free.
        Raises SshUnreachable (a ProvisionError) when the host cannot be reached."""
        result = self.client.run(host, _root(host) + _READ_LEASE)
        if result.returncode != 0:
            raise (SshUnreachable if result.returncode == SSH_CONNECT_FAILED else ProvisionError)(
                f"ssh host {host.address} (Connection {self.conn_id!r}): {_last(result.stderr)}"
            )
        text = result.stdout.strip()
        if not text or text == "CLAIMING":
            return text or None
        try:
            data = json.loads(text)
        except ValueError:
            return "CLAIMING"
        if not isinstance(data, dict) or data.get("managed_by") != MANAGED_BY:
            return "CLAIMING"
        try:
            return RunnerHandle.from_xcom(data["handle"])
        except (
            KeyError,
            TypeError,
            ValueError,
        ):  # not a handle we wrote: the host stays taken, never touched
            return "CLAIMING"

    def _leases(self) -> dict[str, RunnerHandle | str | None]:
        """Every reachable host's lease, keyed by address (unreachable hosts are left out)."""
        leases: dict[str, RunnerHandle | str | None] = {}
        for host in self.settings.hosts:
            try:
                leases[host.address] = self._lease(host)
            except ProvisionError as exc:
                log.warning("%s", exc)
        return leases

    def _expired(self, handle: RunnerHandle) -> bool:
        return self.now() >= handle.expires_at

    # -- lifecycle ---------------------------------------------------------------------------------
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        resource_id = f"ssh-{request.attempt_token}"
        options = SshHostOptions.model_validate(dict(request.spec.options))
        hosts = [self.settings.host(options.host)] if options.host else list(self.settings.hosts)
        busy: list[str] = []
        free: list[Host] = []
        for host in hosts:
            try:
                lease = self._lease(host)
            except ProvisionError as exc:
                busy.append(f"{host.address}: unreachable ({exc})")
                continue
            if isinstance(lease, RunnerHandle):
                if lease.resource_id == resource_id:  # the same attempt token: the same runner
                    return lease
                if self._expired(lease):
                    self.teardown(lease)  # the backstop: an expired lease ends on first sight
                    lease = None
            if lease is None:
                free.append(host)
            else:
                holder = lease.lineage_key if isinstance(lease, RunnerHandle) else "a claim in progress"
                busy.append(f"{host.address}: leased by {holder}")
        for host in free:
            handle = self._handle(request, resource_id, host)
            record = json.dumps({"managed_by": MANAGED_BY, "handle": handle.to_xcom()})
            script = _root(host) + f"RID={q(resource_id)}\n" + _CLAIM
            result = self.client.run(host, script, stdin=record)
            if result.returncode == 0 and result.stdout.strip() == "CLAIMED":
                return handle
            busy.append(
                f"{host.address}: " + ("leased meanwhile" if result.returncode == 0 else _last(result.stderr))
            )
        raise ProvisionError(
            f"no free host in the pool of Connection {self.conn_id!r} ({len(hosts)} host(s)): "
            + "; ".join(busy)
        )

    def _handle(self, request: ProvisionRequest, resource_id: str, host: Host) -> RunnerHandle:
        created_at = self.now()
        login = self.settings.login
        return RunnerHandle(
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
            endpoints={
                "ssh": f"{login + '@' if login else ''}{host.host}:{host.port}",
                "workspace": f"{host.workspace_root.rstrip('/')}/{resource_id}",
            },
            details={"host": host.address},
            pricing=request.pricing(),
        )

    def find(self, lineage_key: str) -> RunnerHandle | None:
        for lease in self._leases().values():
            if isinstance(lease, RunnerHandle) and lease.lineage_key == lineage_key:
                if self._expired(lease):
                    self.teardown(lease)
                    continue
                return lease
        return None

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        return self.status_many([handle])[handle.resource_id]

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        """One ssh call per host, whatever the number of handles."""
        statuses: dict[str, RunnerStatus] = {}
        seen: dict[str, RunnerHandle | str | None | ProvisionError] = {}
        for handle in handles:
            try:
                host = self._host_of(handle)
            except ConnectionConfigError as exc:
                statuses[handle.resource_id] = RunnerStatus(RunnerState.GONE, str(exc))
                continue
            if host.address not in seen:
                try:
                    seen[host.address] = self._lease(host)
                except ProvisionError as exc:
                    seen[host.address] = exc
            lease = seen[host.address]
            if isinstance(lease, ProvisionError):
                statuses[handle.resource_id] = RunnerStatus(RunnerState.FAILED, f"host unreachable: {lease}")
            elif not isinstance(lease, RunnerHandle) or lease.resource_id != handle.resource_id:
                statuses[handle.resource_id] = RunnerStatus(RunnerState.GONE, f"no lease of {host.address}")
            elif self._expired(lease):
                self.teardown(lease)
                statuses[handle.resource_id] = RunnerStatus(
                    RunnerState.GONE, f"expired at {lease.expires_at.isoformat()}"
                )
            else:
                statuses[handle.resource_id] = RunnerStatus(
                    RunnerState.READY, f"leased {host.address}", endpoints=lease.endpoints
                )
        return statuses

    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        host = self._host_of(handle)
        script = _root(host) + f"RID={q(handle.resource_id)}\n" + _TEARDOWN
        result = self.client.run(host, script)
        if result.returncode != 0:  # unreachable (255): transient, end_runners tries again
            raise (SshUnreachable if result.returncode == SSH_CONNECT_FAILED else ProvisionError)(
                f"teardown of {handle.resource_id} on ssh host {host.address} (Connection "
                f"{self.conn_id!r}) failed: {_last(result.stderr)}; clean up by hand: see the ssh backend's docstring"
            )
        existed_s, killed_s = (result.stdout.split() + ["0", "0"])[:2]
        existed, killed = existed_s == "1", int(killed_s)
        message = f"released {host.address}" if existed else f"lease {handle.resource_id} already gone"
        if killed:
            message += f"; killed {killed} running command(s)"
        return TeardownResult(existed=existed, message=message, details={"killed_commands": killed})

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        host = self._host_of(handle)
        result = self.client.run(host, _DESCRIBE)
        lines = (result.stdout.splitlines() + [""] * 5)[:5]
        mem_kib = int(lines[3]) if lines[3].strip().isdigit() else None
        return {
            "host": host.address,
            "hostname": lines[0],
            "kernel": lines[1],
            "cpus": int(lines[2]) if lines[2].strip().isdigit() else None,
            "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
            "user": lines[4],
            "workspace": handle.endpoints.get("workspace"),
        }

    def list_managed(self) -> list[RunnerHandle]:
        return [lease for lease in self._leases().values() if isinstance(lease, RunnerHandle)]

    # -- commands ----------------------------------------------------------------------------------
    def _script(self, handle: RunnerHandle, request: CommandRequest) -> tuple[str, list[str]]:
        """The command script (sent on stdin, never on a command line) and the secret values in it."""
        from airflow_provider_runners.core.secret_refs import parse_secret_env, resolve_on_worker

        env = {str(k): str(v) for k, v in self.settings.extra.host_env.items()}
        env.update(request.env)
        secrets = resolve_on_worker(parse_secret_env(request.secret_env))
        env.update(secrets)
        env.update(RUNNER_ID=handle.resource_id, RUNNER_LINEAGE=handle.lineage_key)
        bad = sorted(name for name in env if not _ENV_NAME.match(name))
        if bad:
            raise ValueError(
                f"env: {bad} are not environment variable names; allowed: [A-Za-z_][A-Za-z0-9_]*"
            )
        lines = ['rm -f -- "$0"', 'RUNNER_WORKSPACE="$RW"; export RUNNER_WORKSPACE']
        lines += [f"{name}={q(value)}; export {name}" for name, value in env.items()]
        command = request.command if isinstance(request.command, str) else shlex.join(request.command)
        return "\n".join([*lines, command, ""]), list(secrets.values())

    def run_command(
        self, handle: RunnerHandle, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult:
        from airflow_provider_runners.core.secret_refs import masking_sink

        host = self._host_of(handle)
        remaining = (handle.expires_at - self.now()).total_seconds()
        if remaining <= 0:
            raise RuntimeError(
                f"ssh host runner {handle.resource_id} expired at {handle.expires_at.isoformat()}"
            )
        limit = max(1, int(min(request.timeout, remaining)))
        script, secrets = self._script(handle, request)
        sink = masking_sink(output, secrets)
        workdir = f'"$R/$RID"/{q(request.workdir)}' if request.workdir else '"$R/$RID"'
        launcher = (
            _root(host)
            + f'RID={q(handle.resource_id)}; W={workdir}; RW="$R/$RID"; export RW\n'
            + _LAUNCH.replace("{kill}", str(KILL_AFTER_S))
            .replace("{limit}", str(limit))
            .replace("{mark}", _PID_MARK)
        )
        started_at, started = datetime.now(UTC), time.monotonic()
        pgid: list[str] = []
        with self.client.argv(host, launcher) as argv:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.client.client_env(),
                text=True,
                errors="replace",
                bufsize=1,
            )
            assert proc.stdin is not None
            proc.stdin.write(script)
            proc.stdin.close()
            reader = threading.Thread(target=_pump, args=(proc, sink, pgid), daemon=True)
            reader.start()
            cancelled = stuck = False
            while proc.poll() is None:
                if cancel.wait(0.2):
                    cancelled = True
                elif time.monotonic() - started > limit + KILL_AFTER_S + 30:
                    stuck = True  # the host's own timeout did not end it: stop it from here
                if cancelled or stuck:
                    sink(
                        f"[runners] {'cancelled' if cancelled else 'timed out'}: stopping it on {host.address}"
                    )
                    # Still connecting: wait for the command's process group id (or for ssh to give up).
                    connecting = time.monotonic() + self.settings.extra.connect_timeout + 5
                    while not pgid and proc.poll() is None and time.monotonic() < connecting:
                        time.sleep(0.1)
                    self._kill_remote(host, pgid)
                    try:
                        proc.wait(timeout=KILL_AFTER_S + 10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    break
            reader.join(timeout=5)
        code = proc.returncode
        elapsed = time.monotonic() - started
        details: dict[str, Any] = {
            "host": host.address,
            "pgid": int(pgid[0]) if pgid else None,
            "started_at": started_at.isoformat(),
            "ended_at": datetime.now(UTC).isoformat(),
            "elapsed_s": round(elapsed, 3),
        }
        if cancelled:
            return CommandResult(exit_code=None, cancelled=True, details=details)
        if not pgid and code == 254:
            raise RunnerNotFoundError(f"ssh host runner {handle.resource_id} is gone (torn down or expired)")
        if not pgid and code == SSH_CONNECT_FAILED:
            details["ssh_failed"] = True
        if stuck or (code in (124, 137) and elapsed >= limit):  # the host's coreutils timeout fired
            ended_by = "runner expiry" if limit < request.timeout else "timeout"
            return CommandResult(exit_code=None, timed_out=True, details={**details, "ended_by": ended_by})
        return CommandResult(exit_code=code, details=details)

    def _kill_remote(self, host: Host, pgid: list[str]) -> None:
        """TERM the command's process group on the host, KILL it after the grace."""
        if not pgid:
            return
        g = q(pgid[0])
        script = (
            f"kill -TERM -{g} 2>/dev/null; i=0\n"
            f"while kill -0 -{g} 2>/dev/null && [ $i -lt {KILL_AFTER_S} ]; do sleep 1; i=$((i+1)); done\n"
            f"kill -KILL -{g} 2>/dev/null; true\n"
        )
        self.client.run(host, script, timeout=KILL_AFTER_S + 30)


def _pump(proc: subprocess.Popen[str], output: OutputSink, pgid: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        if not pgid and line.startswith(_PID_MARK):
            pgid.append(line.removeprefix(_PID_MARK).strip())
            continue
        output(line)
    proc.stdout.close()


def _last(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "ssh failed without a message"
