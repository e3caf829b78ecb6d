"""Run a command as a local subprocess for :meth:`Backend.run_command` (local_host, benches).

The command runs in its own process group (``start_new_session``) so that a timeout or a
cancel ends the whole tree it started: SIGTERM to the group, then SIGKILL after a grace.
Output (stdout and stderr merged) goes line by line to the sink as it arrives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from airflow_provider_runners.core.backend import CommandRequest, CommandResult, OutputSink

#: Seconds between SIGTERM and SIGKILL when stopping a command.
KILL_GRACE_S = 10.0
#: The only variables a local command inherits from the worker (never Airflow's configuration).
BASE_ENV = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")


def command_environment(
    request: CommandRequest, runner_env: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """A local command's complete environment, and the secret values in it (to mask its output).

    A minimal base (:data:`BASE_ENV`; ``PATH`` with this Python environment's ``bin`` first, so
    tools like ``labgrid-client`` match the backend's), then the runner's variables, the
    request's plain ``env`` and its ``secret_env`` references resolved on the worker (registered
    with the log masker). The worker's own environment — Airflow's configuration, database URL,
    cloud credentials — is never passed on. Never log the result.
    """
    from airflow_provider_runners.core.secret_refs import parse_secret_env, resolve_on_worker

    env = {name: os.environ[name] for name in BASE_ENV if name in os.environ}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
    env.update({str(k): str(v) for k, v in runner_env.items()})
    env.update(request.env)
    secrets = resolve_on_worker(parse_secret_env(request.secret_env))
    env.update(secrets)
    return env, list(secrets.values())


def argv_for(command: str | tuple[str, ...]) -> list[str]:
    """A shell script runs under ``/bin/sh -c`` (``set -e`` is the script's own choice)."""
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def run_subprocess(
    request: CommandRequest,
    output: OutputSink,
    cancel: threading.Event,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    on_start: Callable[[int], None] | None = None,
    kill_grace: float = KILL_GRACE_S,
) -> CommandResult:
    """Run ``request.command`` locally; ``env`` is the complete environment (secrets included).

    ``timeout`` overrides ``request.timeout``; ``on_start(pid)`` is called once the process
    (and its process group, same id) exists, e.g. to record it for teardown.
    """
    limit = request.timeout if timeout is None else timeout
    started_at = datetime.now(UTC)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv_for(request.command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd or request.workdir,
        start_new_session=True,
        text=True,
        errors="replace",
        bufsize=1,
    )
    if on_start is not None:
        on_start(proc.pid)
    reader = threading.Thread(target=_pump, args=(proc, output), name=f"output-{proc.pid}", daemon=True)
    reader.start()
    timed_out = cancelled = False
    while proc.poll() is None:
        if cancel.wait(0.2):
            cancelled = True
        elif time.monotonic() - started > limit:
            timed_out = True
        if cancelled or timed_out:
            output(
                f"[runners] {'cancelled' if cancelled else 'timed out'}: stopping process group {proc.pid}"
            )
            stop_process_group(proc, kill_grace)
            break
    reader.join(timeout=5)
    exit_code = proc.returncode
    return CommandResult(
        exit_code=None if (timed_out or cancelled) else exit_code,
        timed_out=timed_out,
        cancelled=cancelled,
        details={
            "pid": proc.pid,
            "started_at": started_at.isoformat(),
            "ended_at": datetime.now(UTC).isoformat(),
            "signal": -exit_code if exit_code is not None and exit_code < 0 else None,
            "elapsed_s": round(time.monotonic() - started, 3),
        },
    )


def _pump(proc: subprocess.Popen[str], output: OutputSink) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        output(line.rstrip("\n"))
    proc.stdout.close()


def stop_process_group(proc: subprocess.Popen[str], grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the command's process group, SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Children that ignored SIGTERM and outlived the leader still share the group id.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
