"""The ``labgrid`` backend. Benches reserved on a labgrid coordinator; client and a local coordinator (docs/benches.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.backends.labgrid.backend import LabgridBackend

__all__ = ["LabgridBackend"]


def __getattr__(attr: str) -> Any:
    """Public names, imported on first use: ``python -m`` helpers of this package (daemons,
    coordinators) and the worker processes they spawn do not import the backend."""
    if attr in __all__:
        from airflow_provider_runners.backends.labgrid import backend

        return getattr(backend, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
