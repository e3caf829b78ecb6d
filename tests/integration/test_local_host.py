"""local_host + RunnerCommandOperator through real Airflow (dag.test()) and real subprocesses."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import AIRFLOW_HOME
from tests.integration.conftest import EVIDENCE, chain_for, run_dag, ti_states, xcoms

pytestmark = pytest.mark.integration

HOST_DIR = AIRFLOW_HOME / "runners" / "local_host"
HOST_SECRET = "host-SECRET-77c1e4"
ERP_SECRET = "erp-SECRET-0b9d3a"
SUCCESS, FAILED = "success", "failed"
LOGICAL_DATE = datetime(2027, 1, 1, 23, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def host_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_HOST_SECRET", json.dumps({"conn_type": "generic", "password": HOST_SECRET})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ERP_SOURCE", json.dumps({"conn_type": "generic", "password": ERP_SECRET})
    )


def host_files() -> list[str]:
    return sorted(p.name for p in HOST_DIR.iterdir()) if HOST_DIR.exists() else []


def command_processes() -> list[str]:
    """Processes our test commands start (``sleep 120``) that are still alive."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[:2] == ["sleep", "120"]:
            found.append(f"{proc.pid}: {' '.join(cmdline)}")
    return found


def test_extract_dag_restarts_from_checkpoints_and_tears_the_host_down(
    dagbag: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    url = f"file://{tmp_path}/stage"
    conf = {"months": 2, "rows_per_day": 150, "url": url, "crash_once_after_chunk": 1}
    # A fixed logical date, not today: the last evening of a year, so the partitions cross a year
    # and the run sits near midnight UTC.
    dr = run_dag(dagbag, "dedicated_host_extract", conf, logical_date=LOGICAL_DATE)
    states = ti_states(dr)
    assert str(dr.state) == SUCCESS, states
    assert states["host.teardown"] == SUCCESS
    assert states["verify_partitions"] == SUCCESS
    values = {(t, k): v for t, k, v in xcoms("dedicated_host_extract", dr.run_id)}
    summary = values[("verify_partitions", "return_value")]
    assert sorted(summary["partitions"]) == ["2026-11", "2026-12"]  # the two months before the run
    # Each month written once: 150 rows x days, minus the DLQ'd ones; the retry resumed, not redid.
    for month, days in (("2026-11", 30), ("2026-12", 31)):
        part = summary["partitions"][month]
        assert part["rows"] + part["dlq"] == 150 * days
        assert part["dlq"] > 0
        dlq = (tmp_path / "stage" / "_dlq" / "erp" / "ledger" / f"month={month}").glob("*.jsonl")
        reasons = {json.loads(line)["dlq_reason"] for f in dlq for line in f.read_text().splitlines()}
        assert reasons <= {"negative amount", "unknown currency 'XXX'", "missing customer_id"}
        assert reasons
    out = capfd.readouterr().out
    assert out.count("injected crash after chunk 1") == 2
    assert out.count("already done") == 4  # chunks 0 and 1 of both months skipped on the retry
    assert host_files() == []  # workspace, record and pid files removed
    report = chain_for("dedicated_host_extract", dr.run_id)
    assert report.ok, report.problems
    entries = report.entries
    events = [(e["event"], e["outcome"]) for e in entries]
    assert events.count(("work", "up_for_retry")) == 2
    assert events[-1] == ("teardown", "success")
    provision = next(e for e in entries if e["event"] == "provision")
    facts = provision["facts"]
    assert facts["network_profile"] == {"name": "private", "kind": "local"}
    assert facts["image"]["ref"] == "hardened-base@2026.11"
    assert facts["image"]["digest"].startswith("sha256:")
    assert list(facts["driver_bundles"]) == ["hana-jdbc@2.19.16"]
    work = [e for e in entries if e["event"] == "work" and e["outcome"] == "success"]
    assert {e["facts"]["exit_code"] for e in work} == {0}
    assert all(e["cost"]["usd"] == 0.0 for e in entries if e.get("cost"))  # local host: $0
    everything = out + json.dumps(entries) + json.dumps([list(x) for x in values.items()], default=str)
    assert ERP_SECRET not in everything


def test_commands_exit_codes_timeouts_and_secrets(dagbag: Any, capfd: pytest.CaptureFixture[str]) -> None:
    dr = run_dag(dagbag, "runners_test_host_commands")
    states = ti_states(dr)
    assert states == {
        "host.provision": SUCCESS,
        "host.ok": SUCCESS,
        "host.fails": FAILED,
        "host.slow": FAILED,
        "host.teardown": SUCCESS,
        "host.provisioned": SUCCESS,
    }
    out = capfd.readouterr().out
    assert f"token_len={len(HOST_SECRET)}" in out  # the command got the secret at run time
    assert "user=etl" in out
    assert "exited with code 3" in out
    assert "about to fail" in out
    assert "did not finish within 2s; it was cancelled on the runner" in out
    assert command_processes() == []  # the timed-out command's whole process group is gone
    assert host_files() == []
    report = chain_for("runners_test_host_commands", dr.run_id)
    assert report.ok, report.problems
    by_task = {(e["task_id"], e["outcome"]): e for e in report.entries}
    assert by_task[("host.fails", "failed")]["facts"]["exit_code"] == 3
    assert by_task[("host.slow", "failed")]["facts"]["timed_out"] is True
    haystacks = {
        "task output": out,
        "xcom": json.dumps(xcoms("runners_test_host_commands", dr.run_id), default=str),
    }
    for path in [*EVIDENCE.rglob("*"), *(AIRFLOW_HOME / "logs").rglob("*")]:
        if path.is_file():
            haystacks[str(path)] = path.read_text(errors="replace")
    for where, text in haystacks.items():
        assert HOST_SECRET not in text, f"secret leaked into {where}"
    assert "token=***" in out  # printed by the command, masked in the task log


def test_command_environment_is_minimal(airflow_db: Path, tmp_path: Path) -> None:
    """The worker's environment (Airflow config, DB URLs) never reaches a host command."""
    import threading

    from airflow_provider_runners.core.backend import CommandRequest
    from tests.unit.test_local_host import make_host

    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_TEST_ONLY"] = "postgresql://u:pw@db/airflow"
    try:
        backend, handle = make_host(tmp_path)
        lines: list[str] = []
        result = backend.run_command(
            handle,
            CommandRequest(command="env", name="env-1", env={"X": "1"}),
            lines.append,
            threading.Event(),
        )
    finally:
        os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_TEST_ONLY")
    assert result.exit_code == 0
    names = {line.split("=", 1)[0] for line in lines if "=" in line}
    assert {"PATH", "RUNNER_ID", "RUNNER_WORKSPACE", "X"} <= names
    assert not [n for n in names if n.startswith("AIRFLOW")], names
    backend.teardown(handle)
