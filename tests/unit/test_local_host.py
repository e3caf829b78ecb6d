"""local_host backend, local subprocess runner, secret references and RunnerCommandOperator input checks."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_provider_runners.backends.local_host.backend import LocalHostBackend
from airflow_provider_runners.core.backend import (
    CommandRequest,
    ConnectionConfig,
    ProvisionRequest,
    RunnerState,
)
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.secret_refs import check_kinds, parse_secret_env, parse_secret_ref
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerNotFoundError, RunnerSpecError

SPEC = RunnerSpec.parse({"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "qa"}})


def make_host(
    tmp_path: Path, ttl_s: float = 600, try_number: int = 1, task: str = "provision"
) -> tuple[LocalHostBackend, RunnerHandle]:
    backend = LocalHostBackend(
        ConnectionConfig(
            conn_id="h", conn_type="runners_local_host", extra={"state_dir": str(tmp_path / "hosts")}
        )
    )
    lineage = Lineage("dag", "run-1", task)
    expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
    token = lineage.attempt_token(try_number)
    request = ProvisionRequest(resolve_spec(SPEC), lineage, token, "h", lineage.labels(), expires)
    return backend, backend.create(request)


def run(backend: LocalHostBackend, handle: RunnerHandle, command: Any, **kw: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    cancel = kw.pop("cancel", threading.Event())
    request = CommandRequest(command=command, name="cmd-1", **kw)
    return backend.run_command(handle, request, lines.append, cancel), lines


def sleepers() -> list[int]:
    return [
        p.pid for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[:2] == ["sleep", "97"]
    ]


def test_create_is_idempotent_per_attempt_and_found_by_lineage(tmp_path: Path) -> None:
    backend, handle = make_host(tmp_path)
    again = make_host(tmp_path)[1]
    assert again.resource_id == handle.resource_id
    assert again.created_at == handle.created_at
    assert backend.find(handle.lineage_key) == handle
    assert backend.status(handle).state is RunnerState.READY
    assert [h.resource_id for h in backend.list_managed()] == [handle.resource_id]
    assert Path(handle.endpoints["workspace"]).is_dir()


def test_teardown_twice_and_status_gone(tmp_path: Path) -> None:
    backend, handle = make_host(tmp_path)
    first, second = backend.teardown(handle), backend.teardown(handle)
    assert first.existed
    assert not second.existed
    assert "already gone" in second.message
    assert backend.status(handle).state is RunnerState.GONE
    assert backend.find(handle.lineage_key) is None
    assert list((tmp_path / "hosts").iterdir()) == []


def test_expired_host_ends_itself_on_first_sight(tmp_path: Path) -> None:
    backend, handle = make_host(tmp_path, ttl_s=1)
    time.sleep(1.2)
    status = backend.status(handle)
    assert status.state is RunnerState.GONE
    assert "expired" in status.message
    assert list((tmp_path / "hosts").iterdir()) == []


def test_command_output_streams_and_exit_code(tmp_path: Path) -> None:
    backend, handle = make_host(tmp_path)
    result, lines = run(backend, handle, "echo one; echo two >&2; exit 7")
    assert result.exit_code == 7
    assert not result.timed_out
    assert lines == ["one", "two"]
    result, lines = run(backend, handle, ("printf", "%s\\n", "argv form"))
    assert result.exit_code == 0
    assert lines == ["argv form"]
    backend.teardown(handle)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    backend, handle = make_host(tmp_path)
    started = time.monotonic()
    result, _ = run(backend, handle, "sleep 97 & sleep 97", timeout=1)
    assert result.timed_out
    assert result.exit_code is None
    assert time.monotonic() - started < 15
    deadline = time.monotonic() + 5
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers() == []
    backend.teardown(handle)


def test_runner_expiry_caps_a_command(tmp_path: Path) -> None:
    """coreutils timeout (the host-side backstop) ends a command at the runner's expiry."""
    backend, handle = make_host(tmp_path, ttl_s=3)
    result, _ = run(backend, handle, "sleep 97", timeout=600)
    assert result.timed_out
    assert result.details["ended_by"] == "runner expiry"
    assert sleepers() == []


