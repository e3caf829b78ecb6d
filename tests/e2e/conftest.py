"""A real Airflow 3 deployment for end-to-end tests: scheduler, dag-processor, triggerer,
api-server and a Celery worker as separate processes (CeleryExecutor on Redis, metadata on
PostgreSQL), started here and stopped after.

PostgreSQL must listen on 127.0.0.1:5432 with trust auth for user ``postgres`` and Redis on
127.0.0.1:6379 (as on the CI machine; ``scripts/ensure-services.sh`` sets both up). Each session
gets a database and a Celery queue of its own; the database is dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO

ERP_SECRET = "erp-E2E-SECRET-5c0a"
HOST_SECRET = "host-E2E-SECRET-9e1f"
HIL_PLACES = {"imx8-a": {"tags": {"board": "imx8"}}, "stm32-a": {"tags": {"board": "stm32"}}}
PG_DSN = os.environ.get("RUNNERS_E2E_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("RUNNERS_E2E_REDIS", "redis://127.0.0.1:6379/0")
SERVICES = ("scheduler", "dag-processor", "triggerer", "api-server", "celery worker")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _psql(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    api: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=30)

    def log(self, service: str) -> str:
        return (self.home / f"{service}.log").read_text(errors="replace")

    def wait_healthy(self, timeout: float = 90) -> None:
        """Wait until the api-server answers its health endpoint."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api}/api/v2/monitor/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"api-server {self.api} did not come up:\n{self.log('api-server')[-3000:]}")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while time.monotonic() < deadline:
                response = http.get(f"/api/v2/dags/{dag_id}")
                if response.status_code == 200:
                    return
                time.sleep(1)
        raise AssertionError(
            f"{dag_id} never appeared in the api-server; dag-processor log:\n{self.log('dag-processor')[-3000:]}"
        )

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        with self.client() as http:
            response = http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
            assert response.status_code in (200, 201), response.text
            return str(response.json()["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while time.monotonic() < deadline:
                state = http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
                if state in ("success", "failed"):
                    return str(state)
                time.sleep(2)
        raise AssertionError(f"{dag_id}/{run_id} did not finish in {timeout}s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        with self.client() as http:
            body = http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


def _start(stack: Stack, service: str) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    log = open(stack.home / f"{service}.log", "wb")  # noqa: SIM115 - kept open for the process's life
    stack.procs[service] = subprocess.Popen(
        [airflow, *service.split()],
        env=stack.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _services_reachable() -> bool:
    try:
        _psql("SELECT 1")
        import redis

        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


@pytest.fixture(scope="session")
def airflow_stack() -> Iterator[Stack]:
    if not _services_reachable():
        message = "PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not reachable: run scripts/ensure-services.sh"
        if os.environ.get("RUNNERS_E2E_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    home = Path(tempfile.mkdtemp(prefix="runners-e2e-"))
    (home / "dags").mkdir()
    # A real labgrid coordinator with one bench per board for dags/hil_bench_suite.py.
    from airflow_provider_runners.backends.labgrid.coordinator import LocalCoordinator

    coordinator = LocalCoordinator(home / "labgrid", places=HIL_PLACES, schedule_interval=0.5).start()
    for name in (
        "local_dask_etl.py",
        "sales_etl.py",
        "dedicated_host_extract.py",
        "extract_job.py",
        "hil_bench_suite.py",
    ):
        shutil.copy(REPO / "dags" / name, home / "dags" / name)
    shutil.copy(REPO / "tests" / "dags" / "runners_test_host_dags.py", home / "dags")
    database = f"runners_e2e_{os.getpid()}"
    _psql(f"DROP DATABASE IF EXISTS {database}")
    _psql(f"CREATE DATABASE {database}")
    api_port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{database}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"runners-e2e-{os.getpid()}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{PG_DSN}/{database}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "e2e-" + os.urandom(16).hex(),
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__RUNNERS__EVIDENCE_PATH": "file://" + str(home / "runners" / "evidence"),
        # Secrets the host commands get at run time (tests/e2e/test_deployment.py looks for leaks).
        "AIRFLOW_CONN_ERP_SOURCE": json.dumps({"conn_type": "generic", "password": ERP_SECRET}),
        "AIRFLOW_CONN_RUNNERS_HOST_SECRET": json.dumps({"conn_type": "generic", "password": HOST_SECRET}),
        "RUNNERS_HIL_CONN_ID": "runners_hil_e2e",
        "AIRFLOW_CONN_RUNNERS_HIL_E2E": json.dumps(
            {"conn_type": "runners_labgrid", "host": "127.0.0.1", "port": coordinator.port}
        ),
    }
    stack = Stack(home=home, env=env, api=f"http://127.0.0.1:{api_port}")
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    try:
        for service in SERVICES:
            _start(stack, service)
        stack.wait_healthy()
        yield stack
    finally:
        for proc in stack.procs.values():
            _stop(proc)
        coordinator.stop()
        _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
