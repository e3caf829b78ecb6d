"""The ssh backend through real Airflow (dag.test()): a host of a pool leased over real SSH
(OpenSSH's sshd on a free port, tests/support/sshd.py), commands with secrets, teardown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AIRFLOW_HOME
from tests.integration.conftest import EVIDENCE, chain_for, run_dag, ti_states, xcoms
from tests.support.sshd import SshServer, sshd_available, start_sshd
from tests.unit.test_ssh_backend import sleepers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sshd_available(), reason="needs OpenSSH's sshd (scripts/ensure-sshd.sh)"),
]
SECRET = "ssh-SECRET-4e1f0a"
SUCCESS, FAILED = "success", "failed"


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    server: SshServer = start_sshd(tmp_path / "sshd")
    root = tmp_path / "root"
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_SSH_TEST",
        json.dumps(
            {
                "conn_type": "runners_ssh",
                "host": f"{server.host}:{server.port}",
                "login": server.login,
                "extra": {
                    "private_key": server.private_key,
                    "known_hosts": server.known_hosts,
                    "workspace_root": str(root),
                },
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNNERS_SSH_TEST_SECRET", json.dumps({"conn_type": "generic", "password": SECRET})
    )
    yield root
    server.stop()


def test_commands_on_a_leased_ssh_host_and_nothing_left(
    dagbag: Any, pool: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    dr = run_dag(dagbag, "runners_test_ssh_commands")
    assert ti_states(dr) == {
        "host.provision": SUCCESS,
        "host.provisioned": SUCCESS,  # the provision's empty teardown leaf (docs/architecture.md)
        "host.write": SUCCESS,
        "host.read": SUCCESS,
        "host.fails": FAILED,
        "host.slow": FAILED,
        "host.teardown": SUCCESS,
    }
    out = capfd.readouterr().out
    assert "user=etl token=***" in out  # the command got the secret, masked in the log
    assert "data" in out  # read saw what write left in the workspace
    assert "exited with code 3" in out
    assert "did not finish within 2s; it was cancelled on the runner" in out
    assert sleepers("120", under=pool) == []  # the timed-out command's process group is gone
    assert sorted(p.name for p in pool.iterdir()) == []  # lease, workspace and pid files removed
    report = chain_for("runners_test_ssh_commands", dr.run_id)
    assert report.ok, report.problems
    provision = next(e for e in report.entries if e["event"] == "provision")
    assert provision["facts"]["user"]
    assert provision["facts"]["host"].startswith("127.0.0.1:")
    haystacks = {
        "task output": out,
        "xcom": json.dumps(xcoms("runners_test_ssh_commands", dr.run_id), default=str),
    }
    for path in [*EVIDENCE.rglob("*"), *(AIRFLOW_HOME / "logs").rglob("*")]:
        if path.is_file():
            haystacks[str(path)] = path.read_text(errors="replace")
    for where, text in haystacks.items():
        assert SECRET not in text, f"secret leaked into {where}"
        assert "OPENSSH PRIVATE KEY" not in text, f"the private key leaked into {where}"