def test_cancel_and_teardown_stop_a_running_command(tmp_path: Path) -> None:
    backend, handle = make_host(tmp_path)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result, _ = run(backend, handle, "sleep 97", cancel=cancel)
    assert result.cancelled
    assert result.exit_code is None
    # A command still running when the host is torn down is killed with it.
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(r=run(backend, handle, "sleep 97")[0]))
    thread.start()
    deadline = time.monotonic() + 5
    while not sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    teardown = backend.teardown(handle)
    thread.join(timeout=10)
    assert teardown.details["killed_commands"] == 1
    assert outcome["r"].exit_code != 0
    assert sleepers() == []


def test_command_on_a_gone_host_fails_clearly(tmp_path: Path) -> None:
    backend, handle = make_host(tmp_path)
    backend.teardown(handle)
    with pytest.raises(RunnerNotFoundError, match="is gone"):  # a RuntimeError, as before
        run(backend, handle, "true")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("plain-value", "is not a secret reference; allowed: conn:<conn_id>#<field>"),
        ("conn:erp", "names no Connection field; allowed fields: password, login"),
        ("conn:erp#secret", "names no Connection field"),
        ("k8s-secret:db", "needs a key: k8s-secret:<name>#<key>"),
        ("var:x#y", "var references take no '#<key>'"),
    ],
)
def test_bad_secret_references_name_the_field_and_the_forms(ref: str, message: str) -> None:
    with pytest.raises(RunnerSpecError, match="secret_env.DB_PASSWORD") as err:
        parse_secret_env({"DB_PASSWORD": ref})
    assert message in str(err.value)


def test_secret_reference_forms_and_kind_checks() -> None:
    assert str(parse_secret_ref("aws-sm:prod/erp#password")) == "aws-sm:prod/erp#password"
    assert parse_secret_ref("conn:erp#extra.token").key == "extra.token"
    with pytest.raises(RunnerSpecError, match="is not an environment variable name"):
        parse_secret_env({"1BAD": "var:x"})
    refs = parse_secret_env({"A": "aws-sm:x"})
    with pytest.raises(RunnerSpecError, match=r"'aws-sm' references are not resolved by the 'local_host'"):
        check_kinds(refs, LocalHostBackend.secret_ref_kinds, "local_host")


def test_command_operator_rejects_bad_input_at_parse_time() -> None:
    from airflow_provider_runners.operators.command import RunnerCommandOperator

    def make(**kw: Any) -> Any:
        return RunnerCommandOperator(task_id="t", handle={"x": 1}, **{"command": "true", **kw})

    with pytest.raises(RunnerSpecError, match="command: must not be empty"):
        make(command="  ")
    with pytest.raises(RunnerSpecError, match="env.DB_PASSWORD: looks like a secret; pass it as secret_env"):
        make(env={"DB_PASSWORD": "hunter2"})
    with pytest.raises(RunnerSpecError, match="timeout: 'soon' is not a positive duration"):
        make(timeout="soon")
    with pytest.raises(RunnerSpecError, match="secret_env.TOKEN"):
        make(secret_env={"TOKEN": "hunter2"})
    assert make(timeout="30m").command_timeout == 1800


def test_on_kill_cancels_the_running_command(tmp_path: Path) -> None:
    """The task process's SIGTERM handler calls on_kill: the command stops before the task exits."""
    from airflow_provider_runners.operators.command import RunnerCommandOperator

    backend, handle = make_host(tmp_path)
    op = RunnerCommandOperator(task_id="t", handle=handle.to_xcom(), command="sleep 97")
    request = CommandRequest(command="sleep 97", name="kill-1")
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(r=op._run(backend, handle, request)))
    thread.start()
    deadline = time.monotonic() + 5
    while not sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleepers()
    started = time.monotonic()
    op.on_kill()
    thread.join(timeout=15)
    assert outcome["r"].cancelled
    assert time.monotonic() - started < 12
    assert sleepers() == []
    backend.teardown(handle)
