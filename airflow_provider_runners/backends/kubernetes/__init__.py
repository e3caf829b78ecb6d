"""The ``kubernetes`` backend. A pod per runner on EKS or any cluster: client, pod builder, exec (docs/kubernetes.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.backends.kubernetes.backend import POD_COMMAND, KubernetesBackend

__all__ = ["POD_COMMAND", "KubernetesBackend"]


def __getattr__(attr: str) -> Any:
    """Public names, imported on first use: ``python -m`` helpers of this package (daemons,
    coordinators) and the worker processes they spawn do not import the backend."""
    if attr in __all__:
        from airflow_provider_runners.backends.kubernetes import backend

        return getattr(backend, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
