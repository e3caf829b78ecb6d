"""Work tasks that run a command on a runner: :class:`RunnerCommandOperator`."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, get_backend
from airflow_provider_runners.core.backend import Backend, CommandRequest, CommandResult
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.redact import is_secret_key
from airflow_provider_runners.core.secret_refs import check_kinds, parse_secret_env
from airflow_provider_runners.core.specs import RunnerSpec, parse_duration
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.exceptions import RunnerCommandError, RunnerCommandTimeout, RunnerSpecError
from airflow_provider_runners.links import RUNNER_LINKS
from airflow_provider_runners.operators.owned import OwnedRunner, owner_arguments, run_on_runner

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The runner classes that run commands (a ``dask_cluster`` takes jobs: DaskJobOperator).
COMMAND_RUNNER_CLASSES = ("dedicated_host", "pod", "bench")
#: How long ``on_kill`` waits for the backend to stop the remote command.
CANCEL_GRACE_S = 60.0


class RunnerCommandOperator(BaseOperator):
    """Run a command on a runner (a host, a pod, a bench) and stream its output into the task log.

    The exit code decides the task state: 0 succeeds, anything else fails the task with
    :class:`~airflow_provider_runners.exceptions.RunnerCommandError`. When ``timeout`` passes
    the command is cancelled on the runner and the task fails with ``RunnerCommandTimeout``;
    when the task is killed (marked failed, cleared, timed out by Airflow) ``on_kill`` cancels
    the command before the task process exits.

    Secrets never appear in the command: ``secret_env`` maps environment variables to secret
    *references* (:mod:`airflow_provider_runners.core.secret_refs`) that the backend resolves where
    the command runs (an instance profile, a Kubernetes Secret, the worker's secrets backend).

    :param handle: the provision task's output (the group form, ``with runner(...) as handle``).
    :param spec: instead of ``handle``: the spec of a runner this task creates, waits for, and ends
        before it ends, whatever the outcome — the single-task form, no provision or teardown
        task (:mod:`airflow_provider_runners.operators.owned`; its readiness wait holds the slot).
    :param conn_id: with ``spec``: the runner Connection.
    :param ready_timeout: with ``spec``: how long to wait for readiness.
    :param command: a shell script (str) or an argv list; templated with Jinja like BashOperator's
        ``bash_command`` (so write ``{{ '{#' }}`` for a literal ``{#``, e.g. in ``${#VAR}``).
    :param env: plain, non-secret environment variables (names that look secret are refused).
    :param secret_env: ``{"DB_PASSWORD": "aws-sm:prod/erp#password"}``.
    :param timeout: seconds or "30m"; the command is cancelled when it passes.
    :param workdir: working directory on the runner (backend default when None).
    """

    template_fields = ("handle", "command", "env", "workdir")
    operator_extra_links = RUNNER_LINKS  # links.py: dashboard, console, pod, bench from the handle
    ui_color = "#f1e6d3"

    def __init__(
        self,
        *,
        handle: RunnerHandle | Mapping[str, Any] | str | Any = None,
        command: str | Sequence[str],
        spec: RunnerSpec | Mapping[str, Any] | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        ready_timeout: timedelta | float = timedelta(minutes=30),
        env: Mapping[str, str] | None = None,
        secret_env: Mapping[str, str] | None = None,
        timeout: timedelta | float | str = timedelta(hours=1),
        workdir: str | None = None,
        provision_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner_arguments(handle, spec)
        if isinstance(command, str):
            if not command.strip():
                raise RunnerSpecError("command: must not be empty")
        elif not command or not all(isinstance(part, str) for part in command):
            raise RunnerSpecError(
                f"command: expected a shell script or a non-empty list of strings, got {command!r}"
            )
        for name in env or {}:
            if is_secret_key(name):
                raise RunnerSpecError(
                    f"env.{name}: looks like a secret; pass it as secret_env={{{name!r}: '<reference>'}} "
                    "so that its value never travels with the command"
                )
        self.secret_refs = parse_secret_env(secret_env)
        self.secret_env = {name: str(ref) for name, ref in self.secret_refs.items()}
        seconds = parse_duration(timeout)
        seconds = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise RunnerSpecError(f"timeout: {timeout!r} is not a positive duration; use seconds or '30m'")
        self.handle = handle
        self.conn_id = conn_id
        self.owned = (
            OwnedRunner(spec, conn_id, COMMAND_RUNNER_CLASSES, "RunnerCommandOperator", ready_timeout)
            if spec is not None
            else None
        )
        self.command = command if isinstance(command, str) else list(command)
        self.env = dict(env or {})
        self.command_timeout = float(seconds)
        self.workdir = workdir
        self._cancel = threading.Event()
        self._facts: dict[str, Any] | None = None  # for OpenLineage
        self._worker: threading.Thread | None = None
        add_evidence_callbacks(self, "work", provision_task_id)

    def _request(self, context: Context, handle: RunnerHandle) -> CommandRequest:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        suffix = f"-{map_index}" if map_index is not None and map_index >= 0 else ""
        command = self.command if isinstance(self.command, str) else tuple(self.command)
        return CommandRequest(
            command=command,
            name=f"{handle.attempt_token}-{ti.task_id}{suffix}",
            env=dict(self.env),
            secret_env=dict(self.secret_env),
            timeout=self.command_timeout,
            workdir=self.workdir,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        return run_on_runner(self, context, self._execute_on)

    def _execute_on(self, context: Context, handle: RunnerHandle) -> dict[str, Any]:
        backend = get_backend(handle.conn_id)
        if not backend.supports_commands:
            raise RunnerSpecError(
                f"handle: runner {handle.resource_id} is on backend {backend.name!r}, which does not run "
                "commands; use a dedicated_host, pod or bench runner"
            )
        check_kinds(self.secret_refs, backend.secret_ref_kinds, backend.name)
        request = self._request(context, handle)
        facts: dict[str, Any] = {
            "command_name": request.name,
            "backend": backend.name,
            "runner": handle.resource_id,
        }
        ti = context["ti"]
        ti.xcom_push(key=FACTS_XCOM_KEY, value=facts)
        self.log.info("running command %s on %s %s", request.name, backend.name, handle.resource_id)
        started = time.monotonic()
        from airflow_provider_runners.governance.heartbeat import Heartbeat  # not at parse time

        with Heartbeat(handle.lineage_key):  # this task holds the runner while the command runs
            result = self._run(backend, handle, request)
        facts.update(
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            cancelled=result.cancelled,
            command_seconds=round(time.monotonic() - started, 3),
            **{k: v for k, v in result.details.items() if not is_secret_key(k)},
        )
        ti.xcom_push(key=FACTS_XCOM_KEY, value=facts)
        self._facts = facts
        if result.timed_out:
            raise RunnerCommandTimeout(
                f"command {request.name} on {handle.resource_id} did not finish within "
                f"{self.command_timeout:.0f}s; it was cancelled on the runner"
            )
        if result.cancelled:
            raise RunnerCommandError(f"command {request.name} on {handle.resource_id} was cancelled")
        if result.exit_code != 0:
            raise RunnerCommandError(
                f"command {request.name} on {handle.resource_id} exited with code {result.exit_code} "
                "(its output is in the task log above)"
            )
        self.log.info("command %s exited 0 after %.1fs", request.name, facts["command_seconds"])
        return {"exit_code": 0, "runner": handle.resource_id, "command_seconds": facts["command_seconds"]}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the runner as a run facet, inlets / outlets as datasets; None without the
        openlineage provider (:mod:`airflow_provider_runners.ol_facets`, docs/openlineage.md)."""
        from airflow_provider_runners.ol_facets import operator_lineage

        return operator_lineage(self.handle, self._facts, self.inlets, self.outlets)

    def _run(self, backend: Backend, handle: RunnerHandle, request: CommandRequest) -> CommandResult:
        """Run in a thread so that ``on_kill`` (a signal handler on this thread) can cancel it."""
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = backend.run_command(handle, request, self._output, self._cancel)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the task thread below
                outcome["error"] = exc

        self._worker = threading.Thread(target=target, name=f"command-{request.name}", daemon=True)
        self._worker.start()
        while self._worker.is_alive():
            self._worker.join(timeout=0.5)
        self._worker = None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def _output(self, line: str) -> None:
        self.log.info("| %s", line.rstrip("\n"))

    def on_kill(self) -> None:
        self._cancel.set()
        if self.owned is not None:
            # The task's own runner: ending it ends the command with it, within on_kill's budget
            # (the command's own cancel could take longer than Airflow waits before SIGKILL).
            self.owned.on_kill(self.log)
            return
        worker = self._worker
        if worker is not None:
            worker.join(timeout=CANCEL_GRACE_S)
            self.log.info(
                "task killed: command %s", "cancelled" if not worker.is_alive() else "still stopping"
            )
