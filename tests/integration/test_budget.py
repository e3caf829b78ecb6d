"""The budget guard through real dag.test() runs: real local_dask runners, the DynamoDB registry on
a moto server. Over budget, nothing is created; when the other runners end, provisions fit again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_runners.governance.runner_index import RunnerRecord
from airflow_provider_runners.governance.runner_index.dynamodb import DynamoDBRegistry
from tests.integration.conftest import chain_for, live_daemons, run_dag, state_files, ti_states
from tests.moto_aws import AWS_CONN_ID, moto_server

pytestmark = pytest.mark.integration
TABLE = "runners-budget-test"
OTHER = "rl" + "e" * 26  # an EC2 runner of the same tenant, known only to the registry


@pytest.fixture
def dynamo_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBRegistry]:
    with moto_server():
        monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"dynamodb://{TABLE}")
        monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY_CONN_ID", AWS_CONN_ID)
        registry = DynamoDBRegistry(TABLE, aws_conn_id=AWS_CONN_ID)
        registry.ensure_table()
        yield registry


def other_runner(expires_in: float = 3600.0) -> RunnerRecord:
    now = time.time()
    return RunnerRecord(
        key=OTHER,
        backend="ec2",
        conn_id="runners_ec2",
        status="running",
        resource_id="i-0budget",
        tenant="budget-qa",
        pipeline="extract",
        usd_per_hour=0.68,
        registered_at=now,
        last_heartbeat=now,
        expires_at=now + expires_in,
    )


def test_over_budget_creates_nothing_then_fits_when_the_other_runner_ends(
    dagbag: Any, dynamo_registry: DynamoDBRegistry
) -> None:
    dynamo_registry.put(other_runner())
    before = state_files()

    dr = run_dag(dagbag, "runners_test_budget")
    states = ti_states(dr)
    assert states["cluster.provision"] == "failed"
    assert states["cluster.job"] == "upstream_failed"
    assert state_files() == before, "a refused provision must not create anything"
    assert not live_daemons()
    # The reservation was withdrawn: only the other runner is in the registry.
    assert [r.key for r in dynamo_registry.records()] == [OTHER]

    report = chain_for("runners_test_budget", dr.run_id)
    provision = report.entries[0]
    assert (provision["event"], provision["outcome"]) == ("provision", "failed")
    assert provision["error"]["type"] == "BudgetExceededError"
    message = provision["error"]["message"]
    assert "over budget, nothing was created" in message
    assert "tenant 'budget-qa' budget $0.1000/h" in message
    assert "i-0budget $0.6800/h" in message
    assert "this runner $0.0850/h = $0.7650/h > $0.1000/h" in message
    assert "environments.local.budgets" in message
    (check,) = provision["facts"]["budget"]
    assert (check["scope"], check["name"], check["fits"]) == ("tenant", "budget-qa", False)
    assert check["live_usd_per_hour"] == pytest.approx(0.68)
    assert provision["cost"]["basis"] == "no runner"
    assert provision["cost"]["usd"] == 0.0

    # The EC2 runner ends: the same DAG now fits and runs, and the registry follows the runner.
    assert dynamo_registry.end(OTHER, "teardown")
    dr = run_dag(dagbag, "runners_test_budget")
    assert str(dr.state) == "success", ti_states(dr)
    mine = [r for r in dynamo_registry.records() if r.key != OTHER]
    assert len(mine) == 1
    record = mine[0]
    assert (record.status, record.ended_reason) == ("ended", "teardown")
    assert record.backend == "local_dask"
    assert (record.dag_id, record.run_id, record.task_id) == (
        "runners_test_budget",
        dr.run_id,
        "cluster.provision",
    )
    assert record.usd_per_hour == pytest.approx(0.085)
    assert record.resource_id.startswith("ld-")


def test_budget_wait_defers_until_the_other_runner_expires(
    dagbag: Any, dynamo_registry: DynamoDBRegistry
) -> None:
    dynamo_registry.put(other_runner(expires_in=4.0))
    started = time.monotonic()
    dr = run_dag(dagbag, "runners_test_budget_wait")
    waited = time.monotonic() - started
    assert str(dr.state) == "success", ti_states(dr)
    assert waited >= 3.0, "the provision must have waited for the other runner's expiry"
    report = chain_for("runners_test_budget_wait", dr.run_id)
    assert [e["event"] for e in report.entries] == ["provision", "work", "teardown"]
    assert report.entries[0]["outcome"] == "success"


def test_second_runner_of_a_tenant_does_not_fit_while_the_first_lives(
    dagbag: Any, dynamo_registry: DynamoDBRegistry
) -> None:
    """Budget counted from the backend's own list (a live local_dask runner), not the registry."""
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage
    from airflow_provider_runners.core.specs import RunnerSpec
    from airflow_provider_runners.exceptions import BudgetExceededError
    from airflow_provider_runners.governance.budget import admit
    from airflow_provider_runners.governance.runner_index import NullRegistry
    from tests.dags.runners_cost_test_dags import BUDGET_SPEC, CATALOG

    backend = get_backend()
    resolved = resolve_spec(RunnerSpec.parse(BUDGET_SPEC), backend.name, CATALOG)
    first = Lineage("budget_direct", "r1", "provision")
    labels = {"managed-by": MANAGED_BY, "runner-lineage": first.key, "tenant": "budget-qa", "pipeline": "p"}
    request = ProvisionRequest.build(resolved, first, first.attempt_token(1), "runners_default", labels)
    admit(backend, request, catalog_path=CATALOG, registry=NullRegistry())
    handle = backend.create(request)
    try:
        second = Lineage("budget_direct", "r1", "provision", map_index=1)
        request2 = ProvisionRequest.build(
            resolved,
            second,
            second.attempt_token(1),
            "runners_default",
            {**labels, "runner-lineage": second.key},
        )
        before = state_files()
        with pytest.raises(BudgetExceededError, match=rf"{handle.resource_id} \$0.0850/h"):
            admit(backend, request2, catalog_path=CATALOG, registry=NullRegistry())
        assert state_files() == before
        # The first runner's own retry is not counted against itself (adopt, not a second runner).
        admit(backend, request, catalog_path=CATALOG, registry=NullRegistry())
    finally:
        backend.teardown(handle)
