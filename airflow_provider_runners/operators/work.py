"""Work tasks that use a runner: :class:`DaskJobOperator`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, mask_runner_connection
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.runtime import runtime_versions
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.dask_jobs import AttachedJob, picklable
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.exceptions import ProvisionError
from airflow_provider_runners.links import RUNNER_LINKS
from airflow_provider_runners.operators.owned import OwnedRunner, owner_arguments, run_on_runner

if TYPE_CHECKING:
    from airflow.sdk import Context


class DaskJobOperator(BaseOperator):
    """Run ``python_callable(client, *op_args, **op_kwargs)`` with a ``distributed.Client`` on the runner.

    ``handle`` is the provision task's output (``with runner(...) as r: DaskJobOperator(handle=r, ...)``).
    The client connects to ``handle.endpoints["scheduler"]`` — the same for ``local_dask`` and
    ``dataproc_dask`` — and is closed afterwards. The callable's return value is the task's
    XCom: keep it small (a summary, a path), not data.

    **Re-attach** (``reattach=True``, the default): the callable runs *on the cluster*, as one
    Dask task published under a name derived from the task instance (dag, run, task, map index;
    not the try), with a client made on the Dask worker (``distributed.worker_client``). A try
    that dies — SIGKILL, a scheduler restart that resets the task, a lost worker — leaves it
    running; the next try of the same task instance waits for it, or takes its result if it
    already finished, instead of running the job again. What the job prints or logs (at its
    loggers' levels) is written into the task log of the try that is attached. Details and the
    resources on the cluster: :mod:`airflow_provider_runners.dask_jobs`. A try starts a new
    computation when the published one errored, was cancelled or is gone.

    It **cannot re-attach**, and each try runs the job again, when:

    - ``reattach=False``, or the callable or its arguments cannot be pickled (cloudpickle):
      then the callable runs in the Airflow task process, as before, and its client closes
      with the try (pass ``reattach=False`` when the callable needs the Airflow worker's local
      state: ``get_current_context()``, Variables or Connections, local files or queues the
      Dask workers cannot see, a registry only the Airflow worker can reach);
    - the runner was replaced (a provision retry found it broken) or its scheduler restarted:
      published jobs live in the scheduler's memory;
    - the Dask worker running the job died: Dask itself runs the job again elsewhere
      (``distributed.scheduler.allowed-failures``);
    - the try died in the instant between submitting the job and publishing its name.

    Killing a try (SIGTERM/``on_kill``, SIGKILL) does **not** stop a published job — a later
    try takes it; tearing the runner down does. A try that fails on its own (the job raised,
    ``execution_timeout``) cancels and unpublishes it, so the retry recomputes. The result
    travels through the scheduler: like the XCom it becomes, it must be small. The job is
    unpublished only after this try stored its facts in Airflow: a try whose supervisor was
    killed (its task process orphaned, still waiting) sees the job end but cannot store them, so
    the finished job stays published and the retry takes its result (docs/reliability.md).
    Evidence facts: ``computation`` = name, key, ``started_by_try``, ``reattached``, ``this_try``.

    **Single-task form** (``spec=`` and ``conn_id=`` instead of ``handle=``): the task creates its
    own cluster, waits for it in the task, runs the job and ends the cluster before it ends,
    whatever the outcome (:mod:`airflow_provider_runners.operators.owned`). No provision or
    teardown task; a killed try ends its cluster, so the next try runs the job again.
    """

    template_fields = ("handle", "op_args", "op_kwargs")
    operator_extra_links = RUNNER_LINKS  # links.py: dashboard, console, pod, bench from the handle
    ui_color = "#dde8f7"

    def __init__(
        self,
        *,
        handle: RunnerHandle | Mapping[str, Any] | str | Any = None,
        python_callable: Callable[..., Any],
        spec: RunnerSpec | Mapping[str, Any] | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        ready_timeout: timedelta | float = timedelta(minutes=30),
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        connect_timeout: float = 30.0,
        reattach: bool = True,
        provision_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner_arguments(handle, spec)
        if not callable(python_callable):
            raise TypeError(f"python_callable must be callable, got {type(python_callable).__name__}")
        self.handle = handle
        self.conn_id = conn_id
        self.owned = (
            OwnedRunner(spec, conn_id, ("dask_cluster",), "DaskJobOperator", ready_timeout)
            if spec is not None
            else None
        )
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.connect_timeout = connect_timeout
        self.reattach = reattach
        self._killed = False
        self._facts: dict[str, Any] | None = None  # for OpenLineage
        add_evidence_callbacks(self, "work", provision_task_id)

    def execute(self, context: Context) -> Any:
        return run_on_runner(self, context, self._execute_on)

    def _execute_on(self, context: Context, handle: RunnerHandle) -> Any:
        address = handle.endpoints.get("scheduler")
        if not address:
            raise ProvisionError(
                f"runner {handle.resource_id} has no 'scheduler' endpoint; is it a dask_cluster, and ready?"
            )
        # This task process never built the backend: register the Connection's secrets
        # (worker_env) with its own log masker before the job can print them.
        mask_runner_connection(handle.conn_id)
        from distributed import Client

        from airflow_provider_runners.dask_modules import ship_modules
        from airflow_provider_runners.governance.heartbeat import Heartbeat  # not at parse time

        started = time.monotonic()
        with (
            Heartbeat(handle.lineage_key),  # this task holds the runner while the job runs
            Client(address, timeout=f"{self.connect_timeout}s", set_as_default=False) as client,
        ):
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
            why_not = picklable(self.python_callable, self.op_args, self.op_kwargs) if self.reattach else None
            if self.reattach and why_not is None:
                result = self._run_published(client, context, facts, started)
            else:
                facts["computation"] = {"mode": "in_process", "why": why_not or "reattach=False"}
                context["ti"].xcom_push(key=FACTS_XCOM_KEY, value=facts)
                self.log.info("running %s on %s (%d workers)", facts["callable"], address, facts["workers"])
                with client.as_current():
                    result = self.python_callable(client, *self.op_args, **self.op_kwargs)
        facts["job_seconds"] = round(time.monotonic() - started, 3)
        if _small_summary(result):
            facts["result"] = result
        context["ti"].xcom_push(key=FACTS_XCOM_KEY, value=facts)
        self._facts = facts
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the runner as a run facet, inlets / outlets as datasets; None without the
        openlineage provider (:mod:`airflow_provider_runners.ol_facets`, docs/openlineage.md)."""
        from airflow_provider_runners.ol_facets import operator_lineage

        return operator_lineage(self.handle, self._facts, self.inlets, self.outlets)

    def _run_published(self, client: Any, context: Context, facts: dict[str, Any], started: float) -> Any:
        """Re-attach to this task instance's published job, or start and publish it; wait; store
        the facts, then unpublish (``AttachedJob.release``)."""
        ti = context["ti"]
        try_number = int(getattr(ti, "try_number", 1) or 1)
        job = AttachedJob(client, Lineage.from_context(context).key, try_number, self._job_output)
        run = job.start(self.python_callable, self.op_args, self.op_kwargs)
        facts["computation"] = {"mode": "published", **run.facts(), "this_try": try_number}
        ti.xcom_push(key=FACTS_XCOM_KEY, value=facts)  # before the wait: a killed try keeps it
        if run.reattached:
            self.log.info("re-attached to %s, started by try %s", run.key, run.started_by_try)
        else:
            self.log.info("running %s on %s as Dask job %s", facts["callable"], facts["scheduler"], run.key)
        parent = os.getppid()
        try:
            result = job.wait()
        except BaseException:
            # A kill leaves the job for the next try, and so does an orphaned try (its supervisor
            # died: whatever failed here, a retry follows); any other failure of this try ends it.
            job.abandon(cancel=not self._killed and os.getppid() == parent)
            raise
        facts["job_seconds"] = round(time.monotonic() - started, 3)
        # Hand the result over before unpublishing it. A task process whose supervisor was killed
        # sees the job to its end but cannot reach Airflow any more (this push raises; its parent
        # changed): then the finished job stays published and the retry takes its result instead
        # of computing it again (docs/reliability.md).
        ti.xcom_push(key=FACTS_XCOM_KEY, value=facts)
        if os.getppid() != parent:
            raise RuntimeError(
                f"the supervisor of this task process is gone: Dask job {run.key} is left published "
                "for the next try"
            )
        job.release()
        return result

    def _job_output(self, line: str) -> None:
        self.log.info("%s", line)

    def on_kill(self) -> None:
        """The task process is being killed: leave a published job running for the next try (the
        group form); the single-task form ends its cluster, and the job with it."""
        self._killed = True
        if self.owned is not None:
            self.owned.on_kill(self.log)


def _small_summary(value: Any) -> bool:
    """A result worth copying into evidence: a dict of at most 20 scalars."""
    return (
        isinstance(value, dict)
        and len(value) <= 20
        and all(isinstance(v, (str, int, float, bool, type(None))) for v in value.values())
    )
