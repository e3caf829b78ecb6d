"""What the two bench backends (``labgrid``, ``bench_http``) share.

* :func:`parse_bench_options` — the ``spec.options`` of a ``bench`` runner (which bench: a
  place / bench id or tag filters; how to check readiness), validated when the DAG is parsed
  (``RunnerSpec`` calls it for ``runner_class="bench"``), so a malformed filter is a DAG import
  error that names the field, the value and what is allowed.
* :func:`run_bench_command` — the HIL command of ``RunnerCommandOperator``: a subprocess on the
  Airflow worker (benches are driven *from* a host, e.g. through ``labgrid-client``), in its own
  process group, its merged output streamed line by line, cancelled (SIGTERM, then SIGKILL to
  the whole group) on timeout or when the task is killed.
* :func:`run_health_command` — the readiness check a bench may be given.

Nothing here talks to a bench platform; nothing here creates anything that outlives a call.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_runners.backends._subprocess import command_environment, run_subprocess
from airflow_provider_runners.backends.base import CommandRequest, CommandResult, OutputSink
from airflow_provider_runners.exceptions import RunnerSpecError
from airflow_provider_runners.secret_refs import masking_sink

#: Tag keys as labgrid accepts them (``labgrid.remote.common.TAG_KEY``, anchored).
TAG_KEY_RE = re.compile(r"^[a-z][a-z0-9_]+$")
#: Tag values and bench names: portable between labgrid and HTTP platforms.
TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$")
BENCH_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
READINESS = ("auto", "resources", "health", "none")
OPTION_KEYS = ("place", "bench_id", "tags", "health_command", "readiness", "queue", "priority")
#: Seconds between SIGTERM and SIGKILL when a HIL command is cancelled.
KILL_GRACE_S = 5.0


@dataclass(frozen=True)
class BenchSelector:
    """Which bench a spec asks for, and how its readiness is checked."""

    place: str | None = None  # labgrid place / bench_http bench_id (a name)
    tags: Mapping[str, str] = field(default_factory=dict)
    health_command: str | None = None
    readiness: str = "auto"
    queue: bool = True
    priority: float = 0.0

    def describe(self) -> str:
        """``name=imx8-a board=imx8`` — how the filters read in messages."""
        parts = [f"name={self.place}"] if self.place else []
        parts += [f"{k}={v}" for k, v in sorted(self.tags.items())]
        return " ".join(parts) or "(none)"


def parse_bench_options(options: Mapping[str, Any], prefix: str = "spec.options") -> BenchSelector:
    """Validate a bench runner's options; raise :class:`RunnerSpecError` naming field, value, allowed.

    ``{"place": "imx8-a"}`` or ``{"bench_id": "imx8-a"}`` (the same: one named bench),
    ``{"tags": {"board": "imx8", "lab": "muc"}}`` (any bench carrying all these tags), both
    together (that bench, and it must carry the tags), plus optional ``health_command``
    (shell, run on the worker after the bench is acquired; exit 0 = ready), ``readiness``
    (``auto``: health command if given, else the place's resources; ``resources``;
    ``health``; ``none``), ``queue`` (``False``: fail at once when the bench is held instead
    of waiting in line) and ``priority`` (labgrid reservation priority).
    """
    if not isinstance(options, Mapping):
        raise RunnerSpecError(f"{prefix}: expected a mapping, got {type(options).__name__}")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise RunnerSpecError(
            f"{prefix}: {unknown} not supported for bench runners; allowed: {list(OPTION_KEYS)}"
        )
    place = options.get("place")
    bench_id = options.get("bench_id")
    if place is not None and bench_id is not None and place != bench_id:
        raise RunnerSpecError(
            f"{prefix}.bench_id: {bench_id!r} differs from place {place!r}; they name the same thing, give one"
        )
    name = place if place is not None else bench_id
    key = "place" if place is not None else "bench_id"
    if name is not None and (not isinstance(name, str) or not BENCH_NAME_RE.match(name)):
        raise RunnerSpecError(
            f"{prefix}.{key}: {name!r} is not a bench name; allowed: 1-63 chars of A-Z, a-z, 0-9, '_', '.', '-'"
        )
    tags = _parse_tags(options.get("tags", {}), prefix)
    if name is None and not tags:
        raise RunnerSpecError(
            f"{prefix}: a bench runner needs 'place' (or 'bench_id') or 'tags' to select a bench; "
            'e.g. {"tags": {"board": "imx8"}}'
        )
    health = options.get("health_command")
    if health is not None and (not isinstance(health, str) or not health.strip()):
        raise RunnerSpecError(f"{prefix}.health_command: {health!r} must be a non-empty shell command")
    readiness = options.get("readiness", "auto")
    if readiness not in READINESS:
        raise RunnerSpecError(f"{prefix}.readiness: {readiness!r} is not allowed; allowed: {list(READINESS)}")
    if readiness == "health" and not health:
        raise RunnerSpecError(f"{prefix}.readiness: 'health' needs health_command")
    queue = options.get("queue", True)
    if not isinstance(queue, bool):
        raise RunnerSpecError(f"{prefix}.queue: {queue!r} must be true or false")
    priority = options.get("priority", 0.0)
    if isinstance(priority, bool) or not isinstance(priority, (int, float)) or not -100 <= priority <= 100:
        raise RunnerSpecError(f"{prefix}.priority: {priority!r} must be a number from -100 to 100")
    return BenchSelector(
        place=name,
        tags={str(k): str(v) for k, v in sorted(tags.items())},
        health_command=health,
        readiness=readiness,
        queue=queue,
        priority=float(priority),
    )


def _parse_tags(tags: Any, prefix: str) -> Mapping[str, str]:
    if not isinstance(tags, Mapping):
        raise RunnerSpecError(f"{prefix}.tags: expected a mapping of tag to value, got {tags!r}")
    for tag, value in tags.items():
        if not isinstance(tag, str) or not TAG_KEY_RE.match(tag) or tag == "name":
            raise RunnerSpecError(
                f"{prefix}.tags: key {tag!r} is not allowed; allowed: [a-z][a-z0-9_]+ (at least 2 chars), "
                "not 'name' (use place=)"
            )
        if not isinstance(value, str) or not TAG_VALUE_RE.match(value):
            raise RunnerSpecError(
                f"{prefix}.tags.{tag}: {value!r} is not a tag value; allowed: 1-63 chars of "
                "A-Z, a-z, 0-9, '_', '.', ':', '-'"
            )
    return tags


def selector_for(spec_options: Mapping[str, Any], profile_options: Mapping[str, Any]) -> BenchSelector:
    """The spec's options over the catalog profile's (a profile may pin tags, e.g. ``board: imx8``)."""
    merged: dict[str, Any] = {k: v for k, v in profile_options.items() if k in OPTION_KEYS}
    merged.update(spec_options)
    merged["tags"] = {**dict(profile_options.get("tags") or {}), **dict(spec_options.get("tags") or {})}
    return parse_bench_options(merged)


# -- local subprocesses ------------------------------------------------------------------------
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
