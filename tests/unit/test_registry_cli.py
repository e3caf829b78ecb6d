from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest
import yaml

from airflow_provider_runners.backends import registry
from airflow_provider_runners.backends.local_dask.backend import LocalDaskBackend
from airflow_provider_runners.cli import main
from airflow_provider_runners.core.backend import Backend, RunnerStatus, TeardownResult
from airflow_provider_runners.core.catalog import DEFAULT_CATALOG
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.evidence.ledger import append
from airflow_provider_runners.exceptions import BackendNotFoundError


class ThirdPartyBackend(Backend):
    """Stands in for a backend shipped by another package through the entry-point group."""

    name = "acme"
    conn_type = "runners_acme"
    hook_name = "Runners: ACME"
    runner_classes: ClassVar[frozenset[str]] = frozenset({"bench"})

    def create(self, request: Any) -> RunnerHandle:  # pragma: no cover - not used here
        raise NotImplementedError

    def find(self, lineage_key: str) -> RunnerHandle | None:  # pragma: no cover - not used here
        return None

    def status(self, handle: RunnerHandle) -> RunnerStatus:  # pragma: no cover - not used here
        raise NotImplementedError

    def teardown(self, handle: RunnerHandle) -> TeardownResult:  # pragma: no cover - not used here
        raise NotImplementedError

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:  # pragma: no cover - not used here
        return {}

    def list_managed(self) -> list[RunnerHandle]:  # pragma: no cover - not used here
        return []


class ImpostorBackend(ThirdPartyBackend):
    """A plugin claiming a built-in conn_type: an error naming both, not a silent choice."""

    conn_type = "runners_local_dask"


class NotABackend:
    conn_type = "runners_bogus"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reload_backends()
    yield
    registry.reload_backends()


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *classes: type) -> None:
    """The installed entry points (the built-in backends) plus ``classes``."""
    installed = list(registry.entry_points(group=registry.ENTRY_POINT_GROUP))
    eps = installed + [
        EntryPoint(
            name=cls.__name__.lower(),
            value=f"{cls.__module__}:{cls.__qualname__}",
            group=registry.ENTRY_POINT_GROUP,
        )
        for cls in classes
    ]

    def entry_points(*, group: str) -> list[EntryPoint]:
        return eps if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", entry_points)


# -- registry ----------------------------------------------------------------------------------
def test_builtin_local_dask_backend() -> None:
    assert registry.backend_class("runners_local_dask") is LocalDaskBackend
    assert LocalDaskBackend.conn_type == "runners_local_dask"


def test_unknown_conn_type_lists_the_known_ones() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        registry.backend_class("runners_nope")
    assert isinstance(info.value, LookupError)
    assert "'runners_nope'" in str(info.value)
    known = sorted(registry.backend_classes())
    assert {"runners_dataproc_dask", "runners_local_dask", "runners_local_host"} <= set(known)
    assert f"known: {known}" in str(info.value)


def test_default_connection_id_selects_local_dask_when_undefined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_RUNNERS_DEFAULT", raising=False)
    config = registry.connection_config(registry.DEFAULT_CONN_ID)
    assert config.conn_id == "runners_default"
    assert config.conn_type == "runners_local_dask"
    backend = registry.get_backend()
    assert isinstance(backend, LocalDaskBackend)
    assert backend.conn_id == "runners_default"


def test_other_undefined_connection_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendNotFoundError) as info:
        registry.connection_config("runners_missing")
    assert "'runners_missing' is not defined" in str(info.value)
    assert "runners_local_dask" in str(info.value)


def test_connection_from_environment_configures_the_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_LOCAL",
        json.dumps(
            {"conn_type": "runners_local_dask", "extra": {"state_dir": str(tmp_path), "dashboard": False}}
        ),
    )
    backend = registry.get_backend("runners_local")
    assert isinstance(backend, LocalDaskBackend)
    assert backend.state_dir == tmp_path
    assert backend.dashboard is False


