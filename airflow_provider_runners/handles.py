"""Moved to :mod:`airflow_provider_runners.core.handles`; ``airflow_provider_runners.handles`` stays importable (the same module object, so
private names and monkeypatching keep working) for DAGs and third-party backends."""

from __future__ import annotations

import sys

import airflow_provider_runners.core.handles as _moved
from airflow_provider_runners.core.handles import (
    FACTS_XCOM_KEY,
    HANDLE_XCOM_KEY,
    RunnerHandle,
    Scalar,
)

__all__ = ["FACTS_XCOM_KEY", "HANDLE_XCOM_KEY", "RunnerHandle", "Scalar"]

sys.modules[__name__] = _moved
