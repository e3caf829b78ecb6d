"""ssh backend: the Connection's checks, and the backend against a real OpenSSH server (sshd on a
free port, tests/support/sshd.py): the contract kit, leasing a host pool, expiry, commands."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest

from airflow_provider_runners.backends.ssh import SshBackend
from airflow_provider_runners.core.backend import (
    Backend,
    CommandRequest,
    ConnectionConfig,
    ProvisionRequest,
    RunnerState,
)
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import ConnectionConfigError, ProvisionError, RunnerNotFoundError
from airflow_provider_runners.testing.contract import BackendContract
from tests.support.sshd import SshServer, sshd_available, start_sshd

SPEC = {"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "qa"}}
needs_sshd = pytest.mark.skipif(
    not sshd_available(), reason="needs OpenSSH's sshd and ssh (scripts/ensure-sshd.sh installs them)"
)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not sshd_available():
        pytest.skip("needs OpenSSH's sshd and ssh (scripts/ensure-sshd.sh installs them)")
    server = start_sshd(tmp_path_factory.mktemp("sshd"), names=("127.0.0.1", "localhost"))
    yield server
    server.stop()


def connection(server: SshServer, root: Path, **extra: Any) -> ConnectionConfig:
    return ConnectionConfig(
        conn_id="pool",
        conn_type="runners_ssh",
        host=f"127.0.0.1:{server.port}",
        login=server.login,
        extra={
            "private_key": server.private_key,
            "known_hosts": server.known_hosts,
            "workspace_root": str(root),
            **extra,
        },
    )


def request(
    task: str = "provision", expires_in: float = 600, options: dict[str, Any] | None = None
) -> ProvisionRequest:
    spec = RunnerSpec.parse({**SPEC, "options": options or {}})
    lineage = Lineage("dag", "run-1", task)
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    return ProvisionRequest(
        resolve_spec(spec, backend="ssh"),
        lineage,
        lineage.attempt_token(1),
        "pool",
        lineage.labels(),
        expires,
    )


def sleepers(seconds: str = "97", under: Path | None = None) -> list[int]:
    """``sleep <seconds>`` processes on this machine; with ``under``, only those whose working
    directory is there (a runner's workspace: another test run's sleepers do not count)."""
    return [
        p.pid
        for p in psutil.process_iter(["cmdline", "cwd"])
        if (p.info["cmdline"] or [])[:2] == ["sleep", seconds]
        and (under is None or str(p.info["cwd"] or "").startswith(str(under)))
    ]


def run(backend: SshBackend, handle: RunnerHandle, command: Any, **kw: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    cancel = kw.pop("cancel", threading.Event())
    return backend.run_command(
        handle, CommandRequest(command=command, name="cmd-1", **kw), lines.append, cancel
    ), lines


# -- the Connection ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "extra", "message"),
    [
        (None, {}, "Connection 'pool': host is None and extra.hosts is empty; allowed: one host"),
        (
            "h1",
            {"privat_key": "x"},
            "extra.privat_key: Extra inputs are not permitted; allowed extra fields:",
        ),
        (
            "h1",
            {"private_key": "x", "key_file": "/k"},
            "sets both private_key and key_file; allowed: one of them",
        ),
        ("h1:ssh", {}, "host 'h1:ssh' has port 'ssh'; allowed: host or host:port"),
        ("h1,h1:22", {}, "a host is listed twice: ['h1:22', 'h1:22']"),
        ("h1", {"connect_timeout": 0}, "extra.connect_timeout: Input should be greater than 0"),
    ],
)
def test_a_wrong_connection_names_the_field_value_and_what_is_allowed(
    host: str | None, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConnectionConfigError) as err:
        SshBackend(ConnectionConfig(conn_id="pool", conn_type="runners_ssh", host=host, extra=extra))
    assert message in str(err.value)
    assert "'x'" not in str(err.value)  # never the private key's text


def test_hosts_come_from_the_host_field_and_the_extra() -> None:
    backend = SshBackend(
        ConnectionConfig(
            conn_id="pool",
            conn_type="runners_ssh",
            host="a, b:2222",
            port=2200,
            extra={"hosts": ["c", {"host": "d", "workspace_root": "/scratch/runners"}]},
        )
    )
    hosts = [(h.address, h.workspace_root) for h in backend.settings.hosts]
    assert hosts == [
        ("a:2200", "airflow-runners"),
        ("b:2222", "airflow-runners"),
        ("c:2200", "airflow-runners"),
        ("d:2200", "/scratch/runners"),
    ]
    with pytest.raises(ConnectionConfigError, match=r"host 'e:22' is not in its pool; allowed: \['a:2200'"):
        backend.settings.host("e:22")


def test_spec_options_are_checked_at_parse_time() -> None:
    from airflow_provider_runners.exceptions import RunnerSpecError

    resolved = resolve_spec(RunnerSpec.parse({**SPEC, "options": {"hots": "a"}}), backend="ssh")
    with pytest.raises(RunnerSpecError, match=r"backend 'ssh'; allowed options: \['host'\]"):
        SshBackend.check_spec(resolved)


# -- against sshd ------------------------------------------------------------------------------------
@needs_sshd
class TestSshContract(BackendContract):
    """The backend contract against a real sshd."""

    spec: ClassVar[dict[str, Any]] = SPEC
    ready_timeout: ClassVar[float] = 30.0

    @pytest.fixture
    def backend(self, sshd: SshServer, tmp_path: Path) -> Iterator[Backend]:
        yield SshBackend(connection(sshd, tmp_path / "root"))
        assert not (tmp_path / "root" / "lease").exists()


@needs_sshd
def test_a_pool_leases_one_runner_per_host_and_says_who_holds_them(sshd: SshServer, tmp_path: Path) -> None:
    config = connection(sshd, tmp_path / "a")
    config.extra["hosts"] = [{"host": "localhost", "port": sshd.port, "workspace_root": str(tmp_path / "b")}]
    backend = SshBackend(config)
    first, second = backend.create(request("one")), backend.create(request("two"))
    try:
        assert {first.details["host"], second.details["host"]} == {
            f"127.0.0.1:{sshd.port}",
            f"localhost:{sshd.port}",
        }
        with pytest.raises(ProvisionError) as err:
            backend.create(request("three"))
        assert "no free host in the pool of Connection 'pool' (2 host(s))" in str(err.value)
        assert f"leased by {first.lineage_key}" in str(err.value)
        assert {h.resource_id for h in backend.list_managed()} == {first.resource_id, second.resource_id}
        calls: list[str] = []
        run_on_host = backend.client.run
        backend.client.run = lambda host, *a, **kw: calls.append(host.address) or run_on_host(host, *a, **kw)  # type: ignore[method-assign]
        statuses = backend.status_many([first, second, first, second])
        assert [s.state for s in statuses.values()] == [RunnerState.READY, RunnerState.READY]
        assert sorted(calls) == sorted({first.details["host"], second.details["host"]})  # one call per host
        backend.client.run = run_on_host  # type: ignore[method-assign]
        backend.teardown(first)
        third = backend.create(request("three"))
        assert third.details["host"] == first.details["host"]
        backend.teardown(third)
    finally:
        backend.teardown(second)
    assert backend.list_managed() == []


@needs_sshd
def test_options_host_pins_one_host_of_the_pool(sshd: SshServer, tmp_path: Path) -> None:
    config = connection(sshd, tmp_path / "a")
    config.extra["hosts"] = [{"host": "localhost", "port": sshd.port, "workspace_root": str(tmp_path / "b")}]
    backend = SshBackend(config)
    handle = backend.create(request(options={"host": f"localhost:{sshd.port}"}))
    try:
        assert handle.details["host"] == f"localhost:{sshd.port}"
        assert (tmp_path / "b" / "lease" / "runner.json").exists()
    finally:
        backend.teardown(handle)
    with pytest.raises(ConnectionConfigError, match="host 'nope:22' is not in its pool"):
        backend.create(request(options={"host": "nope:22"}))


@needs_sshd
def test_an_expired_lease_ends_on_first_sight_and_frees_the_host(sshd: SshServer, tmp_path: Path) -> None:
    backend = SshBackend(connection(sshd, tmp_path / "root"))
    old = backend.create(request("old", expires_in=60))
    backend.now = lambda: datetime.now(UTC) + timedelta(minutes=5)  # the clock, not the wall: past expiry
    new = backend.create(request("new"))  # takes the host over, removing the old runner's files
    try:
        assert backend.status(old).state is RunnerState.GONE
        assert not (tmp_path / "root" / old.resource_id).exists()
        assert backend.find(old.lineage_key) is None
        assert backend.status(new).state is RunnerState.READY
    finally:
        backend.teardown(new)


@needs_sshd
def test_an_unreachable_host_is_failed_not_an_exception(sshd: SshServer, tmp_path: Path) -> None:
    backend = SshBackend(connection(sshd, tmp_path / "root"))
    handle = backend.create(request())
    try:
        down = SshBackend(connection(sshd, tmp_path / "root", connect_timeout=2))
        down.settings = down.settings.__class__(
            "pool",
            sshd.login,
            tuple(h.__class__(h.host, 1, h.workspace_root) for h in down.settings.hosts),
            down.settings.extra,
        )
        down.client.settings = down.settings
        moved = handle.evolve(details={"host": "127.0.0.1:1"})
        status = down.status(moved)
        assert status.state is RunnerState.FAILED
        assert "host unreachable" in status.message
        with pytest.raises(ProvisionError, match=r"no free host .*127\.0\.0\.1:1: unreachable"):
            down.create(request("other"))
    finally:
        backend.teardown(handle)


@needs_sshd
def test_commands_stream_output_get_env_and_secrets_masked_and_exit_codes(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SSH_UNIT_SECRET", json.dumps({"conn_type": "generic", "password": "s3cr3t-9f"})
    )
    backend = SshBackend(connection(sshd, tmp_path / "root", host_env={"TOOL_HOME": "/opt/tool"}))
    handle = backend.create(request())
    argvs: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        argvs.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    try:
        result, lines = run(
            backend,
            handle,
            'echo "tool=$TOOL_HOME app=$APP token=$TOKEN"; pwd; echo out > "$RUNNER_WORKSPACE/f"; exit 7',
            env={"APP": "it's"},
            secret_env={"TOKEN": "conn:ssh_unit_secret#password"},
        )
        assert result.exit_code == 7
        assert lines[0] == "tool=/opt/tool app=it's token=***"
        assert lines[1] == str(tmp_path / "root" / handle.resource_id)
        assert result.details["host"] == f"127.0.0.1:{sshd.port}"
        result, lines = run(backend, handle, ("cat", "f"), workdir=".")
        assert (result.exit_code, lines) == (0, ["out"])
        scripts = list((tmp_path / "root").glob(f"{handle.resource_id}.pids/.script-*"))
        assert scripts == []  # the script holding the secret is gone
        assert argvs  # the commands' ssh command lines: neither the secret nor the private key
        assert not [a for a in argvs if "s3cr3t-9f" in repr(a) or "PRIVATE KEY" in repr(a)]
    finally:
        backend.teardown(handle)


@needs_sshd
def test_timeout_and_expiry_end_the_remote_process_group(sshd: SshServer, tmp_path: Path) -> None:
    backend = SshBackend(connection(sshd, tmp_path / "root"))
    handle = backend.create(request())
    try:
        started = time.monotonic()
        result, _ = run(backend, handle, "sleep 97 & sleep 97", timeout=2)
        assert result.timed_out
        assert result.details["ended_by"] == "timeout"
        assert time.monotonic() - started < 15
        assert sleepers() == []
        backend.now = lambda: handle.expires_at - timedelta(seconds=2)  # 2 s left on the runner's clock
        result, _ = run(backend, handle, "sleep 97", timeout=600)
        assert result.timed_out
        assert result.details["ended_by"] == "runner expiry"
        assert sleepers() == []
    finally:
        backend.teardown(handle)


@needs_sshd
def test_cancel_and_teardown_stop_remote_commands(sshd: SshServer, tmp_path: Path) -> None:
    backend = SshBackend(connection(sshd, tmp_path / "root"))
    handle = backend.create(request())
    try:
        cancel = threading.Event()
        threading.Timer(1.5, cancel.set).start()
        result, _ = run(backend, handle, "sleep 97 & sleep 97", cancel=cancel)
        assert result.cancelled
        assert result.exit_code is None
        assert sleepers() == []
        runner = threading.Thread(target=run, args=(backend, handle, "sleep 97"))
        runner.start()
        deadline = time.monotonic() + 10
        while not sleepers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sleepers()
    finally:
        ended = backend.teardown(handle)
    assert ended.details["killed_commands"] == 1
    runner.join(timeout=15)
    assert sleepers() == []
    with pytest.raises(RunnerNotFoundError, match="is gone"):  # a RuntimeError, as before
        run(backend, handle, "true")


@needs_sshd
def test_the_reaper_ends_an_expired_lease(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_runners.governance.reaper import NoDagRuns, sweep
    from airflow_provider_runners.governance.runner_index.sqlite import SqliteRegistry

    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp_path / "evidence"))
    backend = SshBackend(connection(sshd, tmp_path / "root"))
    handle = backend.create(request(expires_in=60))
    report = sweep(
        ["pool"],
        runs=NoDagRuns(),
        registry=SqliteRegistry(tmp_path / "registry.sqlite"),
        now=handle.expires_at + timedelta(seconds=1),
        backend_factory=lambda conn_id: backend,
    )
    assert [(a.resource_id, a.decision) for a in report.actions] == [(handle.resource_id, "reap")]
    assert report.ok
    assert backend.list_managed() == []
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == []
