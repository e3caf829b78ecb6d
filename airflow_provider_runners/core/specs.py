"""What a DAG asks for: :class:`RunnerSpec`.

A spec is validated twice, both times when the DAG file is parsed (nothing is created
before either passes):

1. shape — :meth:`RunnerSpec.parse` (pydantic): types, ranges, label syntax;
2. governance — :meth:`airflow_provider_runners.core.catalog.Catalog.resolve`: the profile,
   image, network profile and driver bundles must exist (and be approved) in the catalog.

Every error is a :class:`~airflow_provider_runners.exceptions.RunnerSpecError` whose message
names the field, the value given and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from airflow_provider_runners.exceptions import RunnerSpecError

RunnerClass = Literal["dask_cluster", "dedicated_host", "pod", "bench"]
RUNNER_CLASSES: tuple[str, ...] = ("dask_cluster", "dedicated_host", "pod", "bench")

#: Label values must be portable: GCP labels are the strictest (lowercase, <= 63 chars).
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}

MIN_TTL = timedelta(seconds=5)
MAX_TTL = timedelta(days=14)


def parse_duration(value: Any) -> Any:
    """Accept ``timedelta``, seconds (int/float) or strings like ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    return value


DURATION_HINT = "use 30m, 2h, 1d (a number with s, m, h or d) or seconds"


def human_duration(value: timedelta) -> str:
    """``timedelta(days=14)`` -> ``14d``, ``timedelta(seconds=90)`` -> ``90s``: how specs write them."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_spec_duration(value: Any) -> Any:
    """:func:`parse_duration` for spec fields, with the error a person can act on: ``"-5m"`` is
    "must be positive", ``"5 minutes"`` is "not a duration; use 30m, 2h, 1d"."""
    parsed = parse_duration(value)
    if isinstance(parsed, str) and not parsed.strip().upper().startswith("P"):  # ISO 8601 passes through
        text = parsed.strip()
        if text.startswith("-") and _DURATION_RE.match(text[1:]):
            raise ValueError(f"must be a positive duration; {DURATION_HINT}")
        raise ValueError(f"not a duration; {DURATION_HINT}")
    return parsed


class RunnerTags(BaseModel):
    """Cost-attribution tags written on every resource (as tags / labels)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(description="Team or tenant that pays for the runner.")
    pipeline: str | None = Field(default=None, description="Pipeline name; defaults to the dag_id.")
    cost_center: str | None = None
    extra: dict[str, str] = Field(default_factory=dict, description="More labels, key and value label-safe.")

    @field_validator("tenant", "pipeline", "cost_center")
    @classmethod
    def _label_safe(cls, value: str | None) -> str | None:
        if value is not None and not LABEL_RE.match(value):
            raise ValueError(
                f"{value!r} is not label-safe; allowed: 1-63 chars of a-z, 0-9, '-', '_', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("extra")
    @classmethod
    def _extra_label_safe(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            for part in (key, item):
                if not LABEL_RE.match(part):
                    raise ValueError(
                        f"{part!r} (in {key}={item}) is not label-safe; allowed: 1-63 chars of "
                        "a-z, 0-9, '-', '_', starting and ending with a letter or digit"
                    )
        return value


class RunnerSpec(BaseModel):
    """What a DAG asks for: a runner of a class and profile, with image, network and tags.

    ``ttl`` is the hard backstop: the backend makes the resource end itself after it, even
    if Airflow never runs the teardown. Durations accept seconds or ``"90s"``/``"30m"``/``"2h"``.
    ``options`` are backend-specific overrides of the catalog profile (documented per backend).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    runner_class: RunnerClass
    profile: str = Field(min_length=1)
    tags: RunnerTags
    image: str | None = Field(default=None, description="Approved image as 'name@version'.")
    network_profile: str | None = None
    driver_bundles: tuple[str, ...] = Field(default=(), description="Driver bundles as 'name@version'.")
    ttl: timedelta = Field(
        default=timedelta(hours=2), description="Backstop lifetime enforced by the backend."
    )
    idle_timeout: timedelta | None = Field(default=None, description="End the runner when idle this long.")
    environment: str | None = Field(default=None, description="Catalog environment; default from config.")
    backend: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="The backend (its entry-point name, e.g. 'kubernetes') meant to serve this spec: its "
        "options are then checked when the DAG is parsed, and a Connection of another backend is refused "
        "(docs/architecture.md, 'Options are checked at parse time').",
    )
    approval_ref: str | None = Field(default=None, description="Governance approval, required by Custom.")
    spot: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    _parse_durations = field_validator("ttl", "idle_timeout", mode="before")(parse_spec_duration)

    @field_validator("ttl")
    @classmethod
    def _ttl_range(cls, value: timedelta) -> timedelta:
        if not MIN_TTL <= value <= MAX_TTL:
            raise ValueError(
                f"{human_duration(value)} is out of range; allowed: {human_duration(MIN_TTL)} to "
                f"{human_duration(MAX_TTL)}"
            )
        return value

    @field_validator("idle_timeout")
    @classmethod
    def _idle_positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() <= 0:
            raise ValueError(f"{human_duration(value)} must be positive; {DURATION_HINT}")
        return value

    @field_validator("options")
    @classmethod
    def _bench_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Bench runners select a bench through options (place / tags): checked at parse time."""
        if info.data.get("runner_class") == "bench":
            from airflow_provider_runners.core.bench_options import parse_bench_options

            try:
                parse_bench_options(value, prefix="options")
            except RunnerSpecError as exc:
                message = str(exc).removeprefix("options: ").removeprefix("options.")
                raise ValueError(message) from None
        return value

    @field_validator("image")
    @classmethod
    def _image_ref(cls, value: str | None) -> str | None:
        if value is not None:
            split_ref(value, "image")
        return value

    @field_validator("driver_bundles")
    @classmethod
    def _bundle_refs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ref in value:
            split_ref(ref, "driver bundle")
        return value

    @classmethod
    def parse(cls, value: RunnerSpec | Mapping[str, Any]) -> RunnerSpec:
        """Build a spec from a mapping, turning pydantic errors into one readable RunnerSpecError."""
        if isinstance(value, RunnerSpec):
            return value
        if not isinstance(value, Mapping):
            raise RunnerSpecError(f"spec: expected a RunnerSpec or a mapping, got {type(value).__name__}")
        try:
            return cls.model_validate(dict(value))
        except ValidationError as exc:
            raise RunnerSpecError(format_validation_error(exc, prefix="spec")) from None


def split_ref(ref: str, what: str) -> tuple[str, str]:
    """Split ``name@version``; raise ValueError naming the expected form."""
    name, sep, version = ref.partition("@")
    if not sep or not name or not version:
        article = "an" if what[:1] in "aeiou" else "a"
        raise ValueError(f"{ref!r} is not {article} {what} reference; expected 'name@version'")
    return name, version


def format_validation_error(exc: ValidationError, prefix: str) -> str:
    """One line per problem: ``prefix.field.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in (prefix, *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg = f"{msg}".replace("Input should be", "allowed:")
        shown = repr(err.get("input"))
        if len(shown) > 120:
            shown = shown[:117] + "..."
        if err["type"] == "missing":
            lines.append(f"{loc}: field required")
        elif isinstance(err.get("input"), dict | list):
            lines.append(f"{loc}: {msg}")
        else:
            lines.append(f"{loc}: {msg} (got {shown})")
    return "invalid runner spec:\n  " + "\n  ".join(lines)
