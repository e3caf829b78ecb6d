"""Seed 001's job array on ``runners_ec2``, end to end: moto server, real boto3, the SSM host stand-in.

The burst DAG (tests/dags/burst_ec2_test_dags.py, one :class:`BurstCycleOperator` per run) reads
seed 001's orchestrator YAML as written (mode, check_interval, spot, key_name, instance_type...).
Cycle 1 sees 30 jobs and launches three ``dedicated_host`` runners; each drains the SQS queue
through the SSM command path (receive -> job -> delete, in tests/fakes/aws.py's host stand-in).
Cycles 2 and 3 see an empty queue: the third host ends, the two ``min_cloud_instances`` stay warm
across both cycles. ``airflow-runners burst --count 1`` then adds a host (manual burst) and the
warm hosts plus the new one drain a second batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_runners.backends.ec2.backend import Ec2Backend
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from tests.fakes.ec2_env import RUNNER_CONN_ID, Ec2Env, start_env, stop_env
from tests.integration.conftest import DAGS, ti_states, xcoms
from tests.unit.test_metrics import Listener, statsd  # noqa: F401 - a UDP StatsD listener fixture

pytestmark = pytest.mark.integration
SEED_001_POLICY = """
job_array_id: test-array
queue_url: {queue_url}
region: us-east-1
burst_policy:
  mode: auto
  queue_depth_threshold: 5
  max_cloud_instances: 3
  min_cloud_instances: 2
  cost_budget: 10.0
  scale_down_delay: 0s
  check_interval: 1m
  instance_type: c5.large
  spot: false
  key_name: my-key
