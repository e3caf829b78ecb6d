"""What killed runs left of their deployments is removed by the next one (tests/support/abandoned.py)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import psycopg2

from tests.support.abandoned import reap_abandoned
from tests.support.deployment import require_services

PREFIX, DB_PREFIX = "runners-reaptest-", "runners_reaptest_"


def _sql(query: str, *params: str) -> list[tuple[str, ...]]:
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _databases() -> set[str]:
    return {
        name for (name,) in _sql("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", DB_PREFIX)
    }


def _create(name: str) -> None:
    _sql(f'CREATE DATABASE "{name}"')


def _process_of(owner: int) -> subprocess.Popen[bytes]:
    home = f"{tempfile.gettempdir()}/{PREFIX}{owner}-abc"
    env = {"PATH": os.environ["PATH"], "AIRFLOW_HOME": home}
    return subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)


def test_the_processes_and_databases_of_dead_owners_go_and_live_owners_keep_theirs() -> None:
    require_services()
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead, live = finished.pid, os.getpid()
    _create(f"{DB_PREFIX}{dead}_a1b2c3")
    _create(f"{DB_PREFIX}{live}_d4e5f6")
    orphan, kept = _process_of(dead), _process_of(live)
    try:
        reaped = reap_abandoned(PREFIX, DB_PREFIX)
        deadline = time.monotonic() + 5
        while orphan.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert orphan.returncode == -9
        assert kept.poll() is None
        assert f"{DB_PREFIX}{dead}_a1b2c3" not in _databases()
        assert f"{DB_PREFIX}{live}_d4e5f6" in _databases()
        assert sorted(reaped) == sorted(
            [f"process {orphan.pid} (owner {dead})", f"database {DB_PREFIX}{dead}_a1b2c3"]
        )
    finally:
        kept.kill()
        kept.wait()
        if orphan.poll() is None:
            orphan.kill()
        for name in _databases():
            _sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
