"""Backends: one module per way of getting compute, all behind :class:`~.base.Backend`."""

from __future__ import annotations

from airflow_provider_runners.core.backend import (
    Backend,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)

__all__ = ["Backend", "ProvisionRequest", "RunnerState", "RunnerStatus", "TeardownResult"]
