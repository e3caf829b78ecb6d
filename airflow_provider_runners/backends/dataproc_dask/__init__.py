"""The ``dataproc_dask`` backend. Ephemeral Dataproc clusters running Dask (docs/dataproc.md)."""

from __future__ import annotations

from airflow_provider_runners.backends.dataproc_dask.backend import DataprocDaskBackend, validate_region

__all__ = ["DataprocDaskBackend", "validate_region"]
