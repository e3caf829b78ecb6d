"""Moved to :mod:`airflow_provider_runners.core.backend`; ``airflow_provider_runners.backends.base`` stays importable (the same module object, so
private names and monkeypatching keep working) for DAGs and third-party backends."""

from __future__ import annotations

import sys

import airflow_provider_runners.core.backend as _moved
from airflow_provider_runners.core.backend import (
    STANDARD_FIELDS,
    Backend,
    CommandRequest,
    CommandResult,
    ConnectionConfig,
    ConnField,
    DetectsStale,
    OutputSink,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    RunsCommands,
    TeardownResult,
)

__all__ = [
    "STANDARD_FIELDS",
    "Backend",
    "CommandRequest",
    "CommandResult",
    "ConnField",
    "ConnectionConfig",
    "DetectsStale",
    "OutputSink",
    "ProvisionRequest",
    "RunnerState",
    "RunnerStatus",
    "RunsCommands",
    "TeardownResult",
]

sys.modules[__name__] = _moved
