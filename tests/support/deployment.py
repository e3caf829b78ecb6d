"""A real Airflow 3 deployment for end-to-end and fault tests: scheduler, dag-processor,
triggerer, api-server (and a Celery worker with the CeleryExecutor) as separate processes,
metadata on PostgreSQL, started here and stopped after.

PostgreSQL must listen on 127.0.0.1:5432 with trust auth for user ``postgres`` and Redis on
127.0.0.1:6379 (as on the CI machine; ``scripts/ensure-services.sh`` sets both up). Each
deployment gets a database and a Celery queue of its own; the database is dropped afterwards.

``deployment(executor="CeleryExecutor" | "LocalExecutor", ...)`` is shared by tests/e2e (the
CeleryExecutor, as docker-compose.yaml runs it) and tests/chaos (which kills its parts).
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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.support.abandoned import reap_abandoned

ERP_SECRET = "erp-E2E-SECRET-5c0a"
HOST_SECRET = "host-E2E-SECRET-9e1f"
#: worker_env values of the runners_dask_secret Connection (tests/dags/runners_test_deploy_dags.py).
DASK_ENV_SECRETS = {"ETL_API_TOKEN": "tok-E2E-SECRET-77d2", "WAREHOUSE_URL": "whs-E2E-SECRET-3b8a"}
HIL_PLACES = {"imx8-a": {"tags": {"board": "imx8"}}, "stm32-a": {"tags": {"board": "stm32"}}}
PG_DSN = os.environ.get("RUNNERS_E2E_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("RUNNERS_E2E_REDIS", "redis://127.0.0.1:6379/0")
CELERY_SERVICES = ("scheduler", "dag-processor", "triggerer", "api-server", "celery worker")
LOCAL_SERVICES = ("scheduler", "dag-processor", "triggerer", "api-server")
#: Kept for callers of the e2e conftest.
SERVICES = CELERY_SERVICES
E2E_DAG_FILES = (
    "dags/local_dask_etl.py",
    "dags/sales_etl.py",
    "dags/dedicated_host_extract.py",
    "dags/extract_job.py",
    "dags/hil_bench_suite.py",
    "tests/dags/runners_test_host_dags.py",
    "tests/dags/runners_leak_test_dags.py",
    "tests/dags/runners_test_deploy_dags.py",
)


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
    executor: str = "CeleryExecutor"

    def client(self) -> httpx.Client:
        """An api-server client that retries a request that timed out or found no server (a
        loaded machine, a restarting component): every call below is safe to repeat."""
        return httpx.Client(base_url=self.api, timeout=60, transport=_RetryingTransport())

    def log(self, service: str) -> str:
        return (self.home / f"{service}.log").read_text(errors="replace")

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until the api-server answers its health endpoint (``RUNNERS_E2E_STARTUP_TIMEOUT``
        seconds, default 240: a machine shared with other test sessions may need more)."""
        if timeout is None:
            timeout = float(os.environ.get("RUNNERS_E2E_STARTUP_TIMEOUT", "240"))
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
        """Trigger a run (its id chosen here, so that a retried POST cannot make a second one)."""
        run_id = f"manual__{datetime.now(UTC).isoformat()}_{os.urandom(3).hex()}"
        with self.client() as http:
            response = http.post(
                f"/api/v2/dags/{dag_id}/dagRuns",
                json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
            )
            assert response.status_code in (200, 201, 409), response.text
            return run_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        with self.client() as http:
            return str(http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while time.monotonic() < deadline:
                state = http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
                if state in ("success", "failed"):
                    return str(state)
                time.sleep(2)
        raise AssertionError(f"{dag_id}/{run_id} did not finish in {timeout}s")

    def wait_for_runs(
        self, runs: Iterable[tuple[str, str]], timeout: float = 600, poll: float = 3
    ) -> dict[tuple[str, str], str]:
        """Final state of every (dag_id, run_id); one list call per DAG per poll."""
        pending = set(runs)
        done: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while pending and time.monotonic() < deadline:
                for dag_id in sorted({d for d, _ in pending}):
                    body = http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1000}).json()
                    for run in body["dag_runs"]:
                        key = (dag_id, run["dag_run_id"])
                        if key in pending and run["state"] in ("success", "failed"):
                            done[key] = run["state"]
                            pending.discard(key)
                if pending:
                    time.sleep(poll)
        if pending:
            states = {key: self.run_state(*key) for key in sorted(pending)[:10]}
            raise AssertionError(f"{len(pending)} runs did not finish in {timeout}s, e.g. {states}")
        return done

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        with self.client() as http:
            body = http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        return list(body["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def wait_for_task(
        self, dag_id: str, run_id: str, task_id: str, states: Iterable[str], timeout: float = 120
    ) -> dict[str, Any]:
        """The task instance, once it is in one of ``states``."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            for ti in self.task_instances(dag_id, run_id):
                if ti["task_id"] == task_id:
                    seen = ti["state"]
                    if seen in wanted:
                        return ti
            time.sleep(0.3)
        raise AssertionError(f"{dag_id}/{run_id} {task_id} never reached {sorted(wanted)} (last: {seen})")

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        """What "Mark as failed/success" in the UI does: PATCH the DAG run."""
        with self.client() as http:
            response = http.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": state})
        assert response.status_code == 200, response.text

    # -- the processes --------------------------------------------------------------------------
    def start(self, service: str) -> None:
        _start(self, service)

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        """Kill the service's whole process group, as losing its container would."""
        proc = self.procs[service]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def restart(self, service: str) -> None:
        self.start(service)


class _RetryingTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(4):
            try:
                return super().handle_request(request)
            except (httpx.TimeoutException, httpx.ConnectError, httpx.RemoteProtocolError):
                if attempt == 3:
                    raise
                time.sleep(2 * (attempt + 1))
        raise AssertionError("unreachable")


def _start(stack: Stack, service: str) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    log = open(stack.home / f"{service}.log", "ab")  # noqa: SIM115 - kept open for the process's life
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


def require_services() -> None:
    """Skip (or, with RUNNERS_E2E_REQUIRED set, as in CI, fail) without PostgreSQL and Redis."""
    if not _services_reachable():
        message = "PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not reachable: run scripts/ensure-services.sh"
        if os.environ.get("RUNNERS_E2E_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def deployment(
    *,
    executor: str = "CeleryExecutor",
    parallelism: int = 4,
    dag_files: Iterable[str] = E2E_DAG_FILES,
    extra_env: Mapping[str, str] | None = None,
    prefix: str = "runners-e2e-",
    database_prefix: str = "runners_e2e_",
) -> Iterator[Stack]:
    """Start a deployment in a fresh AIRFLOW_HOME and database; stop it and drop the database after.

    ``dag_files`` are repository paths copied into the DAGs folder. ``executor`` is
    ``CeleryExecutor`` (a Celery worker with ``parallelism`` slots on a queue of its own) or
    ``LocalExecutor`` (``parallelism`` task processes forked by the scheduler). ``prefix`` names
    the temporary AIRFLOW_HOME, ``database_prefix`` the database (this process's pid and a unique
    suffix are added); what runs of the same prefixes left when they were killed is removed first.
    """
    if executor not in ("CeleryExecutor", "LocalExecutor"):
        raise ValueError(f"executor must be CeleryExecutor or LocalExecutor, got {executor!r}")
    require_services()
    reap_abandoned(prefix, database_prefix)  # what killed runs left (tests/support/abandoned.py)
    home = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    (home / "dags").mkdir()
    # A real labgrid coordinator with one bench per board for dags/hil_bench_suite.py.
    from airflow_provider_runners.backends.labgrid.coordinator import LocalCoordinator

    coordinator = LocalCoordinator(home / "labgrid", places=HIL_PLACES, schedule_interval=0.5).start()
    for name in dag_files:
        shutil.copy(REPO / name, home / "dags" / Path(name).name)
    tag = f"{os.getpid()}_{os.urandom(3).hex()}"
    database = f"{database_prefix}{tag}"
    _psql(f"DROP DATABASE IF EXISTS {database}")
    _psql(f"CREATE DATABASE {database}")
    api_port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{database}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(parallelism),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"runners-e2e-{tag}",
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
        "AIRFLOW_CONN_RUNNERS_DASK_SECRET": json.dumps(
            {"conn_type": "runners_local_dask", "extra": {"worker_env": DASK_ENV_SECRETS}}
        ),
        "RUNNERS_HIL_CONN_ID": "runners_hil_e2e",
        "AIRFLOW_CONN_RUNNERS_HIL_E2E": json.dumps(
            {"conn_type": "runners_labgrid", "host": "127.0.0.1", "port": coordinator.port}
        ),
        **dict(extra_env or {}),
    }
    stack = Stack(home=home, env=env, api=f"http://127.0.0.1:{api_port}", executor=executor)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    try:
        for service in CELERY_SERVICES if executor == "CeleryExecutor" else LOCAL_SERVICES:
            _start(stack, service)
        stack.wait_healthy()
        yield stack
    finally:
        for proc in stack.procs.values():
            _stop(proc)
        coordinator.stop()
        _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
