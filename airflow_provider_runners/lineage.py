"""Moved to :mod:`airflow_provider_runners.core.lineage`; ``airflow_provider_runners.lineage`` stays importable (the same module object, so
private names and monkeypatching keep working) for DAGs and third-party backends."""

from __future__ import annotations

import sys

import airflow_provider_runners.core.lineage as _moved
from airflow_provider_runners.core.lineage import (
    MANAGED_BY,
    Lineage,
    label_value,
    sibling_map_index,
)

__all__ = ["MANAGED_BY", "Lineage", "label_value", "sibling_map_index"]

sys.modules[__name__] = _moved
