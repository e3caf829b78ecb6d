"""``idle_timeout`` on ``ec2`` (docs/ec2.md, "Idle timeout"), on moto in server mode with real boto3
and the SSM host stand-in (tests/fakes/aws.py): the launch carries the ``idle-timeout`` tag, the
idle watcher in the user-data and ``InstanceInitiatedShutdownBehavior=terminate``; each SSM
command marks the host active; the watcher, reading this instance's tags through a stand-in
IMDS, shuts the host down once it was idle that long — and not before.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from airflow_provider_runners.backends.ec2.backend import Ec2Backend
from airflow_provider_runners.backends.ec2.idle import IDLE_WATCHER, PER_BOOT_PATH, WATCHER_PATH
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core.backend import CommandRequest, ProvisionRequest, RunnerState
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from tests.fakes.ec2_env import RUNNER_CONN_ID, Ec2Env, start_env, stop_env
from tests.fakes.imds import FakeImds, watch_once

SPEC: dict[str, Any] = {
    "runner_class": "dedicated_host",
    "profile": "Large",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "finance", "pipeline": "erp-extract"},
    "ttl": "90m",
    "idle_timeout": "10m",
}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Env]:
    env = start_env(tmp_path_factory.mktemp("ec2-idle"))
    yield env
    stop_env(env)


@pytest.fixture
def env(aws: Ec2Env, monkeypatch: pytest.MonkeyPatch) -> Ec2Env:
    aws.server.reset()
    aws.provision_account()
    for key, value in aws.connections().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.05)
    monkeypatch.setattr(Ec2Backend, "command_poll_s", 0.1)
    return aws


def create(env: Ec2Env, spec: dict[str, Any]) -> tuple[Ec2Backend, Any]:
    backend = get_backend(RUNNER_CONN_ID)
    assert isinstance(backend, Ec2Backend)
    parsed = RunnerSpec.parse(spec)
    lineage = Lineage("erp", "run-1", "host.provision")
    request = ProvisionRequest.build(
        resolve_spec(parsed, backend="ec2", catalog_path=env.catalog_path),
        lineage,
        lineage.attempt_token(1),
        RUNNER_CONN_ID,
        {"tenant": "finance", "pipeline": "erp-extract"},
    )
    handle = backend.create(request)
    deadline = time.monotonic() + 10
    while (status := backend.status(handle)).state is not RunnerState.READY:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return backend, handle


def tags(env: Ec2Env, iid: str) -> dict[str, str]:
    inst = env.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def test_launch_carries_the_tag_the_watcher_and_terminate_on_shutdown(env: Ec2Env) -> None:
    backend, handle = create(env, SPEC)
    try:
        assert tags(env, handle.resource_id)["idle-timeout"] == "600"
        ec2 = env.client("ec2")
        raw = ec2.describe_instance_attribute(InstanceId=handle.resource_id, Attribute="userData")
        config = yaml.safe_load(base64.b64decode(raw["UserData"]["Value"]).decode())
        files = {f["path"]: f for f in config["write_files"]}
        assert files[WATCHER_PATH]["content"] == IDLE_WATCHER
        assert files[WATCHER_PATH]["permissions"] == "0755"
        assert WATCHER_PATH in files[PER_BOOT_PATH]["content"]  # started on every boot
        assert any("expires-at" in str(cmd) for cmd in config["bootcmd"])  # the ttl timer stays
        behaviour = ec2.describe_instance_attribute(
            InstanceId=handle.resource_id, Attribute="instanceInitiatedShutdownBehavior"
        )
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    finally:
        backend.teardown(handle)


def test_a_spec_without_idle_timeout_is_tagged_none(env: Ec2Env) -> None:
    backend, handle = create(env, {**SPEC, "idle_timeout": None})
    try:
        assert tags(env, handle.resource_id)["idle-timeout"] == "none"
    finally:
        backend.teardown(handle)


def test_ssm_commands_mark_activity_and_the_watcher_ends_the_host_after_idle_timeout(env: Ec2Env) -> None:
    backend, handle = create(env, SPEC)
    host = env.agent.bin.parent
    idle_dir = host / "runner-idle"  # where the stand-in host keeps the marks (RUNNER_IDLE_DIR)
    imds = FakeImds()
    try:
        imds.tags = tags(env, handle.resource_id)  # this instance's tags, as IMDS serves them
        assert watch_once(imds, idle_dir, env.agent.bin) == []  # just booted: active
        lines: list[str] = []
        result = backend.run_command(
            handle, CommandRequest(command="echo working", name="c1"), lines.append, threading.Event()
        )
        assert result.exit_code == 0
        assert lines == ["working"]
        last = (idle_dir / "last-active").stat().st_mtime
        assert time.time() - last < 60
        assert list((idle_dir / "active").iterdir()) == []  # the command ended
        assert watch_once(imds, idle_dir, env.agent.bin, now=last + 590) == []
        assert watch_once(imds, idle_dir, env.agent.bin, now=last + 600) == ["-h now"]
    finally:
        imds.server.shutdown()
        backend.teardown(handle)
