"""The ``dataproc_dask`` backend. Ephemeral Dataproc clusters running Dask (docs/dataproc.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.backends.dataproc_dask.backend import DataprocDaskBackend, validate_region

__all__ = ["DataprocDaskBackend", "validate_region"]


def __getattr__(attr: str) -> Any:
    """Public names, imported on first use: ``python -m`` helpers of this package (daemons,
    coordinators) and the worker processes they spawn do not import the backend."""
    if attr in __all__:
        from airflow_provider_runners.backends.dataproc_dask import backend

        return getattr(backend, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
