"""The ``labgrid`` backend. Benches reserved on a labgrid coordinator; client and a local coordinator (docs/benches.md)."""

from __future__ import annotations

from airflow_provider_runners.backends.labgrid.backend import LabgridBackend

__all__ = ["LabgridBackend"]