def test_third_party_backend_from_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ThirdPartyBackend)
    assert registry.backend_class("runners_acme") is ThirdPartyBackend
    assert registry.backend_class("runners_local_dask") is LocalDaskBackend
    monkeypatch.setenv(
        "AIRFLOW_CONN_ACME_LAB", json.dumps({"conn_type": "runners_acme", "host": "lab.example"})
    )
    backend = registry.get_backend("acme_lab")
    assert isinstance(backend, ThirdPartyBackend)
    assert backend.config.host == "lab.example"


def test_entry_points_are_read_once_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch)
    with pytest.raises(BackendNotFoundError):
        registry.backend_class("runners_acme")
    fake_entry_points(monkeypatch, ThirdPartyBackend)
    with pytest.raises(BackendNotFoundError):  # still the cached answer
        registry.backend_class("runners_acme")
    registry.reload_backends()
    assert registry.backend_class("runners_acme") is ThirdPartyBackend


def test_every_builtin_backend_is_an_entry_point_of_this_distribution() -> None:
    from importlib.metadata import distribution

    eps = {
        ep.name: ep.value
        for ep in distribution(registry.DISTRIBUTION).entry_points
        if ep.group == registry.ENTRY_POINT_GROUP
    }
    # Every backend package (a folder of backends/ but shared/) is an entry point named after it, so
    # a new backend is its folder and one line (docs/architecture.md, "Adding a backend").
    package = Path(registry.__file__).parent
    folders = {p.name for p in package.iterdir() if (p / "__init__.py").exists() and p.name != "shared"}
    assert set(eps) == folders
    assert {
        "local_dask",
        "local_host",
        "dataproc_dask",
        "ec2",
        "kubernetes",
        "labgrid",
        "bench_http",
    } <= folders
    for name, value in eps.items():
        assert value.startswith(f"airflow_provider_runners.backends.{name}:"), value
    assert {cls.conn_type for cls in registry.builtin_backend_classes()} == {
        f"runners_{name}" for name in eps
    }


def test_two_entry_points_claiming_one_conn_type_is_an_error_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, ImpostorBackend, NotABackend)
    with pytest.raises(BackendNotFoundError) as info:
        registry.backend_class("runners_local_dask")
    message = str(info.value)
    assert "local_dask = airflow_provider_runners.backends.local_dask:LocalDaskBackend" in message
    assert "impostorbackend = tests.unit.test_registry_cli:ImpostorBackend" in message
    assert "runners_bogus" not in registry.backend_classes()
    assert registry.backend_class("runners_ec2").__name__ == "Ec2Backend"  # the others are unaffected


def test_connection_password_is_registered_with_the_log_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_runners.core.redact import redact_text

    fake_entry_points(monkeypatch, ThirdPartyBackend)
    secret = "acme-pw-7f3a9c2e51"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ACME_SECRET", json.dumps({"conn_type": "runners_acme", "password": secret})
    )
    backend = registry.get_backend("acme_secret")
    assert backend.config.password == secret
    assert secret not in repr(backend.config)
    assert redact_text(f"login with {secret} failed") == "login with *** failed"


# -- CLI: catalog validate ---------------------------------------------------------------------
def test_cli_validates_the_default_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "validate", str(DEFAULT_CATALOG)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ")
    assert "3 environments (dev, local, prod)" in out
    assert "default environment 'local'" in out


def test_cli_rejects_a_broken_catalog_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(DEFAULT_CATALOG.read_text())
    data["environments"]["dev"]["profiles"]["dask_cluster"]["standard"]["min_workers"] = 50
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["catalog", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("INVALID: ")
    assert "catalog.environments.dev.profiles.dask_cluster.standard" in out
    assert "min_workers (50) is greater than max_workers (10)" in out


def test_cli_rejects_a_missing_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot be read" in capsys.readouterr().out


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["catalog"])
    assert info.value.code == 2


# -- CLI: evidence -----------------------------------------------------------------------------
DAG, RUN, KEY = "etl_daily", "manual__1", "rl" + "5" * 26


