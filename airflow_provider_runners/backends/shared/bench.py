"""What the two bench backends (``labgrid``, ``bench_http``) share (their options are
:mod:`airflow_provider_runners.core.bench_options`).

* :func:`run_bench_command` — the HIL command of ``RunnerCommandOperator``: a subprocess on the
  Airflow worker (benches are driven *from* a host, e.g. through ``labgrid-client``), in its own
  process group, its merged output streamed line by line, cancelled (SIGTERM, then SIGKILL to
  the whole group) on timeout or when the task is killed.
* :func:`run_health_command` — the readiness check a bench may be given.

Nothing here talks to a bench platform; nothing here creates anything that outlives a call.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping

from airflow_provider_runners.backends.shared.subprocess import command_environment, run_subprocess
from airflow_provider_runners.core.backend import CommandRequest, CommandResult, OutputSink
from airflow_provider_runners.core.secret_refs import masking_sink

#: Seconds between SIGTERM and SIGKILL when a HIL command is cancelled.
KILL_GRACE_S = 5.0


def run_bench_command(
    request: CommandRequest,
    output: OutputSink,
    cancel: threading.Event,
    bench_env: Mapping[str, str],
    kill_grace: float = KILL_GRACE_S,
) -> CommandResult:
    """Run a HIL command on the worker with the bench exported (:func:`run_subprocess`); resolved
    secrets are masked in its output."""
    env, secrets = command_environment(request, bench_env)
    return run_subprocess(request, masking_sink(output, secrets), cancel, env=env, kill_grace=kill_grace)


def run_health_command(command: str, env: Mapping[str, str], timeout: float) -> tuple[bool, str]:
    """Run a bench health command; (exit 0, last output lines)."""
    tail: deque[str] = deque(maxlen=5)
    request = CommandRequest(command=command, name="bench-health", timeout=timeout)
    result = run_bench_command(request, tail.append, threading.Event(), env, kill_grace=2.0)
    text = " | ".join(line for line in tail if line.strip()) or "(no output)"
    if result.timed_out:
        return False, f"timed out after {timeout:.0f}s: {text}"
    return result.exit_code == 0, f"exit {result.exit_code}: {text}"
