"""``runner(...)``: provision and teardown wired around the work, with setup/teardown semantics.

::

    with runner("cluster", conn_id="runners_default", spec={...}) as handle:
        DaskJobOperator(task_id="aggregate", handle=handle, python_callable=aggregate)

makes a task group ``cluster`` holding ``provision`` (a setup task), the work,
``teardown`` (a teardown task, trigger rule ``all_done``) and ``provisioned`` (an empty
teardown of the provision with ``on_failure_fail_dagrun=True``). So the teardown runs once the
provision and the work are done, whatever their outcome — also when the provision *failed*
after creating something (its handle is in XCom, or the runner carries its lineage tag), and
when the work failed — and clearing a work task clears provision and teardown with it (that
comes from the setup/teardown marks, not the trigger rule). A DAG with ``fail_fast=True``
accepts only ``all_success`` / ``all_done_setup_success``: there the teardown keeps Airflow's
``all_done_setup_success``, and a failed provision is cleaned up by its own failure callback
and the reaper (docs/architecture.md).

``provisioned`` is what makes a failed provision fail the run. Airflow judges a run by its
leaves and ignores teardown tasks there, so with only the work and the ``all_done`` teardown a
provision failed from outside (the run marked failed over the REST API while the provision was
deferred: Airflow skips the work, keeps the teardown, and then judges the run by the skipped
work) would end the run ``success``. ``provisioned`` becomes ``upstream_failed`` when the
provision failed and counts for the run's state (``on_failure_fail_dagrun``); it never occupies
a worker slot (the scheduler marks an empty task done itself). Cleanup by hand: nothing, it
creates nothing.

The provision gets retries with exponential backoff by default (``PROVISION_RETRY_DEFAULTS`` in
operators/provision.py): a retry adopts the runner an earlier try made.
Every task inside also gets evidence callbacks, so each records a ``work`` entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import TaskGroup

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
from airflow_provider_runners.operators.teardown import TeardownRunnerOperator

try:  # Airflow >= 3.1 exports it from the Task SDK
    from airflow.sdk import TriggerRule

    _ALL_DONE: Any = TriggerRule.ALL_DONE
except ImportError:  # pragma: no cover
    _ALL_DONE = "all_done"


#: A teardown is not queued behind other work: a runner bills until it runs (docs/benchmarks.md,
#: issue 18: median 11 s after the last work task at 50 concurrent runs without it). ``upstream``
#: adds the weights of its upstream tasks, so it also outranks the work tasks of later runs.
#: ``teardown_kwargs`` override either.
TEARDOWN_PRIORITY: Mapping[str, Any] = {"priority_weight": 1000, "weight_rule": "upstream"}


@contextmanager
def runner(
    task_id: str,
    *,
    spec: RunnerSpec | Mapping[str, Any],
    conn_id: str = DEFAULT_CONN_ID,
    deferrable: bool | None = None,
    ready_timeout: timedelta | float = timedelta(minutes=30),
    provision_kwargs: Mapping[str, Any] | None = None,
    teardown_kwargs: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Yield the provision task's output (the handle XComArg) inside a ``task_id`` task group.

    ``deferrable``: None follows ``[operators] default_deferrable`` when set, else True (defaults.py)."""
    with TaskGroup(group_id=task_id, tooltip=f"runner {task_id}") as group:
        provision = ProvisionRunnerOperator(
            task_id="provision",
            spec=spec,
            conn_id=conn_id,
            deferrable=deferrable,
            ready_timeout=ready_timeout,
            **dict(provision_kwargs or {}),
        )
        teardown = TeardownRunnerOperator(
            task_id="teardown",
            conn_id=conn_id,
            provision_task_id=provision.task_id,
            **{**TEARDOWN_PRIORITY, **dict(teardown_kwargs or {})},
        )
        with teardown.as_teardown(setups=provision):
            yield provision.output
        if not getattr(provision.get_dag(), "fail_fast", False):
            # all_done_setup_success would skip the teardown (upstream_failed) when the provision
            # failed — exactly when it may have left a runner behind.
            teardown.trigger_rule = dict(teardown_kwargs or {}).get("trigger_rule", _ALL_DONE)
        # the provision's outcome as a leaf that counts for the run's state (module docstring)
        provisioned = EmptyOperator(task_id="provisioned").as_teardown(
            setups=provision, on_failure_fail_dagrun=True
        )
        for task in group.children.values():
            if any(task is own for own in (provision, teardown, provisioned)) or isinstance(task, TaskGroup):
                continue
            add_evidence_callbacks(task, "work", provision_task_id=provision.task_id)
            # as_teardown() wires plain operators only: a mapped task (.partial().expand()) must
            # still finish before the teardown, and needs the runner first.
            if teardown.task_id not in task.downstream_task_ids:
                task >> teardown
            if provision.task_id not in task.upstream_task_ids:
                provision >> task
