"""``spec.idle_timeout`` per backend (docs/cost.md, "Idle timeout"): enforced by local_dask,
local_host and ec2; refused when the DAG is parsed by every backend that cannot enforce it,
with a message naming the field, the value, the backend, why, and what is allowed.

local_host's idle test runs on a clock the test controls; the EC2 host's idle watcher (a shell
script in the user-data) runs here in bash against a stand-in IMDS and a recording ``shutdown``.
The EC2 launch itself (tag, user-data, SSM activity marks) is in tests/unit/test_ec2_idle.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.ec2.idle import ACTIVITY_LINES
from airflow_provider_runners.backends.local_host.backend import LocalHostBackend
from airflow_provider_runners.backends.registry import backend_classes, check_spec
from airflow_provider_runners.core.backend import (
    CommandRequest,
    ConnectionConfig,
    ProvisionRequest,
    RunnerState,
    idle_timeout_seconds,
)
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError
from tests.fakes.imds import FakeImds, watch_once

REFUSING = {
    "kubernetes": ("pod", "small", "dev"),
    "dataproc_dask": ("dask_cluster", "small", "dev"),
    "labgrid": ("bench", "bench", None),
    "bench_http": ("bench", "bench", None),
}
ENFORCING = {"local_dask": "dask_cluster", "local_host": "dedicated_host", "ec2": "dedicated_host"}


def resolved(**fields: Any) -> Any:
    spec = RunnerSpec.parse({"tags": {"tenant": "qa"}, **fields})
    return resolve_spec(spec, backend=spec.backend)


def by_name() -> dict[str, Any]:
    return {cls.name: cls for cls in backend_classes().values()}


# -- which backend enforces it, which refuses it -----------------------------------------------
@pytest.mark.parametrize("name", sorted(ENFORCING))
def test_backends_that_enforce_it_say_so(name: str) -> None:
    assert by_name()[name].idle_timeout_unsupported is None


@pytest.mark.parametrize("name", sorted(REFUSING))
def test_backends_that_cannot_refuse_it_at_parse_time_naming_field_value_backend_and_allowed(
    name: str,
) -> None:
    cls = by_name()[name]
    runner_class, profile, _ = REFUSING[name]
    spec = RunnerSpec.parse(
        {"runner_class": runner_class, "profile": profile, "tags": {"tenant": "qa"}, "idle_timeout": "10m"}
    )
    with pytest.raises(RunnerSpecError) as info:
        cls.check_idle_timeout(spec)
    message = str(info.value)
    assert message.startswith("spec.idle_timeout: 10m is not enforced by backend")
    assert repr(name) in message
    assert cls.idle_timeout_unsupported in message
    assert "allowed: no idle_timeout" in message
    cls.check_idle_timeout(spec.model_copy(update={"idle_timeout": None}))  # none: nothing to refuse


def test_a_third_party_backend_refuses_it_unless_it_opts_in() -> None:
    from airflow_provider_runners.core.backend import Backend

    assert Backend.idle_timeout_unsupported  # the default: never silently ignored


def test_a_spec_naming_a_refusing_backend_is_refused_when_parsed() -> None:
    with pytest.raises(
        RunnerSpecError, match=r"spec.idle_timeout: 10m .*'kubernetes'.*activeDeadlineSeconds"
    ):
        check_spec(
            resolved(
                runner_class="pod",
                profile="small",
                environment="dev",
                backend="kubernetes",
                idle_timeout="10m",
            )
        )
    with pytest.raises(RunnerSpecError, match=r"'dataproc_dask'.*YARN"):
        check_spec(
            resolved(
                runner_class="dask_cluster",
                profile="standard",
                environment="dev",
                backend="dataproc_dask",
                idle_timeout="10m",
            )
        )


def test_without_a_named_backend_some_backend_of_the_class_must_enforce_it() -> None:
    with pytest.raises(
        RunnerSpecError, match="spec.idle_timeout: 5m is not enforced by backend 'kubernetes'"
    ):
        check_spec(resolved(runner_class="pod", profile="small", environment="dev", idle_timeout="5m"))
    # local_dask enforces it for dask_cluster (dataproc_dask refuses it again at run time)
    check_spec(resolved(runner_class="dask_cluster", profile="small", idle_timeout="5m"))
    check_spec(resolved(runner_class="dedicated_host", profile="Large", idle_timeout="5m"))


def test_the_provision_operator_refuses_it_when_the_dag_is_parsed() -> None:
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    with pytest.raises(RunnerSpecError, match="spec.idle_timeout"):
        ProvisionRunnerOperator(
            task_id="p",
            spec={
                "runner_class": "pod",
                "profile": "small",
                "environment": "dev",
                "tags": {"tenant": "qa"},
                "idle_timeout": "10m",
            },
        )


def test_every_runner_resource_carries_its_idle_timeout_tag() -> None:
    lineage = Lineage("dag", "run-1", "p")
    for idle, tag in (("10m", "600"), (None, "none")):
        spec = RunnerSpec.parse(
            {
                "runner_class": "dedicated_host",
                "profile": "Large",
                "tags": {"tenant": "qa"},
                "idle_timeout": idle,
            }
        )
        request = ProvisionRequest.build(resolve_spec(spec), lineage, "t1", "c", {})
        labels = request.resource_labels()
        assert labels["idle-timeout"] == tag
        assert idle_timeout_seconds(labels) == (600.0 if idle else None)


# -- local_host: the .active mark, on a clock the test controls ---------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def local_host(
    tmp_path: Path, clock: Clock, idle: str | None = "10m"
) -> tuple[LocalHostBackend, RunnerHandle]:
    backend = LocalHostBackend(
        ConnectionConfig(conn_id="h", conn_type="runners_local_host", extra={"state_dir": str(tmp_path)})
    )
    backend.now = clock  # type: ignore[method-assign]
    spec = RunnerSpec.parse(
        {"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "qa"}, "idle_timeout": idle}
    )
    lineage = Lineage("dag", "run-1", "provision")
    request = ProvisionRequest.build(resolve_spec(spec), lineage, lineage.attempt_token(1), "h", {})
    return backend, backend.create(request)


def test_local_host_ends_after_idle_timeout_without_commands(tmp_path: Path) -> None:
    clock = Clock()
    backend, handle = local_host(tmp_path, clock)
    clock.advance(599)
    assert backend.status(handle).state is RunnerState.READY
    clock.advance(1)
    status = backend.status(handle)
    assert status.state is RunnerState.GONE
    assert "idle_timeout" in status.message
    assert "600s" in status.message
    assert not list(tmp_path.iterdir())  # record, workspace, pids and the mark: all removed


def test_local_host_a_command_restarts_the_idle_clock_and_a_running_one_keeps_it(tmp_path: Path) -> None:
    clock = Clock()
    backend, handle = local_host(tmp_path, clock)
    clock.advance(500)
    result = backend.run_command(
        handle, CommandRequest(command="true", name="c1"), lambda line: None, threading.Event()
    )
    assert result.exit_code == 0
    clock.advance(500)  # 1000 s since creation, 500 s since the command
    assert backend.status(handle).state is RunnerState.READY

    release = tmp_path / "release"
    done: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: done.update(
            result=backend.run_command(
                handle,
                CommandRequest(command=f"while [ ! -e {release} ]; do sleep 0.05; done", name="c2"),
                lambda line: None,
                threading.Event(),
            )
        )
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not backend._running_pids(handle.resource_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        clock.advance(3600)  # a command longer than the idle timeout: busy, not idle
        assert backend.status(handle).state is RunnerState.READY
        assert [h.resource_id for h in backend.list_managed()] == [handle.resource_id]
    finally:
        release.touch()
        thread.join(10)
    assert done["result"].exit_code == 0
    clock.advance(599)
    assert backend.status(handle).state is RunnerState.READY
    clock.advance(1)
    assert backend.list_managed() == []  # the reaper's listing ends it: the sweep finds it gone
    assert backend.status(handle).state is RunnerState.GONE


def test_local_host_without_idle_timeout_is_never_ended_for_idleness(tmp_path: Path) -> None:
    clock = Clock()
    backend, handle = local_host(tmp_path, clock, idle=None)
    clock.advance(86_400)
    assert backend.status(handle).state is RunnerState.READY


# -- the EC2 host's idle watcher, in bash ------------------------------------------------------
@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    yield fake
    fake.server.shutdown()


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory: the watcher script, and a bin dir with a ``shutdown`` that only records."""
    (tmp_path / "bin").mkdir()
    shutdown = tmp_path / "bin" / "shutdown"
    shutdown.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/bin/shutdown.log"\n')
    shutdown.chmod(shutdown.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def watch(host: Path, imds: FakeImds, now: float | None = None) -> list[str]:
    return watch_once(imds, host / "idle", host / "bin", now)


def test_watcher_shuts_the_host_down_after_its_idle_timeout_tag(host: Path, imds: FakeImds) -> None:
    imds.tags = {"idle-timeout": "600", "runner-lineage": "rl-1", "runner-pool-state": "in-use"}
    assert watch(host, imds) == []  # just active (a new lineage restarts the clock)
    assert watch(host, imds, now=time.time() + 300) == []
    assert watch(host, imds, now=time.time() + 700) == ["-h now"]


def test_a_warm_pool_claim_restarts_the_idle_clock_and_a_watcher_restart_does_not_lose_it(
    host: Path, imds: FakeImds
) -> None:
    t0 = 1_900_000_000  # every round on a controlled clock
    imds.tags = {"idle-timeout": "600", "runner-lineage": "rl-1", "runner-pool-state": "in-use"}
    assert watch(host, imds, now=t0) == []  # first start on this boot: active at t0
    assert watch(host, imds, now=t0 + 599) == []  # each round is a restarted watcher: same boot,
    imds.tags["runner-lineage"] = "rl-2"  # same lineage, so the clock ran on; now claimed again
    assert watch(host, imds, now=t0 + 1500) == []  # the claim is activity at t0 + 1500
    assert watch(host, imds, now=t0 + 1500 + 599) == []
    assert watch(host, imds, now=t0 + 1500 + 600) == ["-h now"]


def test_watcher_keeps_a_host_with_a_running_command(host: Path, imds: FakeImds) -> None:
    imds.tags = {"idle-timeout": "600", "runner-lineage": "rl-1"}
    (host / "command.sh").write_text("\n".join([*ACTIVITY_LINES, "sleep 30"]))
    command = subprocess.Popen(
        ["bash", str(host / "command.sh")], env={**os.environ, "RUNNER_IDLE_DIR": str(host / "idle")}
    )
    try:
        deadline = time.monotonic() + 10
        while not list((host / "idle" / "active").glob("*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watch(host, imds, now=time.time() + 7200) == []
    finally:
        command.terminate()
        command.wait(10)


def test_watcher_does_nothing_without_an_idle_timeout_or_on_an_idle_pool_host(
    host: Path, imds: FakeImds
) -> None:
    imds.tags = {"idle-timeout": "none", "runner-lineage": "rl-1"}
    assert watch(host, imds, now=time.time() + 86_400) == []
    imds.tags = {"runner-lineage": "rl-1"}  # an older host without the tag
    assert watch(host, imds, now=time.time() + 86_400) == []
    imds.tags = {"idle-timeout": "600", "runner-pool-state": "idle"}  # back in the warm pool
    assert watch(host, imds, now=time.time() + 86_400) == []


def test_activity_lines_mark_start_and_end_and_keep_the_exit_code(tmp_path: Path) -> None:
    script = "\n".join([*ACTIVITY_LINES, "exit 7"])
    done = subprocess.run(
        ["bash", "-c", script], check=False, env={**os.environ, "RUNNER_IDLE_DIR": str(tmp_path)}
    )
    assert done.returncode == 7
    assert (tmp_path / "last-active").exists()
    assert list((tmp_path / "active").iterdir()) == []  # the command's mark is gone when it ends


class _Ti:
    dag_id, run_id, task_id, map_index, try_number = "etl", "manual__1", "p", -1, 1

    def xcom_push(self, key: str, value: Any) -> None:  # pragma: no cover - nothing is pushed
        raise AssertionError(f"nothing may be pushed before the refusal: {key}")


def test_a_connection_selecting_a_refusing_backend_is_refused_at_run_time_before_anything_is_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_DP",
        json.dumps({"conn_type": "runners_dataproc_dask", "extra": {"region": "europe-west1"}}),
    )
    op = ProvisionRunnerOperator(  # parses: local_dask, another dask_cluster backend, enforces it
        task_id="p",
        conn_id="runners_dp",
        spec={
            "runner_class": "dask_cluster",
            "profile": "standard",
            "environment": "dev",
            "tags": {"tenant": "qa"},
            "idle_timeout": "10m",
        },
    )
    with pytest.raises(
        RunnerSpecError, match="spec.idle_timeout: 10m is not enforced by backend 'dataproc_dask'"
    ) as info:
        op.execute({"ti": _Ti()})  # type: ignore[arg-type]
    assert "Connection 'runners_dp'" in str(info.value)
    assert "nothing was created" in str(info.value)
