"""How ``runner(...)`` wires provision and teardown, and the provision's retry defaults."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_provider_runners import runner
from airflow_provider_runners.evidence.callbacks import EvidenceCallback, WorkStarted
from airflow_provider_runners.operators.provision import PROVISION_RETRY_DEFAULTS, ProvisionRunnerOperator

SPEC = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}}
START = datetime(2026, 1, 1)


def _dag(**kwargs: Any) -> DAG:
    with (
        DAG("wiring", schedule=None, start_date=START, **kwargs) as dag,
        runner("cluster", spec=SPEC) as handle,
    ):
        EmptyOperator(task_id="job")
        assert handle is not None
    return dag


def test_teardown_runs_when_the_provision_failed() -> None:
    dag = _dag()
    teardown = dag.get_task("cluster.teardown")
    assert teardown.is_teardown
    assert dag.get_task("cluster.provision").is_setup
    assert str(teardown.trigger_rule) in ("all_done", "TriggerRule.ALL_DONE")
    dag.validate()  # Airflow's setup/teardown validation accepts it


def test_clearing_a_work_task_still_clears_provision_and_teardown() -> None:
    subset = _dag().partial_subset(task_ids=["cluster.job"], include_upstream=False, include_downstream=False)
    assert set(subset.task_dict) == {
        "cluster.provision",
        "cluster.job",
        "cluster.teardown",
        "cluster.provisioned",
    }


@pytest.mark.parametrize("fail_fast", [False, True])
def test_the_provisioned_leaf_makes_a_failed_provision_fail_the_run(fail_fast: bool) -> None:
    """Airflow judges a run by its leaves, ignoring teardowns unless on_failure_fail_dagrun: a
    provision failed from outside (run marked failed while deferred) must not end 'success'."""
    dag = _dag(fail_fast=fail_fast)
    provisioned = dag.get_task("cluster.provisioned")
    assert provisioned.is_teardown
    assert provisioned.on_failure_fail_dagrun
    assert provisioned.upstream_task_ids == {"cluster.provision"}
    assert not provisioned.downstream_task_ids
    # upstream_failed when the provision failed (no setup succeeded)
    assert str(provisioned.trigger_rule) in ("all_done_setup_success", "TriggerRule.ALL_DONE_SETUP_SUCCESS")
    # an empty task without callbacks: the scheduler marks it done without a worker slot
    assert not provisioned.on_success_callback
    assert not provisioned.on_execute_callback
    dag.validate()


def test_a_fail_fast_dag_keeps_airflows_teardown_rule() -> None:
    teardown = _dag(fail_fast=True).get_task("cluster.teardown")
    assert str(teardown.trigger_rule) in ("all_done_setup_success", "TriggerRule.ALL_DONE_SETUP_SUCCESS")


def test_work_tasks_note_their_try_and_record_evidence() -> None:
    job = _dag().get_task("cluster.job")
    assert any(isinstance(c, WorkStarted) for c in job.on_execute_callback)
    assert any(isinstance(c, EvidenceCallback) for c in job.on_failure_callback)


def test_provision_retries_with_backoff_by_default() -> None:
    op = ProvisionRunnerOperator(task_id="p", spec=SPEC)
    assert op.retries == 3
    assert op.retry_delay == timedelta(seconds=10)
    assert op.max_retry_delay == timedelta(minutes=5)
    # doubling on every Airflow we support: a multiplier (3.2+) or True (3.1)
    assert op.retry_exponential_backoff in (2.0, True)
    assert PROVISION_RETRY_DEFAULTS["retries"] == 3


def test_explicit_retry_settings_win_over_the_defaults() -> None:
    op = ProvisionRunnerOperator(task_id="p", spec=SPEC, retries=0, retry_delay=timedelta(seconds=1))
    assert op.retries == 0
    assert op.retry_delay == timedelta(seconds=1)
    with DAG("defaults", schedule=None, start_date=START, default_args={"retries": 1}):
        from_dag = ProvisionRunnerOperator(task_id="p", spec=SPEC)
    assert from_dag.retries == 1


@pytest.mark.parametrize("value", [0, 0.0, timedelta(0)])
def test_wait_before_defer_can_be_turned_off(value: Any) -> None:
    op = ProvisionRunnerOperator(task_id="p", spec=SPEC, wait_before_defer=value, min_deferral=0)
    assert op.wait_before_defer == timedelta(0)
    assert op.min_deferral == 0.0


def test_teardown_is_not_queued_behind_other_work() -> None:
    dag = _dag()
    teardown = dag.get_task("cluster.teardown")
    job = dag.get_task("cluster.job")
    assert teardown.priority_weight == 1000
    assert str(teardown.weight_rule).lower().endswith("upstream")
    assert job.priority_weight == 1
    # what the scheduler reads: the serialized DAG keeps both
    from airflow.serialization.serialized_objects import DagSerialization

    stored = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("cluster.teardown")
    assert stored.priority_weight == 1000
    assert type(stored.weight_rule).__name__ == "_UpstreamPriorityWeightStrategy"


def test_teardown_priority_can_be_overridden() -> None:
    with (
        DAG("prio", schedule=None, start_date=START) as dag,
        runner("cluster", spec=SPEC, teardown_kwargs={"priority_weight": 5}),
    ):
        EmptyOperator(task_id="job")
    assert dag.get_task("cluster.teardown").priority_weight == 5


def test_taskflow_runner_teardown_has_the_priority() -> None:
    from airflow.sdk import task

    with DAG("prio_taskflow", schedule=None, start_date=START) as dag:

        @task.runner(spec=SPEC)
        def job() -> int:
            return 1

        job()
    teardown = dag.get_task("job.teardown")
    assert teardown.priority_weight == 1000
    assert str(teardown.weight_rule).lower().endswith("upstream")
