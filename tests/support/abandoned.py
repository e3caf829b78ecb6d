"""What a killed test or benchmark run left of its deployments: their processes and databases.

``tests/support/deployment.py`` stops its processes and drops its database in a ``finally``,
which a SIGKILL (a CI timeout, ``kill -9``, an OOM kill) skips. Both carry the pid of the process
that started them: the database is ``<database_prefix><pid>_<hex>``, the AIRFLOW_HOME
``<tmp>/<prefix><pid>-<random>``, which every process of the deployment has in its environment
(the labgrid coordinator in its command line). :func:`reap_abandoned`, called when a deployment
starts, kills those processes and drops those databases whose owner is no longer alive; the
deployments of live owners (another pytest worker, a benchmark) are left alone.

By hand: ``pkill -9 -f '\\.venv/bin/airflow'`` and, in psql,
``DROP DATABASE runners_e2e_<pid>_<hex> WITH (FORCE)``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_of(proc: Path, marker: re.Pattern[bytes]) -> int | None:
    for name in ("environ", "cmdline"):
        try:
            found = marker.search((proc / name).read_bytes())
        except OSError:
            return None
        if found:
            return int(found.group(1))
    return None


def reap_abandoned(prefix: str, database_prefix: str) -> list[str]:
    """Kill the processes and drop the databases of deployments whose owner died; what was reaped."""
    import psycopg2

    reaped: list[str] = []
    home = re.escape(f"{tempfile.gettempdir()}/{prefix}".encode())
    marker = re.compile(home + rb"(\d+)-")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        owner = _owner_of(proc, marker)
        if owner is not None and not alive(owner):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGKILL)
                reaped.append(f"process {proc.name} (owner {owner})")
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (database_prefix,))
            for (name,) in cur.fetchall():
                owned = re.fullmatch(re.escape(database_prefix) + r"(\d+)_[0-9a-f]+", name)
                if owned and not alive(int(owned.group(1))):
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    reaped.append(f"database {name}")
    finally:
        conn.close()
    return reaped
