"""The DAG of ``benchmarks/triggerer_real.py`` (copied into the deployment's DAGs folder).

``triggerer_real``: one mapped task, ``wait``, whose task instances the benchmark puts in the
DEFERRED state itself (a Trigger row per task instance, as the Execution API does when a task
defers), so that 1000 deferred waits cost no 1000 task processes. The DAG is paused at
creation: the scheduler leaves its runs alone, and a task instance whose trigger fired stays
SCHEDULED (the benchmark measures until the task instance leaves DEFERRED).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, BaseOperator

#: The largest N the benchmark can defer in one run (map indexes 0 … MAX_WAITS − 1).
MAX_WAITS = 2000


class ProvisionWait(BaseOperator):
    """Stands for a deferrable provision task: ``execute_complete`` is the method a trigger's
    event resumes (the benchmark's DAG is paused, so no task process runs it)."""

    def __init__(self, *, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def execute(self, context: Any) -> None:
        raise NotImplementedError("deferred by benchmarks/triggerer_real.py, never run")

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        return event


with DAG(
    "triggerer_real",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    is_paused_upon_creation=True,
    max_active_tasks=MAX_WAITS,
):
    ProvisionWait.partial(task_id="wait").expand(index=list(range(MAX_WAITS)))
