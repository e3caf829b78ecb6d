"""Moved to :mod:`airflow_provider_runners.core.catalog`; ``airflow_provider_runners.catalog`` stays importable (the same module object, so
private names and monkeypatching keep working) for DAGs and third-party backends."""

from __future__ import annotations

import sys

import airflow_provider_runners.core.catalog as _moved
from airflow_provider_runners.core.catalog import (
    DEFAULT_CATALOG,
    BillingRule,
    Budgets,
    Catalog,
    DriverBundle,
    Environment,
    ImageVersion,
    NetworkProfile,
    Price,
    Profile,
    ResolvedSpec,
    configured_catalog_path,
    configured_environment,
    load_catalog,
    resolve_spec,
)

__all__ = [
    "DEFAULT_CATALOG",
    "BillingRule",
    "Budgets",
    "Catalog",
    "DriverBundle",
    "Environment",
    "ImageVersion",
    "NetworkProfile",
    "Price",
    "Profile",
    "ResolvedSpec",
    "configured_catalog_path",
    "configured_environment",
    "load_catalog",
    "resolve_spec",
]

sys.modules[__name__] = _moved
