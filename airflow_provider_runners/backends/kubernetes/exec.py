"""Exec a command into a long-lived (``workspace``) pod for the ``kubernetes`` backend.

The command runs in the pod's main container through the API server's ``exec`` websocket
(``kubernetes.stream``), wrapped so that it can be stopped: the wrapper writes its pid to
``/tmp/.runners-<command name>.pid`` and ``exec``s the command, and a cancel or timeout runs a
second exec, ``kill -TERM`` of that pid's process group (or of the pid alone when it leads no
group: children it started in the background may then outlive it until the pod is deleted). stdout and stderr are streamed line by line; the exit
code comes from the exec status channel.

Secrets: ``secret_env`` is accepted only for variables the pod already has from the same
Kubernetes Secret key (spec ``options.secret_env``): exec inherits the container's environment,
so the value never travels in the command.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.backends.kubernetes import pod as podlib
from airflow_provider_runners.core.backend import CommandRequest, CommandResult, OutputSink
from airflow_provider_runners.core.secret_refs import parse_secret_ref
from airflow_provider_runners.exceptions import RunnerCommandError, RunnerSpecError

if TYPE_CHECKING:
    from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend


def _check_secrets(pod: Mapping[str, Any], secret_env: Mapping[str, str]) -> None:
    have = {
        e["name"]: (e["valueFrom"]["secretKeyRef"].get("name"), e["valueFrom"]["secretKeyRef"].get("key"))
        for e in podlib.main_container(pod).get("env") or []
        if (e.get("valueFrom") or {}).get("secretKeyRef")
    }
    for env_name, ref_text in secret_env.items():
        ref = parse_secret_ref(ref_text, f"secret_env.{env_name}")
        if have.get(env_name) != (ref.name, ref.key):
            raise RunnerSpecError(
                f"secret_env.{env_name}: {ref_text!r} is not in the pod's environment; exec'd commands get "
                "secrets only from the pod spec: add it to the runner spec's options.secret_env"
            )


def wrapped(request: CommandRequest) -> tuple[list[str], str]:
    """The argv sent to exec and the pid file it writes."""
    script = request.command if isinstance(request.command, str) else shlex.join(request.command)
    pidfile = f"/tmp/.runners-{request.name}.pid"
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in request.env.items())
    cd = f"cd {shlex.quote(request.workdir or podlib.WORKSPACE)} && "
    inner = f"echo $$ > {pidfile}; {cd}exec env {assignments} /bin/sh -c {shlex.quote(script)}"
    return ["/bin/sh", "-c", inner], pidfile


def exec_command(
    backend: KubernetesBackend,
    pod: Mapping[str, Any],
    request: CommandRequest,
    output: OutputSink,
    cancel: threading.Event,
) -> CommandResult:
    """Run ``request`` in the pod's main container until it ends, is cancelled or times out."""
    from kubernetes.stream import stream

    _check_secrets(pod, request.secret_env)
    meta = pod["metadata"]
    name, ns = meta["name"], meta.get("namespace") or backend.namespace
    argv, pidfile = wrapped(request)
    api = backend.api()
    backend.bucket.acquire()  # stream() bypasses the ApiClient.request the limiter wraps
    ws = stream(
        api.connect_get_namespaced_pod_exec,
        name,
        ns,
        command=argv,
        container=podlib.MAIN,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    deadline = time.monotonic() + request.timeout
    buffers = {1: "", 2: ""}
    started = time.monotonic()
    stopped: str | None = None
    try:
        while ws.is_open():
            ws.update(timeout=0.5)
            for channel, reader in ((1, ws.read_stdout), (2, ws.read_stderr)):
                buffers[channel] += reader(timeout=0) or ""
                *complete, buffers[channel] = buffers[channel].split("\n")
                for line in complete:
                    output(line)
            if stopped is None and (cancel.is_set() or time.monotonic() > deadline):
                stopped = "cancelled" if cancel.is_set() else "timed_out"
                _kill(backend, name, ns, pidfile)
                break
        for rest in buffers.values():
            if rest:
                output(rest)
        details = {"pod": name, "namespace": ns, "exec_seconds": round(time.monotonic() - started, 3)}
        if stopped:
            return CommandResult(
                None, timed_out=stopped == "timed_out", cancelled=stopped == "cancelled", details=details
            )
        code = ws.returncode
        if code is None:
            raise RunnerCommandError(f"exec in pod {ns}/{name} ended without an exit status")
        return CommandResult(int(code), details=details)
    finally:
        ws.close(timeout=1)


def _kill(backend: KubernetesBackend, name: str, ns: str, pidfile: str) -> None:
    from kubernetes.stream import stream

    backend.bucket.acquire()
    stream(
        backend.api().connect_get_namespaced_pod_exec,
        name,
        ns,
        command=[
            "/bin/sh",
            "-c",
            f"p=$(cat {pidfile}); kill -TERM -- -$p 2>/dev/null || kill -TERM $p; rm -f {pidfile}",
        ],
        container=podlib.MAIN,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
