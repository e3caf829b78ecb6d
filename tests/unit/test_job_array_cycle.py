"""The job-array cycle (``run_cycle``) on the moto server with the SSM host stand-in, without Airflow's DB.

tests/integration/test_job_array_burst.py runs the same cycles as DAG runs (``dag.test()``); this
one calls :func:`run_cycle` and ``airflow-runners burst`` directly: SQS drained by three EC2 hosts
(each takes jobs), an empty queue ends one host and keeps the two ``min_cloud_instances`` hosts
over two cycles, ``mode: manual`` launches nothing on its own, ``--count 1`` adds a host.
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
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.governance.burst_config import BurstConfig
from airflow_provider_runners.operators.job_array import prepare, run_cycle
from tests.fakes.ec2_env import RUNNER_CONN_ID, Ec2Env, start_env, stop_env

POLICY = """
queue_url: {queue_url}
burst_policy:
  mode: {mode}
  queue_depth_threshold: 3
  max_cloud_instances: 3
  min_cloud_instances: 2
  jobs_per_instance: 4
  scale_down_delay: 0s
  check_interval: 30s
  instance_type: c5.large
  spot: false
  key_name: my-key
"""
SPEC = {
    "runner_class": "dedicated_host",
    "profile": "Burst",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "research", "extra": {"burst-pool": "unit-array"}},
    "ttl": "2h",
}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Env]:
    env = start_env(tmp_path_factory.mktemp("job-array"))
    yield env
    stop_env(env)


@pytest.fixture
def env(aws: Ec2Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Ec2Env]:
    aws.server.reset()
    aws.provision_account()
    catalog = yaml.safe_load(Path(aws.catalog_path).read_text())
    catalog["environments"]["aws"]["profiles"]["dedicated_host"]["Burst"] = {
        "machine_type": "c5.large",
        "vcpus": 2,
    }
    catalog["prices"]["c5.large"] = {"on_demand": 0.085}
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    for key, value in aws.connections().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{tmp_path}/registry.sqlite")
    monkeypatch.setattr(Ec2Backend, "poll_interval", 0.05)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.05)
    aws.ids.update(
        queue_url=aws.client("sqs").create_queue(QueueName="unit-jobs")["QueueUrl"],
        catalog=str(tmp_path / "catalog.yaml"),
        out=str(tmp_path / "jobs.log"),
    )
    yield aws
    backend = get_backend(RUNNER_CONN_ID)
    for handle in backend.list_managed():
        backend.teardown(handle)
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
    while env.agent.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    attrs = env.client("sqs").get_queue_attributes(QueueUrl=env.ids["queue_url"], AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def cycle(
    env: Ec2Env, n: int, mode: str = "auto", low_since: float | None = None, now: float = 1000.0
) -> Any:
    config, spec = prepare(
        BurstConfig.load(POLICY.format(queue_url=env.ids["queue_url"], mode=mode)), SPEC, env.ids["catalog"]
    )
    job = f'echo "$RUNNER_JOB_BODY" >> {env.ids["out"]}'
    return run_cycle(
        config=config, spec=spec, conn_id=RUNNER_CONN_ID, job_command=job,
        lineage=Lineage("job_array", f"run-{n}", "cycle"), low_since=low_since,
        catalog_path=env.ids["catalog"], ready_timeout_s=60, now=lambda: now,
    )  # fmt: skip


def pool(env: Ec2Env) -> set[str]:
    return {i["InstanceId"] for i in env.managed(("pending", "running"))}


def test_hosts_drain_the_queue_and_min_stays_warm_across_cycles(env: Ec2Env) -> None:
    assert cycle(env, 0, mode="manual")["launched"] == []  # an empty queue: min is not launched in manual
    enqueue(env, 12)
    manual = cycle(env, 1, mode="manual")
    assert manual["decision"]["reason"] == "manual mode: no launch"
    assert manual["launched"] == []

    first = cycle(env, 2)
    assert first["decision"]["reason"] == "scale up"
    assert len(first["launched"]) == 3
    wait_drained(env)
    assert sorted(Path(env.ids["out"]).read_text().splitlines()) == sorted(
        json.dumps({"job": j}) for j in range(12)
    )

    second = cycle(env, 3, now=2000.0)
    jobs = {iid: state["jobs"] for iid, state in second["drain_states"].items()}
    assert sum(jobs.values()) == 12, jobs
    assert all(n > 0 for n in jobs.values()), jobs
    assert second["decision"]["reason"] == "scale down"
    assert len(second["ended"]) == 1
    warm = pool(env)
    assert len(warm) == 2

    third = cycle(env, 4, low_since=second["decision"]["low_since"], now=9000.0)
    assert third["decision"]["reason"] == "hold"
    assert third["ended"] == []
    assert pool(env) == warm

    from airflow_provider_runners.cli import main

    enqueue(env, 6, start=100)
    config = Path(env.ids["catalog"]).with_name("orchestrator.yaml")
    config.write_text(POLICY.format(queue_url=env.ids["queue_url"], mode="manual"))
    argv = ["burst", "--config", str(config), "--spec", json.dumps(SPEC), "--count", "1",
            "--job-command", f'echo "$RUNNER_JOB_BODY" >> {env.ids["out"]}', "--conn-id", RUNNER_CONN_ID,
            "--catalog", env.ids["catalog"]]  # fmt: skip
    assert main(argv) == 0
    wait_drained(env)
    assert len(pool(env)) == 3
    assert warm < pool(env)
    assert len(Path(env.ids["out"]).read_text().splitlines()) == 18


def test_manual_count_is_capped_by_max_and_bad_count_is_refused(env: Ec2Env, capsys: Any) -> None:
    from airflow_provider_runners.cli import main

    config = Path(env.ids["catalog"]).with_name("orchestrator.yaml")
    config.write_text(POLICY.format(queue_url=env.ids["queue_url"], mode="manual"))
    base = ["burst", "--config", str(config), "--spec", json.dumps(SPEC), "--job-command", "true",
            "--conn-id", RUNNER_CONN_ID, "--catalog", env.ids["catalog"]]  # fmt: skip
    assert main([*base, "--count", "0"]) == 1
    assert "--count: 0; must be >= 1" in capsys.readouterr().err
    assert pool(env) == set()
    assert main([*base, "--count", "7"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index('{\n  "pool"') :])  # the summary, after any log lines
    assert summary["decision"]["reason"] == "manual burst"
    assert len(summary["launched"]) == 3  # max_cloud_instances
    assert summary["key_name"] == "not attached: hosts are reached through SSM"
