"""The ``ssh`` backend: dedicated_host runners on existing hosts reached by SSH (docs/ssh.md)."""

from __future__ import annotations

from airflow_provider_runners.backends.ssh.backend import SshBackend

__all__ = ["SshBackend"]
