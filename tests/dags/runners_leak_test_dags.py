"""DAGs for the "nothing leaks, evidence once" integration tests (tests/integration/test_no_leaks.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.handles import RunnerHandle
from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
from airflow_provider_runners.operators.teardown import TeardownRunnerOperator
from airflow_provider_runners.operators.work import DaskJobOperator

SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}, "ttl": "10m"}
START = datetime(2026, 1, 1)


def count_rows(client: Any, rows: int) -> dict[str, Any]:
    import dask.array as da

    return {"sum": int(client.compute(da.ones(rows, chunks=rows // 4).sum(), sync=True))}


def fail_after_ready(context: Any, result: Any = None) -> None:
    """post_execute: the provision fails after its runner exists (and its handle is in XCom)."""
    raise RuntimeError("simulated failure after the runner was created")


def die_silently(context: Any, result: Any = None) -> None:
    """As if the process was killed (SIGKILL): the task fails and none of its callbacks run."""
    context["task"].on_failure_callback = []
    context["task"].on_retry_callback = []
    raise RuntimeError("simulated kill: no callback runs")


with DAG("runners_test_provision_fails_after_create", schedule=None, start_date=START, catchup=False):
    with runner("cluster", spec=SPEC, provision_kwargs={"post_execute": fail_after_ready, "retries": 0}) as h:
        DaskJobOperator(task_id="job", handle=h, python_callable=count_rows, op_kwargs={"rows": 1000})

with DAG("runners_test_provision_dies_after_create", schedule=None, start_date=START, catchup=False):
    with runner("cluster", spec=SPEC, provision_kwargs={"post_execute": die_silently, "retries": 0}) as h:
        DaskJobOperator(task_id="job", handle=h, python_callable=count_rows, op_kwargs={"rows": 1000})


def killed_work(**context: Any) -> None:
    """A work task killed mid-run (SIGKILL, out of memory): it fails and no callback runs."""
    die_silently(context)


with DAG("runners_test_work_killed", schedule=None, start_date=START, catchup=False):
    with runner("cluster", spec=SPEC) as h:
        PythonOperator(task_id="killed", python_callable=killed_work)


class EndedWhileResumingProvision(ProvisionRunnerOperator):
    """The runner is torn down between the trigger's "ready" and the task's resume (a kill, the
    failure callback of a try Airflow failed, the reaper)."""

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if event and event.get("handle"):
            handle = RunnerHandle.from_xcom(event["handle"])
            get_backend(self.conn_id).teardown(handle)
        return super().execute_complete(context, event)


with DAG("runners_test_resumed_after_teardown", schedule=None, start_date=START, catchup=False):
    provision = EndedWhileResumingProvision(
        task_id="provision", spec=SPEC, retries=0, wait_before_defer=0, min_deferral=0
    )
    teardown = TeardownRunnerOperator(
        task_id="teardown", provision_task_id="provision", trigger_rule="all_done"
    )
    with teardown.as_teardown(setups=provision):
        DaskJobOperator(
            task_id="job", handle=provision.output, python_callable=count_rows, op_kwargs={"rows": 1000}
        )
    teardown.trigger_rule = "all_done"  # as runner() wires it

# Defers at once (no wait in the task): the trigger's minimum dwell must keep the resume behind
# the scheduler's processing of the deferring process's exit (tests/e2e/test_deployment.py).
with DAG("runners_test_deferred", schedule=None, start_date=START, catchup=False):
    with runner("cluster", spec=SPEC, provision_kwargs={"wait_before_defer": 0}) as h:
        DaskJobOperator(task_id="job", handle=h, python_callable=count_rows, op_kwargs={"rows": 1000})
