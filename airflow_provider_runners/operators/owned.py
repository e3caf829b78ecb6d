"""The single-task form: a work task that owns its runner (``spec=`` instead of ``handle=``).

``RunnerCommandOperator(spec=..., conn_id=...)`` and ``DaskJobOperator(spec=..., conn_id=...)``
create (or adopt) a runner at the start of ``execute``, wait in the task until it is ready, do
their work on it, and end it before the task ends, whatever the outcome — the pattern of
Airflow's ``KubernetesPodOperator``. No provision or teardown task instance of its own, so no
extra scheduler hop (docs/benchmarks.md, issue 18); the price is what the group form
(``runner(...)``) gives and this one does not:

* the readiness wait holds the task's worker slot (no deferral): for runners that take minutes
  (EC2, Dataproc) prefer the group form;
* one runner per task, not shared by several work tasks;
* a try that is killed ends its runner (``on_kill``), so ``DaskJobOperator``'s re-attach across
  tries does not apply: the next try starts the job again on a new runner.

Nothing leaks: the runner carries the task instance's lineage tag, so a try adopts (if healthy)
or replaces what an earlier try left; ``on_kill`` ends it; a try killed with SIGKILL leaves it to
its ttl (ended by the backend itself) and to the reaper once the DAG run has ended
(docs/architecture.md). To end one by hand: ``airflow-runners reap`` or the backend's own
console, by the ``runner-lineage`` tag.

Evidence (docs/evidence.md), one chain per task instance: the ``provision`` entry when the runner
is ready; on success the ``work`` entry, then the terminal ``end`` entry (``by: "owner task"``);
on failure the ``end`` entry, then the task's failure or retry callback adds the ``work`` entry.
A later try first writes a ``work`` entry for each earlier try that was killed without one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_runners import templated_spec
from airflow_provider_runners.backends.registry import check_spec
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

#: ``by`` of the ``end`` entry this form writes (governance/ending.py, ENDERS).
OWNER = "owner task"
#: How long ``on_kill`` may spend ending the runner (the supervisor escalates to SIGKILL at 5 s).
ON_KILL_BUDGET_S = 4.5


def _record_earlier_killed_tries(context: Context, handle: RunnerHandle) -> None:
    from airflow_provider_runners.evidence.callbacks import record_earlier_killed_tries

    try:
        record_earlier_killed_tries(context, handle.lineage_key, handle)
    except Exception:  # evidence never fails the task
        logging.getLogger(__name__).exception("evidence: could not check earlier tries of this task")


T = TypeVar("T")


def run_on_runner(task: Any, context: Context, work: Callable[[Context, RunnerHandle], T]) -> T:
    """``work(context, handle)`` on the task's runner: the group's (``task.handle``), or one the
    task owns for the call (``task.owned``, the single-task form). ``task.handle`` then holds the
    owned runner's handle while it lives, for evidence, lineage and links."""
    owned: OwnedRunner | None = task.owned
    if owned is None:
        return work(context, RunnerHandle.from_xcom(task.handle))
    task.handle = None  # dag.test() may run this operator object again
    with owned.hold(context) as handle:
        task.handle = handle.to_xcom()
        return work(context, handle)


def owner_arguments(handle: Any, spec: Any) -> None:
    """Exactly one of ``handle`` (a runner of a ``runner(...)`` group) and ``spec`` (a runner of
    this task's own); raise a clear error naming both otherwise."""
    if (handle is None) == (spec is None):
        raise RunnerSpecError(
            "handle / spec: give exactly one — handle=<the provision's output> to work on a runner of a "
            "runner(...) group, or spec={...} (with conn_id=) for a runner this task creates and ends "
            f"itself; got handle={'set' if handle is not None else 'None'}, spec={'set' if spec is not None else 'None'}"
        )


