"""airflow-provider-runners: borrow compute for a DAG and always give it back.

Public names (imported lazily so that importing the package stays cheap at DAG parse time)::

    from airflow_provider_runners import runner, RunnerSpec, RunnerHandle
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BurstPlanOperator",
    "DaskJobOperator",
    "ProvisionRunnerOperator",
    "RunnerCommandOperator",
    "RunnerHandle",
    "RunnerSpec",
    "TeardownRunnerOperator",
    "__version__",
    "runner",
]

_LAZY = {
    "runner": "airflow_provider_runners.taskgroup",
    "RunnerSpec": "airflow_provider_runners.core.specs",
    "RunnerHandle": "airflow_provider_runners.core.handles",
    "ProvisionRunnerOperator": "airflow_provider_runners.operators.provision",
    "TeardownRunnerOperator": "airflow_provider_runners.operators.teardown",
    "DaskJobOperator": "airflow_provider_runners.operators.work",
    "RunnerCommandOperator": "airflow_provider_runners.operators.command",
    "BurstPlanOperator": "airflow_provider_runners.operators.burst",
}

if TYPE_CHECKING:
    from airflow_provider_runners.core.handles import RunnerHandle
    from airflow_provider_runners.core.specs import RunnerSpec
    from airflow_provider_runners.operators.burst import BurstPlanOperator
    from airflow_provider_runners.operators.command import RunnerCommandOperator
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
    from airflow_provider_runners.operators.teardown import TeardownRunnerOperator
    from airflow_provider_runners.operators.work import DaskJobOperator
    from airflow_provider_runners.taskgroup import runner


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'airflow_provider_runners' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
