"""The options of a ``bench`` runner: which bench (a place / bench id or tag filters) and how its
readiness is checked. Validated when the DAG is parsed (``RunnerSpec`` calls
:func:`parse_bench_options` for ``runner_class="bench"``) so a malformed filter is a DAG import
error naming the field, the value and what is allowed; both bench backends (``labgrid``,
``bench_http``) read the same options (docs/benches.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from airflow_provider_runners.exceptions import RunnerSpecError

#: Tag keys as labgrid accepts them (``labgrid.remote.common.TAG_KEY``, anchored).
TAG_KEY_RE = re.compile(r"^[a-z][a-z0-9_]+$")
#: Tag values and bench names: portable between labgrid and HTTP platforms.
TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$")
BENCH_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
READINESS = ("auto", "resources", "health", "none")
OPTION_KEYS = ("place", "bench_id", "tags", "health_command", "readiness", "queue", "priority")


class BenchOptions(BaseModel):
    """``spec.options`` of a bench runner (the backends' options model); values are checked by
    :func:`parse_bench_options`, which ``RunnerSpec`` runs for every bench spec."""

    model_config = ConfigDict(extra="forbid")
    place: str | None = None
    bench_id: str | None = None
    tags: dict[str, str] | None = None
    health_command: str | None = None
    readiness: Literal["auto", "resources", "health", "none"] | None = None
    queue: bool | None = None
    priority: float | None = None


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