def record_runner(base: str, dag: str = DAG, run: str = RUN, key: str = KEY) -> None:
    runner = {
        "backend": "local_dask",
        "resource_id": f"ld-{key}-t1",
        "tags": {"tenant": "team-a", "pipeline": "etl"},
    }
    steps = [
        ("provision", {"usd": 1.0, "basis": "ttl ceiling"}, 12.5),
        ("work", {"usd": 0.2, "basis": "work window"}, 30.0),
        ("teardown", {"usd": 0.75, "basis": "lifetime"}, 2.0),
    ]
    for event, cost, duration in steps:
        payload = {
            "outcome": "success",
            "task_id": event,
            "runner": runner,
            "cost": cost,
            "timings": {"duration_s": duration},
        }
        append(dag, run, key, event, payload, base_url=base)


@pytest.fixture
def base(tmp_path: Path) -> str:
    return "file://" + str(tmp_path / "evidence")


def test_cli_verify_intact_then_tampered(
    base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_runner(base)
    record_runner(base, key="rl" + "6" * 26)
    assert main(["evidence", "verify", "--base", base]) == 0
    out = capsys.readouterr().out
    assert out.count("OK    ") == 2
    assert "2 of 2 chains intact" in out

    entry = tmp_path / "evidence" / DAG / RUN / KEY / "000002-work.json"
    data = json.loads(entry.read_text())
    data["cost"]["usd"] = 0.0
    entry.write_text(json.dumps(data))
    assert main(["evidence", "verify", "--base", base]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {base}/{DAG}/{RUN}/{KEY}" in out
    assert "000002-work.json: hash mismatch: the entry was edited" in out
    assert "1 of 2 chains intact" in out


def test_cli_verify_complete_requires_one_terminal_entry_per_round(
    base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record_runner(base)  # provision, work, teardown written without a terminal mark
    assert main(["evidence", "verify", "--base", base]) == 0
    assert main(["evidence", "verify", "--base", base, "--complete"]) == 1
    assert "round from seq 1: no terminal entry" in capsys.readouterr().out
    append(DAG, RUN, KEY, "end", {"outcome": "success", "by": "backstop"}, base_url=base, terminal=True)
    assert main(["evidence", "verify", "--base", base, "--complete"]) == 0
    assert "1 of 1 chains intact" in capsys.readouterr().out


def test_cli_verify_filters_by_dag(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    record_runner(base)
    record_runner(base, dag="other_dag")
    assert main(["evidence", "verify", "--base", base, "--dag-id", "other_dag"]) == 0
    assert "1 of 1 chains intact" in capsys.readouterr().out


def test_cli_verify_without_evidence_fails(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evidence", "verify", "--base", base]) == 1
    assert "no evidence chains found" in capsys.readouterr().out


def test_cli_show_json_summarises_cost(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    record_runner(base)
    assert main(["evidence", "show", "--json", "--base", base]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["dag_id"] == DAG
    assert summary["run_id"] == RUN
    assert summary["lineage_key"] == KEY
    assert summary["backend"] == "local_dask"
    assert summary["tenant"] == "team-a"
    assert summary["pipeline"] == "etl"
    assert summary["usd"] == 0.75  # the teardown's lifetime cost, not the sum of the estimates
    assert summary["entries"] == 3
    assert summary["failures"] == 0
    assert summary["torn_down"] is True
    assert summary["verified"] is True
    assert [s["event"] for s in summary["steps"]] == ["provision", "work", "teardown"]
    assert [s["duration_s"] for s in summary["steps"]] == [12.5, 30.0, 2.0]


def test_cli_show_text_totals_cost(base: str, capsys: pytest.CaptureFixture[str]) -> None:
    record_runner(base)
    record_runner(base, run="manual__2", key="rl" + "7" * 26)
    assert main(["evidence", "show", "--base", base]) == 0
    out = capsys.readouterr().out
    assert "cost by tenant: team-a $1.5000" in out
    assert "cost by pipeline: etl $1.5000" in out
    assert f"cost by dag run: {DAG}/{RUN} $0.7500, {DAG}/manual__2 $0.7500" in out


def test_cli_show_json_without_evidence_is_an_empty_list(
    base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evidence", "show", "--json", "--base", base]) == 0
    assert json.loads(capsys.readouterr().out) == []


# -- CLI: reap ---------------------------------------------------------------------------------
def write_state(state_dir: Path, resource_id: str, expires_at: datetime, pid: int | None) -> Path:
    created = expires_at - timedelta(hours=2)
    handle = RunnerHandle(
        backend="local_dask",
        runner_class="dask_cluster",
        resource_id=resource_id,
        conn_id="reap_test",
        lineage_key="rl" + "8" * 26,
        attempt_token="rl" + "8" * 26 + "-t1",
        created_at=created,
        expires_at=expires_at,
        environment="local",
        profile="small",
        tags={"managed-by": MANAGED_BY, "runner-lineage": "rl" + "8" * 26},
    )
    state = {
        "managed_by": MANAGED_BY,
        "resource_id": resource_id,
        "lineage_key": handle.lineage_key,
        "status": "running",
        "pid": pid,
        "pid_create_time": psutil.Process(pid).create_time() if pid else None,
        "created_at": created.isoformat(),
        "expires_at": expires_at.isoformat(),
        "handle": handle.to_xcom(),
    }
    path = state_dir / f"{resource_id}.json"
    path.write_text(json.dumps(state, indent=1, sort_keys=True))
    return path


@pytest.fixture
def reap_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Three local runners: one live and expired, one live and current, one whose daemon died."""
    state_dir = tmp_path / "local_dask"
    state_dir.mkdir()
    monkeypatch.setenv(
        "AIRFLOW_CONN_REAP_TEST",
        json.dumps({"conn_type": "runners_local_dask", "extra": {"state_dir": str(state_dir)}}),
    )
    now = datetime.now(UTC)
    # Stand-in daemons: processes whose command line names their runner, as the real daemon's does.
    procs = {
        rid: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", rid])
        for rid in ("ld-expired", "ld-current")
    }
    paths = {
        "ld-expired": write_state(
            state_dir, "ld-expired", now - timedelta(minutes=1), procs["ld-expired"].pid
        ),
        "ld-current": write_state(state_dir, "ld-current", now + timedelta(hours=1), procs["ld-current"].pid),
        "ld-stale": write_state(state_dir, "ld-stale", now + timedelta(hours=1), None),
    }
    try:
        yield {"procs": procs, "paths": paths}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def test_reap_dry_run_changes_nothing(reap_setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    paths, procs = reap_setup["paths"], reap_setup["procs"]
    before = {rid: path.read_bytes() for rid, path in paths.items()}
    assert main(["reap", "--dry-run", "--conn-id", "reap_test"]) == 0
    out = capsys.readouterr().out
    assert "would reap ld-expired (local_dask, reap_test): expired at" in out
    assert "would reap ld-stale (local_dask, reap_test): stale (its process died)" in out
    assert "keep   ld-current (local_dask, reap_test): DAG run unknown" in out
    assert "0 runner(s) reaped, 2 would be (dry run: nothing changed)" in out
    assert {rid: path.read_bytes() for rid, path in paths.items()} == before
    assert all(proc.poll() is None for proc in procs.values())


def test_reap_ends_expired_and_stale_runners_only(
    reap_setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    paths, procs = reap_setup["paths"], reap_setup["procs"]
    assert main(["reap", "--conn-id", "reap_test"]) == 0
    out = capsys.readouterr().out
    assert "reaped ld-expired (local_dask, reap_test): expired at" in out
    assert "reaped ld-stale (local_dask, reap_test): stale (its process died)" in out
    assert "2 runner(s) reaped" in out
    assert procs["ld-expired"].wait(timeout=10) is not None
    assert procs["ld-current"].poll() is None
    assert json.loads(paths["ld-expired"].read_text())["status"] == "stopped"
    assert json.loads(paths["ld-stale"].read_text())["status"] == "stopped"
    assert json.loads(paths["ld-current"].read_text())["status"] == "running"
