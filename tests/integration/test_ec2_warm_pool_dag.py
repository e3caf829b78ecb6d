"""``dags/ec2_warm_pool.py`` through real dag.test() runs against the moto server: a report-only
run changes nothing, a run pre-warms the configured pool to ``min_size`` (stopped, idle hosts),
and the next run has nothing to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.ec2.backend import Ec2Backend
from tests.conftest import REPO
from tests.fakes.ec2_env import RUNNER_CONN_ID, Ec2Env, start_env, stop_env
from tests.integration.conftest import ti_states, xcoms

pytestmark = pytest.mark.integration
WARM = {
    "erp": {
        "profile": "Large",
        "image": "hardened-base@2026.11",
        "min_size": 2,
        "max_size": 3,
        "idle_ttl": "1h",
    }
}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Env]:
    env = start_env(tmp_path_factory.mktemp("ec2-pool-dag"))
    yield env
    stop_env(env)


@pytest.fixture
def env(aws: Ec2Env, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ec2Env]:
    aws.server.reset()
    aws.provision_account()
    for key, value in aws.connections(warm_pools=WARM).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RUNNERS_EC2_POOL_CONN_ID", RUNNER_CONN_ID)
    monkeypatch.setenv("RUNNERS_EC2_POOL_CATALOG", aws.catalog_path)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.05)
    yield aws
    ec2 = aws.client("ec2")
    left = [i["InstanceId"] for i in aws.managed()]
    if left:
        ec2.terminate_instances(InstanceIds=left)


def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "ec2_warm_pool.py"))
    assert bag.import_errors == {}
    return bag.get_dag("ec2_warm_pool")


def summary(run: Any) -> dict[str, Any]:
    return {(t, k): v for t, k, v in xcoms("ec2_warm_pool", run.run_id)}[("maintain", "return_value")]


def test_the_warm_pool_dag_prewarms_to_min_size_and_then_has_nothing_to_do(env: Ec2Env) -> None:
    dry = dag().test(run_conf={"report_only": True})
    assert str(dry.state) == "success", ti_states(dry)
    assert [a["action"] for a in summary(dry)["actions"]] == ["launch", "launch"]
    assert env.managed() == []

    run = dag().test()
    assert str(run.state) == "success", ti_states(run)
    launched = summary(run)["launched"]
    assert len(launched) == 2
    hosts = {i["InstanceId"]: i for i in env.managed()}
    assert set(hosts) == set(launched)
    assert {h["State"]["Name"] for h in hosts.values()} == {"stopped"}
    (pool,) = summary(run)["pools"]
    assert (pool["pool"], pool["idle"], pool["in_use"]) == ("erp", 2, 0)

    again = dag().test()
    assert str(again.state) == "success", ti_states(again)
    assert summary(again)["actions"] == []
