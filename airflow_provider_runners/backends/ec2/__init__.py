"""The ``ec2`` backend. Dedicated EC2 hosts: plan, warm-pool claims, SSM commands (docs/ec2.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.backends.ec2.backend import Ec2Backend

__all__ = ["Ec2Backend"]


def __getattr__(attr: str) -> Any:
    """Public names, imported on first use: ``python -m`` helpers of this package (daemons,
    coordinators) and the worker processes they spawn do not import the backend."""
    if attr in __all__:
        from airflow_provider_runners.backends.ec2 import backend

        return getattr(backend, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
