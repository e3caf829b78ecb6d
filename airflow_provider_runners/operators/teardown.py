"""Teardown task: :class:`TeardownRunnerOperator`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, get_backend
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import Lineage, sibling_map_index
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.exceptions import RunnerError
from airflow_provider_runners.governance.ending import end_runners

if TYPE_CHECKING:
    from airflow.sdk import Context


class RunnerTeardownError(RunnerError, RuntimeError):
    """A runner could not be torn down (it may still bill; the reaper and its ttl remain)."""


class TeardownRunnerOperator(BaseOperator):
    """End a runner — the *teardown* task. Idempotent: a runner that is already gone is success.

    What it tears down, all of it (deduplicated):

    * ``handle`` if given (a handle, its dict, or a template rendering to one);
    * the handle the provision task ``provision_task_id`` pushed to XCom before it waited;
    * any runner still tagged with that provision task instance's lineage key — this catches
      one created by a try that died before it could push its handle.

    Running it twice, or after the backstop already ended the runner, succeeds. A teardown
    call that fails fails the task (the runner may still bill; a retry, the reaper or its ttl
    end it). In ``runner(...)`` it runs whenever the provision is done — also when the
    provision failed after creating something (trigger rule ``all_done``, docs/architecture.md).

    Before its own entry it also writes the evidence entry of a work task whose last try was
    killed before its callbacks ran, and the ``provision``/``failed`` entry of a provision that
    was failed from outside without one (docs/evidence.md); its success entry ends the chain.
    """

    template_fields = ("handle", "conn_id")
    ui_color = "#f4e0d8"

    def __init__(
        self,
        *,
        conn_id: str = DEFAULT_CONN_ID,
        handle: RunnerHandle | Mapping[str, Any] | str | None = None,
        provision_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if handle is None and provision_task_id is None:
            raise ValueError("TeardownRunnerOperator needs handle= or provision_task_id= (got neither)")
        self.conn_id = conn_id
        self.handle = handle
        self.provision_task_id = provision_task_id
        add_evidence_callbacks(self, "teardown", provision_task_id)

    def _handles(self, context: Context) -> list[RunnerHandle]:
        found: dict[str, RunnerHandle] = {}
        candidates: list[Any] = [self.handle]
        if self.provision_task_id:
            ti = context["ti"]
            candidates.append(
                ti.xcom_pull(
                    task_ids=self.provision_task_id,
                    key=HANDLE_XCOM_KEY,
                    map_indexes=sibling_map_index(context, self.provision_task_id),
                )
            )
        for value in candidates:
            if value in (None, "", "None"):
                continue
            handle = RunnerHandle.from_xcom(value)
            found.setdefault(handle.resource_id, handle)
        return list(found.values())

    def execute(self, context: Context) -> list[dict[str, Any]]:
        backend = get_backend(self.conn_id)
        handles = self._handles(context)
        lineage_key = (
            Lineage.from_context(context, task_id=self.provision_task_id).key
            if self.provision_task_id
            else None
        )
        if self.provision_task_id:
            from airflow_provider_runners.evidence.callbacks import (
                group_task_states,
                record_unrecorded_work,
            )

            # One Execution API call for the states of the provision and the work tasks.
            upstream = set(getattr(context.get("task"), "upstream_task_ids", ()) or ())
            states = group_task_states(context["ti"], sorted(upstream | {self.provision_task_id}))
            try:  # before our own (terminal) entry: a killed work task's try gets its entry
                record_unrecorded_work(
                    context,
                    self.provision_task_id,
                    handles[0] if handles else None,
                    handles[0].lineage_key if handles else str(lineage_key),
                    states,
                )
            except Exception:
                self.log.exception("evidence: could not check the work tasks for unrecorded tries")
            if handles and _failed(context, self.provision_task_id, states):
                # failed from outside (run marked failed while deferred): no callback wrote its entry
                from airflow_provider_runners.evidence.callbacks import record_killed_provision

                ti = context["ti"]
                record_killed_provision(
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    lineage_key=handles[0].lineage_key,
                    provision_task_id=self.provision_task_id,
                    handle=handles[0],
                    noticed_by=ti.task_id,
                    map_index=sibling_map_index(context, self.provision_task_id),
                )
        results = end_runners(backend, handles, lineage_key, "teardown")
        for entry in results:
            self.log.info("teardown %s: %s", entry["resource_id"], entry["message"])
        if not results:
            self.log.info("nothing to tear down: no runner was created for this provision")
        context["ti"].xcom_push(key=FACTS_XCOM_KEY, value={"teardown": results})
        failed = [r for r in results if "error" in r]
        if failed:
            raise RunnerTeardownError(
                f"could not tear down {[r['resource_id'] for r in failed]}: {[r['message'] for r in failed]}"
            )
        return results


def _failed(context: Context, task_id: str, states: dict[str, Any] | None) -> bool:
    """Whether ``task_id`` (this group's instance of it) ended ``failed`` in ``states`` (this
    run's task states by name); False if unknown."""
    if not states:
        return False
    index = sibling_map_index(context, task_id)
    name = task_id if index in (None, -1) else f"{task_id}_{index}"
    state = states.get(name)
    return str(getattr(state, "value", state)) == "failed"
