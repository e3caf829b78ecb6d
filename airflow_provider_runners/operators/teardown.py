"""Teardown task: :class:`TeardownRunnerOperator`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, get_backend
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import Lineage, sibling_map_index
from airflow_provider_runners.evidence.callbacks import add_evidence_callbacks
from airflow_provider_runners.exceptions import RunnerNotFoundError
from airflow_provider_runners.governance import budget

if TYPE_CHECKING:
    from airflow.sdk import Context


class TeardownRunnerOperator(BaseOperator):
    """End a runner — the *teardown* task. Idempotent: a runner that is already gone is success.

    What it tears down, all of it (deduplicated):

    * ``handle`` if given (a handle, its dict, or a template rendering to one);
    * the handle the provision task ``provision_task_id`` pushed to XCom before it waited;
    * any runner still tagged with that provision task instance's lineage key — this catches
      one created by a try that died before it could push its handle.

    Running it twice, or after the backstop already ended the runner, succeeds.
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

    def _handles(self, context: Context, backend: Any) -> dict[str, RunnerHandle]:
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
        if self.provision_task_id:
            key = Lineage.from_context(context, task_id=self.provision_task_id).key
            orphan = backend.find(key)
            if orphan is not None and orphan.resource_id not in found:
                self.log.warning(
                    "found runner %s by its lineage tag only: tearing it down too", orphan.resource_id
                )
                found[orphan.resource_id] = orphan
        return found

    def execute(self, context: Context) -> list[dict[str, Any]]:
        backend = get_backend(self.conn_id)
        handles = self._handles(context, backend)
        results = []
        for handle in handles.values():
            try:
                result = backend.teardown(handle)
                entry = {
                    "resource_id": handle.resource_id,
                    "existed": result.existed,
                    "message": result.message,
                }
                entry.update(result.details)
            except RunnerNotFoundError as exc:
                entry = {
                    "resource_id": handle.resource_id,
                    "existed": False,
                    "message": f"already gone: {exc}",
                }
            budget.release(handle, "teardown")  # registry: ended (gone either way)
            self.log.info("teardown %s: %s", handle.resource_id, entry["message"])
            results.append(entry)
        if not results:
            self.log.info("nothing to tear down: no runner was created for this provision")
        context["ti"].xcom_push(key=FACTS_XCOM_KEY, value={"teardown": results})
        return results
