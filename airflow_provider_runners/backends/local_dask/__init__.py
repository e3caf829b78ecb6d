"""The ``local_dask`` backend. A Dask LocalCluster in its own process on the worker (docs/architecture.md)."""

from __future__ import annotations

from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend

__all__ = ["LocalDaskBackend"]
