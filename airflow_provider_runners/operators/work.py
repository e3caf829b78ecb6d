"""Work tasks that use a runner: :class:`DaskJobOperator`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.runtime import runtime_versions
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.exceptions import ProvisionError

if TYPE_CHECKING:
    from airflow.sdk import Context


class DaskJobOperator(BaseOperator):
    """Run ``python_callable(client, *op_args, **op_kwargs)`` with a ``distributed.Client`` on the runner.

    ``handle`` is the provision task's output (``with runner(...) as r: DaskJobOperator(handle=r, ...)``).
    The client connects to ``handle.endpoints["scheduler"]`` — the same for ``local_dask`` and
    ``dataproc_dask`` — and is closed afterwards. The callable's return value is the task's
    XCom: keep it small (a summary, a path), not data.
    """

    template_fields = ("handle", "op_args", "op_kwargs")
    ui_color = "#dde8f7"

    def __init__(
        self,
        *,
        handle: RunnerHandle | Mapping[str, Any] | str | Any,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        connect_timeout: float = 30.0,
        provision_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise TypeError(f"python_callable must be callable, got {type(python_callable).__name__}")
        self.handle = handle
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.connect_timeout = connect_timeout
        add_evidence_callbacks(self, "work", provision_task_id)

    def execute(self, context: Context) -> Any:
        handle = RunnerHandle.from_xcom(self.handle)
        address = handle.endpoints.get("scheduler")
        if not address:
            raise ProvisionError(
                f"runner {handle.resource_id} has no 'scheduler' endpoint; is it a dask_cluster, and ready?"
            )
        from distributed import Client

        from airflow_provider_runners.dask_modules import ship_modules

        started = time.monotonic()
        with Client(address, timeout=f"{self.connect_timeout}s", set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1).get("workers", {})
            facts = {
                "scheduler": address,
                "workers": len(workers),
                "nthreads": sum(w.get("nthreads", 0) for w in workers.values()),
                "client_runtime": runtime_versions(("dask", "distributed")),
                "callable": f"{self.python_callable.__module__}.{self.python_callable.__qualname__}",
            }
            dag_file = getattr(context.get("dag"), "fileloc", None)
            facts["shipped_modules"] = ship_modules(
                client, self.python_callable, os.path.dirname(dag_file) if dag_file else None
            )
            context["ti"].xcom_push(key=FACTS_XCOM_KEY, value=facts)
            self.log.info("running %s on %s (%d workers)", facts["callable"], address, facts["workers"])
            with client.as_current():
                result = self.python_callable(client, *self.op_args, **self.op_kwargs)
        facts["job_seconds"] = round(time.monotonic() - started, 3)
        if _small_summary(result):
            facts["result"] = result
        context["ti"].xcom_push(key=FACTS_XCOM_KEY, value=facts)
        return result


def _small_summary(value: Any) -> bool:
    """A result worth copying into evidence: a dict of at most 20 scalars."""
    return (
        isinstance(value, dict)
        and len(value) <= 20
        and all(isinstance(v, (str, int, float, bool, type(None))) for v in value.values())
    )