class OwnedRunner:
    """The runner of one work task: its spec, checked at parse time, and its lifetime in ``execute``.

    :param spec: a RunnerSpec or a mapping of its fields (literal: Jinja templates are refused
        here; the group form renders them).
    :param conn_id: the runner Connection; its conn_type selects the backend.
    :param runner_classes: the runner classes the work can use; another is refused at parse time.
    :param operator: the work operator's name, for that error.
    :param ready_timeout: how long to wait for readiness (in the task) before giving up.
    :param poll_interval: seconds between status polls (default: the backend's).
    :param catalog_path: a catalog file other than the configured one.
    """

    def __init__(
        self,
        spec: RunnerSpec | Mapping[str, Any],
        conn_id: str,
        runner_classes: tuple[str, ...],
        operator: str,
        ready_timeout: timedelta | float = timedelta(minutes=30),
        poll_interval: float | None = None,
        catalog_path: str | None = None,
    ) -> None:
        if templated_spec.template_of(spec) is not None:
            raise RunnerSpecError(
                "spec: a spec with Jinja templates needs the group form (runner(...) and handle=); "
                "the single-task form (spec=) checks its spec when the DAG is parsed"
            )
        self.spec = RunnerSpec.parse(spec)
        if self.spec.runner_class not in runner_classes:
            raise RunnerSpecError(
                f"spec.runner_class: {self.spec.runner_class!r} cannot serve {operator}; "
                f"allowed: {', '.join(repr(c) for c in runner_classes)}"
            )
        check_spec(resolve_spec(self.spec, backend=self.spec.backend, catalog_path=catalog_path))
        self.conn_id = conn_id
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.catalog_path = catalog_path
        self._provisioner: ProvisionRunnerOperator | None = None
        self._handle: RunnerHandle | None = None
        self._ended = threading.Event()

    def _new_provisioner(self, task_id: str) -> ProvisionRunnerOperator:
        """The provision logic of ``runner(...)``, run inside this task (never deferred)."""
        from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

        return ProvisionRunnerOperator(
            task_id=task_id,
            spec=self.spec,
            conn_id=self.conn_id,
            deferrable=False,
            ready_timeout=self.ready_timeout,
            poll_interval=self.poll_interval,
            catalog_path=self.catalog_path,
        )

    @contextmanager
    def hold(self, context: Context) -> Iterator[RunnerHandle]:
        """Provision and wait until ready; yield the handle; end the runner on the way out.

        The handle is in this task instance's XCom (``runner_handle``) from the moment the
        runner exists, as a provision task's is."""
        from airflow_provider_runners.evidence.callbacks import EvidenceCallback

        ti = context["ti"]
        self._ended.clear()
        self._handle = None
        self._provisioner = provisioner = self._new_provisioner(ti.task_id)
        try:
            handle = RunnerHandle.from_xcom(provisioner.provision(context))
        except BaseException as exc:
            # The provision ended what it made; its failure entry (terminal once all is ended)
            # also ends anything else of the lineage.
            EvidenceCallback("provision", "failed")({**context, "exception": exc})
            self._ended.set()
            raise
        self._handle = handle
        EvidenceCallback("provision", "success")(context)
        _record_earlier_killed_tries(context, handle)
        try:
            yield handle
        except BaseException:
            self.end("the task that owned it failed")
            raise  # the task's failure / retry callback then writes its work entry
        # The work entry before the end, as a group's work precedes its teardown; the task's own
        # success callback then finds it (same event key) and writes nothing more.
        EvidenceCallback("work", "success")(context)
        self.end("the task that owned it ended")

    def _who(self) -> dict[str, Any]:
        """Who holds the runner (dag, run, task, map index, try, lineage key), as the provision
        learned it once it knew its backend; empty before that."""
        return (self._provisioner._who if self._provisioner else None) or {}

    def end(self, reason: str) -> list[dict[str, Any]]:
        """End this task's runner (the handle, and anything with its lineage tag) and record the
        terminal ``end`` entry; idempotent."""
        if self._ended.is_set() or self._provisioner is None:
            return []
        from airflow_provider_runners.evidence.callbacks import record_end
        from airflow_provider_runners.governance.ending import end_runners

        backend = self._provisioner._backend
        if backend is None:
            return []
        who = self._who()
        results = end_runners(backend, [self._handle], who["lineage_key"], reason)
        self._ended.set()
        if who.get("dag_id"):
            record_end(
                dag_id=who["dag_id"],
                run_id=who["run_id"],
                lineage_key=who["lineage_key"],
                by=OWNER,
                reason=reason,
                results=results,
                task_id=who["task_id"],
                map_index=who["map_index"],
                try_number=who["try_number"],
                handle=self._handle,
            )
        return results

    def on_kill(self, log: Any) -> None:
        """The task is being killed: end the runner (bounded: SIGKILL follows soon)."""
        provisioner = self._provisioner
        if provisioner is None or self._ended.is_set():
            return
        from airflow_provider_runners.operators.provision import run_bounded

        if self._handle is None:  # still provisioning: its own on_kill ends and records it
            provisioner.on_kill()
            self._ended.set()
            run_bounded(self._record_killed_try, 1.0, log)
            return

        def end_and_record() -> None:
            self._record_killed_try()  # no callback may run for a try killed from outside
            self.end("the task that owned it was killed")

        run_bounded(end_and_record, ON_KILL_BUDGET_S, log)

    def _record_killed_try(self) -> None:
        """The ``work`` entry of this try, before the end entry (the task's own callback, if it
        still runs, finds its key and adds nothing)."""
        from airflow_provider_runners.evidence.callbacks import append_killed_work

        who = self._who()
        if not who.get("dag_id"):
            return
        try:
            append_killed_work(
                who["dag_id"],
                who["run_id"],
                who["lineage_key"],
                self._handle,
                who["task_id"],
                who["map_index"],
                who["try_number"],
                "on_kill",
                f"{who['task_id']} try {who['try_number']} was killed (marked failed or success, cleared, "
                "or its DAG run stopped); it ended its runner",
            )
        except Exception:  # evidence never blocks the end of the runner
            logging.getLogger(__name__).exception("evidence: could not record the killed try")
