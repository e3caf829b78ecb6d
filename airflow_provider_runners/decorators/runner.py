"""``@task.runner``: borrow a runner around one Python function, TaskFlow style.

::

    from airflow.sdk import task

    @task.runner(conn_id="runners_default", spec={"runner_class": "dask_cluster", "profile": "small",
                                                 "tags": {"tenant": "analytics"}, "ttl": "30m"})
    def aggregate(client, path):            # a distributed.Client on the borrowed cluster
        return client.submit(len, path).result()

    total = aggregate("s3://bucket/sales")  # an XComArg, like any @task

Calling the decorated function inside a DAG makes exactly what ``runner(...)`` makes (it *is*
``runner(...)``): a task group named after the function (``group_id=`` to change it) with the
``provision`` setup task, the function as the work task, and the ``teardown`` task that runs
whatever happens — the same adopt-or-replace on retry, the same evidence chain, the same
backstops. The spec is checked against the catalog when the DAG is parsed.

The function's first argument is what the runner offers:

* ``dask_cluster``: a ``distributed.Client`` connected to it (``DaskJobOperator``), set as the
  current client, closed afterwards; the function's code is shipped to the cluster.
* ``dedicated_host``, ``pod``, ``bench``: the ready :class:`~airflow_provider_runners.handles.RunnerHandle`;
  the function runs on the Airflow worker (the host that drives the runner: e.g. a bench is
  driven through ``labgrid-client``; ``local_host`` is the worker itself). To run a command *on*
  the runner use ``RunnerCommandOperator`` inside ``runner(...)``.

The return value is the work task's XCom (keep it small). Registered as the provider's
``task-decorators`` entry ``runner`` (``get_provider_info.py``), so ``@task.runner`` works once
the provider is installed; ``runner_task`` is the same callable for direct import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners import templated_spec
from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID
from airflow_provider_runners.governance.heartbeat import Heartbeat
from airflow_provider_runners.handles import FACTS_XCOM_KEY, RunnerHandle
from airflow_provider_runners.links import RUNNER_LINKS
from airflow_provider_runners.specs import RunnerSpec

if TYPE_CHECKING:
    from airflow.sdk import Context


class RunnerPythonOperator(BaseOperator):
    """Call ``python_callable(handle, *op_args, **op_kwargs)`` with the ready handle of a runner that
    is not a Dask cluster (``@task.runner`` on a host, pod or bench). Runs on the Airflow worker."""

    template_fields = ("handle", "op_args", "op_kwargs")
    operator_extra_links = RUNNER_LINKS  # links.py: dashboard, console, pod, bench from the handle
    ui_color = "#dde8f7"

    def __init__(
        self,
        *,
        handle: Any,
        python_callable: Callable[..., Any],
        op_args: list[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.handle = handle
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})

    def execute(self, context: Context) -> Any:
        handle = RunnerHandle.from_xcom(self.handle)
        name = f"{self.python_callable.__module__}.{self.python_callable.__qualname__}"
        context["ti"].xcom_push(key=FACTS_XCOM_KEY, value={"callable": name, "runner": handle.resource_id})
        self.log.info("running %s with runner %s (%s)", name, handle.resource_id, handle.backend)
        with Heartbeat(handle.lineage_key):  # this task holds the runner while the function runs
            return self.python_callable(handle, *self.op_args, **self.op_kwargs)


class _RunnerTask:
    """A function decorated with ``@task.runner``: calling it in a DAG adds ``runner(...)`` around it."""

    def __init__(self, function: Callable[..., Any], settings: dict[str, Any]) -> None:
        functools.update_wrapper(self, function)
        self.function = function
        self.settings = settings
        # Parse time, like runner(...): a bad spec is a DAG import error naming field and value
        # (a templated spec is checked when rendered: templated_spec.py).
        raw = settings["spec"]
        self.spec = raw if templated_spec.template_of(raw) is not None else RunnerSpec.parse(raw)
        self.runner_class = raw.get("runner_class") if isinstance(raw, Mapping) else raw.runner_class

    def override(self, **changes: Any) -> _RunnerTask:
        """The same decorated function with other settings (``group_id=``, ``spec=``, task kwargs...)."""
        return _RunnerTask(self.function, {**self.settings, **changes})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from airflow_provider_runners.operators.work import DaskJobOperator
        from airflow_provider_runners.taskgroup import runner

        s = dict(self.settings)
        group_id = s.pop("group_id", None) or self.function.__name__
        task_id = s.pop("task_id", None) or self.function.__name__
        runner_kwargs = {
            key: s.pop(key)
            for key in ("conn_id", "ready_timeout", "deferrable", "provision_kwargs", "teardown_kwargs")
            if key in s
        }
        s.pop("spec")
        with runner(group_id, spec=self.spec, **runner_kwargs) as handle:
            if self.runner_class == "dask_cluster":
                work: BaseOperator = DaskJobOperator(
                    task_id=task_id,
                    handle=handle,
                    python_callable=self.function,
                    op_args=args,
                    op_kwargs=kwargs,
                    **s,
                )
            else:
                work = RunnerPythonOperator(
                    task_id=task_id,
                    handle=handle,
                    python_callable=self.function,
                    op_args=list(args),
                    op_kwargs=kwargs,
                    **s,
                )
        return work.output


def runner_task(
    python_callable: Callable[..., Any] | None = None,
    *,
    spec: RunnerSpec | Mapping[str, Any],
    conn_id: str = DEFAULT_CONN_ID,
    group_id: str | None = None,
    ready_timeout: timedelta | float = timedelta(minutes=30),
    deferrable: bool | None = None,
    provision_kwargs: Mapping[str, Any] | None = None,
    teardown_kwargs: Mapping[str, Any] | None = None,
    **task_kwargs: Any,
) -> Any:
    """``@task.runner(conn_id=..., spec=...)``: see the module docstring. ``task_kwargs`` go to the
    work task (``retries``, ``execution_timeout``, ``task_id``...); ``deferrable`` and
    ``ready_timeout`` to the provision task, as in ``runner(...)``."""
    settings: dict[str, Any] = {
        "spec": spec,
        "conn_id": conn_id,
        "group_id": group_id,
        "ready_timeout": ready_timeout,
        "provision_kwargs": provision_kwargs,
        "teardown_kwargs": teardown_kwargs,
        **task_kwargs,
    }
    if deferrable is not None:
        settings["deferrable"] = deferrable

    def decorate(function: Callable[..., Any]) -> _RunnerTask:
        return _RunnerTask(function, settings)

    return decorate(python_callable) if python_callable is not None else decorate
