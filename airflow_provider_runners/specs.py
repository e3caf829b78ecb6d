"""Moved to :mod:`airflow_provider_runners.core.specs`; ``airflow_provider_runners.specs`` stays importable (the same module object, so
private names and monkeypatching keep working) for DAGs and third-party backends."""

from __future__ import annotations

import sys

import airflow_provider_runners.core.specs as _moved
from airflow_provider_runners.core.specs import (
    LABEL_RE,
    MAX_TTL,
    MIN_TTL,
    RUNNER_CLASSES,
    RunnerClass,
    RunnerSpec,
    RunnerTags,
    format_validation_error,
    parse_duration,
    split_ref,
)

__all__ = [
    "LABEL_RE",
    "MAX_TTL",
    "MIN_TTL",
    "RUNNER_CLASSES",
    "RunnerClass",
    "RunnerSpec",
    "RunnerTags",
    "format_validation_error",
    "parse_duration",
    "split_ref",
]

sys.modules[__name__] = _moved
