"""Hybrid burst through real dag.test() runs: the example DAG bursts over a local queue on real
local_dask runners; the planner reads SQS depth through the Amazon provider (moto server) and
scales down by marking runners draining in the registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_runners.core.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.governance.runner_index import open_registry
from tests.integration.conftest import live_daemons, run_dag, ti_states, wait_for, xcoms
from tests.moto_aws import moto_server

pytestmark = pytest.mark.integration


def values(dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
    return {(t, k): v for t, k, v in xcoms(dag_id, run_id)}


def test_hybrid_burst_launches_cloud_runners_for_the_backlog_and_ends_them(dagbag: Any) -> None:
    from burst_jobs import LocalQueue

    dr = run_dag(dagbag, "hybrid_burst", conf={"jobs": 60})
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    plan = values("hybrid_burst", dr.run_id)[("plan", "burst_decision")]
    # 60 jobs / 10 per runner = 6, minus the local runner = 5, capped by max_cloud_instances = 3.
    assert plan["state"]["queue_depth"] == 60
    assert plan["decision"]["launch"] == 3
    assert plan["decision"]["limits"] == ["max_cloud_instances"]

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == "hybrid_burst", TaskInstance.run_id == dr.run_id
            )
        ).all()
    mapped = {(t, m): str(s) for t, m, s in rows if t.startswith("cloud.")}
    for index in range(3):
        for task_id in ("cloud.runner.provision", "cloud.runner.drain", "cloud.runner.teardown"):
            assert mapped[(task_id, index)] == "success", mapped

    # Every job ran exactly once, across the local and the cloud runners.
    xcom = xcoms("hybrid_burst", dr.run_id)
    drained = [v for t, k, v in xcom if t.endswith("drain") and k == "return_value"]
    assert len(drained) == 4
    assert sum(d["jobs"] for d in drained) == 60
    assert LocalQueue("hybrid-burst").depth() == 0

    # Four runners, four distinct lineages, each with a verified provision/work/teardown chain.
    handles = {
        RunnerHandle.from_xcom(v).resource_id: RunnerHandle.from_xcom(v)
        for t, k, v in xcom
        if k == HANDLE_XCOM_KEY
    }
    assert len(handles) == 4
    assert len({h.lineage_key for h in handles.values()}) == 4
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    reports = [verify_chain(c) for c in iter_chains("hybrid_burst", dr.run_id)]
    assert len(reports) == 4
    for report in reports:
        assert report.ok, report.problems
        assert [e["event"] for e in report.entries] == ["provision", "work", "teardown"]
    cloud = [h for h in handles.values() if h.tags.get("burst-pool") == "hybrid-burst-cloud"]
    assert len(cloud) == 3
    registry = open_registry()
    for h in handles.values():
        assert registry.get(h.lineage_key).status == "ended"
    assert wait_for(lambda: not live_daemons(), timeout=15)

    # Next cycle, empty queue: nothing to launch, the cloud group expands to nothing.
    dr = run_dag(dagbag, "hybrid_burst", conf={"jobs": 0})
    assert str(dr.state) == "success", ti_states(dr)
    plan = values("hybrid_burst", dr.run_id)[("plan", "burst_decision")]
    assert plan["decision"]["launch"] == 0
    assert plan["state"]["cloud_count"] == 0


@pytest.fixture
def sqs_queue() -> Iterator[str]:
    with moto_server():
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        client = SqsHook(aws_conn_id="aws_moto").get_conn()
        url = client.create_queue(QueueName="burst-jobs")["QueueUrl"]
        for start in range(0, 250, 10):
            client.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": f"job {i}"} for i in range(start, start + 10)],
            )
        yield url


def test_planner_reads_sqs_depth_and_caps_the_burst_by_budget(dagbag: Any, sqs_queue: str) -> None:
    dr = run_dag(dagbag, "runners_test_burst_sqs", conf={"queue_url": sqs_queue})
    assert str(dr.state) == "success", ti_states(dr)
    out = values("runners_test_burst_sqs", dr.run_id)
    summary = out[("plan", "burst_decision")]
    assert summary["state"]["queue_depth"] == 250
    # 250 jobs -> 25 runners - 2 local = 23 wanted; $2/h at $0.68/h leaves room for 2.
    assert summary["decision"]["launch"] == 2
    assert summary["decision"]["limits"] == ["cost_budget"]
    launches = out[("plan", "return_value")]
    assert [launch["slot"] for launch in launches] == [0, 1]
    assert launches[0]["spec"]["tags"]["extra"] == {"burst-pool": "test-pool"}
    assert not live_daemons()  # planning creates nothing


def test_scale_down_marks_the_oldest_pool_runners_draining(dagbag: Any) -> None:
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage
    from airflow_provider_runners.core.specs import RunnerSpec
    from airflow_provider_runners.governance.budget import admit
    from airflow_provider_runners.operators.burst import should_drain
    from tests.dags.runners_cost_test_dags import BURST_SPEC

    backend = get_backend()
    resolved = resolve_spec(RunnerSpec.parse(BURST_SPEC), backend.name)
    handles = []
    try:
        for i in range(2):
            lineage = Lineage("burst_direct", "r1", "provision", map_index=i)
            labels = {
                "managed-by": MANAGED_BY,
                "runner-lineage": lineage.key,
                "tenant": "qa",
                "pipeline": "burst",
                "burst-pool": "test-pool",
            }
            request = ProvisionRequest.build(
                resolved, lineage, lineage.attempt_token(1), "runners_default", labels
            )
            admission = admit(backend, request)
            handle = backend.create(request)
            admission.confirm(handle)
            handles.append(handle)
        assert not any(should_drain(h) for h in handles)
        dr = run_dag(dagbag, "runners_test_burst_drain")
        assert str(dr.state) == "success", ti_states(dr)
        summary = values("runners_test_burst_drain", dr.run_id)[("plan", "burst_decision")]
        assert summary["state"]["cloud_count"] == 2
        assert (summary["decision"]["terminate"], summary["decision"]["reason"]) == (2, "scale down")
        assert sorted(summary["draining"]) == sorted(h.resource_id for h in handles)
        assert all(should_drain(h) for h in handles)
        # Draining runners no longer count: the next cycle has nothing left to end.
        dr = run_dag(dagbag, "runners_test_burst_drain")
        summary = values("runners_test_burst_drain", dr.run_id)[("plan", "burst_decision")]
        assert (summary["state"]["cloud_count"], summary["decision"]["terminate"]) == (0, 0)
    finally:
        for handle in handles:
            backend.teardown(handle)
