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

import os
import re
import tempfile

import psutil


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed owner whose parent has not reaped it)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def reap_abandoned(prefix: str, database_prefix: str) -> list[str]:
    """Kill the processes and drop the databases of deployments whose owner died; what was reaped."""
    import psycopg2

    reaped: list[str] = []
    marker = re.compile(re.escape(f"{tempfile.gettempdir()}/{prefix}") + r"(\d+)-")
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            found = marker.search(proc.environ().get("AIRFLOW_HOME", "")) or marker.search(
                " ".join(proc.cmdline())
            )
            if found and not alive(int(found.group(1))):
                proc.kill()
                reaped.append(f"process {proc.pid} (owner {found.group(1)})")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
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
