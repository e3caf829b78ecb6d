"""Backends: one module per way of getting compute, all behind :class:`~.base.Backend`.

The contract's names are imported on first use: the ``python -m`` helpers under this package
(the local_dask daemon, the labgrid coordinator) and the worker processes they spawn import this
package first, and should not pay for the contract they never use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.core.backend import (
        Backend,
        ProvisionRequest,
        RunnerState,
        RunnerStatus,
        TeardownResult,
    )

__all__ = ["Backend", "ProvisionRequest", "RunnerState", "RunnerStatus", "TeardownResult"]


def __getattr__(attr: str) -> Any:
    if attr in __all__:
        from airflow_provider_runners.core import backend

        return getattr(backend, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