"""


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Env]:
    env = start_env(tmp_path_factory.mktemp("burst-ec2"))
    yield env
    stop_env(env)


@pytest.fixture
def env(aws: Ec2Env, airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Ec2Env]:
    aws.server.reset()
    aws.provision_account()
    catalog = yaml.safe_load(Path(aws.catalog_path).read_text())
    catalog["environments"]["aws"]["profiles"]["dedicated_host"]["Burst"] = {
        "machine_type": "c5.large",
        "vcpus": 2,
        "memory_gib": 4,
    }
    catalog["prices"]["c5.large"] = {"on_demand": 0.085, "spot": 0.026}
    catalog_path = tmp_path / "burst-catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    queue_url = aws.client("sqs").create_queue(QueueName="burst-jobs")["QueueUrl"]
    config = tmp_path / "orchestrator-config.yaml"
    config.write_text(SEED_001_POLICY.format(queue_url=queue_url))
    for key, value in aws.connections().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RUNNERS_BURST_TEST_CONFIG", str(config))
    monkeypatch.setenv("RUNNERS_BURST_TEST_CATALOG", str(catalog_path))
    monkeypatch.setenv("RUNNERS_BURST_TEST_OUT", str(tmp_path / "jobs.log"))
    monkeypatch.setenv("RUNNERS_EC2_TEST_CONN_ID", RUNNER_CONN_ID)
    monkeypatch.setattr(Ec2Backend, "poll_interval", 0.05)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.05)
    SharedStatusPoller._pollers.clear()
    aws.ids.update(
        queue_url=queue_url, config=str(config), catalog=str(catalog_path), out=str(tmp_path / "jobs.log")
    )
    yield aws
    backend = get_backend(RUNNER_CONN_ID)
    for handle in backend.list_managed():
        backend.teardown(handle)
    assert [i["InstanceId"] for i in aws.managed(("pending", "running", "stopping"))] == []
    assert aws.agent.running() == 0


def enqueue(env: Ec2Env, n: int, start: int = 0) -> None:
    sqs = env.client("sqs")
    for i in range(start, start + n, 10):
        entries = [
            {"Id": str(j), "MessageBody": json.dumps({"job": j})} for j in range(i, min(i + 10, start + n))
        ]
        sqs.send_message_batch(QueueUrl=env.ids["queue_url"], Entries=entries)


def wait_drained(env: Ec2Env, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attrs = env.client("sqs").get_queue_attributes(
            QueueUrl=env.ids["queue_url"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if env.agent.running() == 0 and attrs["ApproximateNumberOfMessages"] == "0":
            assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
            return
        time.sleep(0.2)
    raise AssertionError(f"queue not drained: {attrs}, drains running {env.agent.running()}")


def cycle(env: Ec2Env) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "burst_ec2_test_dags.py"))
    assert bag.import_errors == {}
    dr = bag.get_dag("burst_ec2_test_cycle").test()
    assert str(dr.state) == "success", ti_states(dr)
    return {(t, k): v for t, k, v in xcoms("burst_ec2_test_cycle", dr.run_id)}[("cycle", "return_value")]


def running_pool(env: Ec2Env) -> set[str]:
    return {
        i["InstanceId"]
        for i in env.managed(("pending", "running"))
        if {"Key": "burst-pool", "Value": "test-array"} in i.get("Tags", [])
    }


def test_job_array_drains_the_queue_and_keeps_min_warm_across_cycles(
    env: Ec2Env,
    statsd: Listener,  # noqa: F811 - the imported fixture
) -> None:
    enqueue(env, 30)
    first = cycle(env)
    lines = statsd.read()
    assert "airflow.runners.burst.queue_depth,pool=test-array:30.0|g" in lines
    assert "airflow.runners.burst.decision,pool=test-array,reason=scale_up:1|c" in lines
    assert "airflow.runners.burst.launched,pool=test-array:3|c" in lines
    assert lines.count("airflow.runners.provision.outcome,backend=ec2,profile=Burst,outcome=ready:1|c") == 3
    assert (
        len(
            [x for x in lines if x.startswith("airflow.runners.provision.duration,backend=ec2,profile=Burst")]
        )
        == 3
    )
    assert first["queue_depth"] == 30
    assert first["decision"]["reason"] == "scale up"
    assert len(first["launched"]) == 3
    assert sorted(first["drains_sent"]) == sorted(first["launched"])
    wait_drained(env)
    assert sorted(Path(env.ids["out"]).read_text().splitlines()) == sorted(
        json.dumps({"job": j}) for j in range(30)
    )
    hosts = env.managed(("running",))
    assert {i["InstanceType"] for i in hosts} == {"c5.large"}
    tags = {t["Key"]: t["Value"] for t in hosts[0]["Tags"]}
    assert tags["keep-until-expiry"] == "true"
    assert tags["job-array-id"] == "test-array"

    second = cycle(env)  # empty queue: scale down to min_cloud_instances, never below
    assert second["queue_depth"] == 0
    jobs = {iid: s["jobs"] for iid, s in second["drain_states"].items()}
    assert len(jobs) == 3, jobs
    assert sum(jobs.values()) == 30, jobs
    assert all(n > 0 for n in jobs.values()), f"every host took jobs: {jobs}"
    assert second["decision"]["reason"] == "scale down"
    assert len(second["ended"]) == 1
    warm = running_pool(env)
    assert len(warm) == 2

    third = cycle(env)  # still empty: the warm hosts stay
    assert third["decision"]["reason"] == "hold"
    assert third["ended"] == []
    assert third["launched"] == []
    assert running_pool(env) == warm

    # manual burst: seed 001's `spawn burst --count N`
    from airflow_provider_runners.cli import main

    enqueue(env, 12, start=100)
    spec = {
        "runner_class": "dedicated_host",
        "profile": "Burst",
        "image": "hardened-base@2026.11",
        "tags": {"tenant": "research", "pipeline": "job-array", "extra": {"burst-pool": "test-array"}},
        "ttl": "2h",
    }
    argv = ["burst", "--config", env.ids["config"], "--spec", json.dumps(spec), "--count", "1",
            "--job-command", f'echo "$RUNNER_JOB_BODY" >> {env.ids["out"]}', "--conn-id", RUNNER_CONN_ID,
            "--catalog", env.ids["catalog"]]  # fmt: skip
    assert main(argv) == 0
    wait_drained(env)
    assert len(running_pool(env)) == 3
    assert warm < running_pool(env)
    assert len(Path(env.ids["out"]).read_text().splitlines()) == 42
