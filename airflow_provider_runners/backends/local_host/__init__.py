"""The ``local_host`` backend. dedicated_host runners as subprocesses on the worker."""

from __future__ import annotations

from airflow_provider_runners.backends.local_host.backend import LocalHostBackend

__all__ = ["LocalHostBackend"]
