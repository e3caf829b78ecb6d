"""Seed 001's orchestrator config is read as seed 001 writes it (docs/cost.md, "Job-array burst on EC2")."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_runners.core.catalog import DEFAULT_CATALOG
from airflow_provider_runners.exceptions import RunnerSpecError
from airflow_provider_runners.governance.burst_config import BurstConfig
from airflow_provider_runners.operators.job_array import prepare

#: The "Orchestrator Configuration" block of seed 001, verbatim.
SEED_001 = """
job_array_id: my-pipeline
queue_url: https://sqs.us-east-1.amazonaws.com/123456789012/my-queue
region: us-east-1
burst_policy:
  mode: auto
  queue_depth_threshold: 100
  max_cloud_instances: 50
  min_cloud_instances: 0
  cost_budget: 10.0
  scale_down_delay: 5m
  check_interval: 1m
  instance_type: c5.4xlarge
  ami: ami-0abcdef1234567890  # Your spawn AMI
  spot: true                  # Use Spot instances for cost savings
  key_name: my-key
  subnet_id: subnet-abc123
  security_groups:
    - sg-abc123
"""
SPEC = {
    "runner_class": "dedicated_host",
    "profile": "Burst",
    "environment": "dev",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "research", "extra": {"burst-pool": "p"}},
}


def test_seed_001_orchestrator_config_is_accepted_as_written() -> None:
    config = BurstConfig.load(SEED_001)
    assert config.mode == "auto"
    assert config.check_interval == 60.0
    assert config.spot is True
    assert config.policy.scale_down_delay == 300.0
    assert config.policy.max_cloud_instances == 50
    assert config.policy.cost_budget == 10.0
    assert (config.instance_type, config.key_name, config.subnet_id) == (
        "c5.4xlarge",
        "my-key",
        "subnet-abc123",
    )
    assert config.security_groups == ("sg-abc123",)
    assert (config.job_array_id, config.region) == ("my-pipeline", "us-east-1")


def test_a_bare_burst_policy_and_a_file_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator-config.yaml"
    path.write_text(SEED_001)
    assert BurstConfig.load(str(path)).policy.max_cloud_instances == 50
    manual = BurstConfig.load({"mode": "manual", "queue_depth_threshold": 50, "check_interval": "30s"})
    assert (manual.mode, manual.check_interval, manual.policy.queue_depth_threshold) == ("manual", 30.0, 50)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "sometimes"}, r"mode: 'sometimes'; allowed: \['auto', 'manual'\]"),
        ({"check_interval": "soon"}, r"check_interval: 'soon'"),
        ({"spot": "yes"}, r"spot: 'yes'; allowed: true, false"),
        (
            {"max_instances": 3},
            r"unknown field\(s\) \['max_instances'\]; allowed: \[.*'check_interval'.*'mode'",
        ),
        ({"burst_policy": {}, "queue": "x"}, r"unknown field\(s\) \['queue'\]"),
        (
            {"min_cloud_instances": 5, "max_cloud_instances": 2},
            r"min_cloud_instances: 5 is above max_cloud_instances",
        ),
    ],
)
def test_bad_config_is_a_clear_error(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BurstConfig.load(values)


def test_launch_fields_are_checked_against_the_catalog() -> None:
    config, spec = prepare({"instance_type": "c5.4xlarge", "spot": True}, SPEC, str(DEFAULT_CATALOG))
    assert spec.spot is True  # seed 001's spot becomes the spec's
    with pytest.raises(
        ValueError, match=r"instance_type: 'c5.large', but the spec's catalog profile launches 'c5.4xlarge'"
    ):
        prepare({"instance_type": "c5.large"}, SPEC, str(DEFAULT_CATALOG))
    with pytest.raises(
        ValueError,
        match=r"ami: 'ami-0abcdef1234567890' is not an AMI the catalog approves.*ami-0c2a4e6f8b0d1e3f5",
    ):
        prepare(SEED_001, SPEC, str(DEFAULT_CATALOG))
    with pytest.raises(RunnerSpecError, match="runs on hosts: 'dedicated_host'"):
        prepare({}, {**SPEC, "runner_class": "dask_cluster", "profile": "standard"}, str(DEFAULT_CATALOG))
    assert config.check_launch("c5.4xlarge", subnet_id="subnet-1", security_group_ids=("sg-1",)) is None
    with pytest.raises(
        ValueError, match=r"subnet_id: 'subnet-abc123', but the network profile resolves to 'subnet-1'"
    ):
        BurstConfig.load(SEED_001).check_launch("c5.4xlarge", subnet_id="subnet-1")


def test_burst_plan_operator_takes_seed_001_keys() -> None:
    from airflow_provider_runners.operators.burst import BurstPlanOperator

    op = BurstPlanOperator(
        task_id="plan",
        policy={"mode": "manual", "check_interval": "1m", "spot": True, "queue_depth_threshold": 10},
        spec={"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "t"}},
        queue_depth=lambda: 0,
    )
    assert op.mode == "manual"
    assert op.spec.spot is True


def test_the_drain_script_receives_runs_deletes_and_reports() -> None:
    from airflow_provider_runners.backends.ec2.job_array import drain_script

    script = drain_script("https://sqs/q'x", "eu-west-1", "python3 job.py")
    assert "aws sqs receive-message --queue-url 'https://sqs/q'\"'\"'x' --region eu-west-1" in script
    assert "JOB_COMMAND='python3 job.py'" in script
    assert "aws sqs delete-message" in script
    assert script.rstrip().endswith('echo "drained jobs=$jobs failed=$failed"')
