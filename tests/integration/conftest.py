"""Real Airflow 3 (SQLite metadata DB, dag.test()) and real Dask processes for integration tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AIRFLOW_HOME, REPO, local_dask_daemons

DAGS = AIRFLOW_HOME / "dags"
STATE_DIR = AIRFLOW_HOME / "runners" / "local_dask"
EVIDENCE = AIRFLOW_HOME / "runners" / "evidence"

SECRET_PASSWORD = "pw-SECRET-8a7f1c"
SECRET_TOKEN = "tok-SECRET-51d0e9"
SECRET_CONN = json.dumps(
    {
        "conn_type": "runners_local_dask",
        "password": SECRET_PASSWORD,
        "extra": {"worker_env": {"ETL_API_TOKEN": SECRET_TOKEN}},
    }
)


@pytest.fixture(scope="package", autouse=True)
def secret_connection() -> Any:
    """The Connection the secrets test uses, defined only while the integration tests run."""
    os.environ["AIRFLOW_CONN_RUNNERS_SECRET_TEST"] = SECRET_CONN
    yield
    os.environ.pop("AIRFLOW_CONN_RUNNERS_SECRET_TEST", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrated metadata DB and a DAGs folder holding dags/ and tests/dags/."""
    for source in (REPO / "dags", REPO / "tests" / "dags"):
        for path in source.glob("*.py"):
            shutil.copy(path, DAGS / path.name)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def run_dag(dagbag: Any, dag_id: str, conf: dict[str, Any] | None = None, **test_kwargs: Any) -> Any:
    """Run one DAG run with dag.test() (``test_kwargs``: e.g. a fixed ``logical_date``); return the DagRun."""
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not in the DagBag: {dagbag.import_errors}"
    return dag.test(run_conf=conf, **test_kwargs)


def ti_states(dag_run: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}


def xcoms(dag_id: str, run_id: str) -> list[Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
        ).all()
        return [(row.task_id, row.key, row.value) for row in rows]


def state_files() -> list[Path]:
    return sorted(STATE_DIR.glob("*.json")) if STATE_DIR.exists() else []


def live_daemons() -> list[str]:
    """Command lines of running local_dask daemons started from this test session."""
    return local_dask_daemons(STATE_DIR)


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def chain_for(dag_id: str, run_id: str) -> Any:
    from airflow_provider_runners.evidence.ledger import iter_chains, verify_chain

    chains = list(iter_chains(dag_id=dag_id, run_id=run_id))
    assert len(chains) == 1, f"expected one evidence chain for {dag_id}/{run_id}, found {chains}"
    return verify_chain(chains[0])


@pytest.fixture(autouse=True)
def no_leaked_runners() -> Any:
    """Every integration test must leave no local_dask daemon behind."""
    yield
    assert wait_for(lambda: not live_daemons(), timeout=15), f"leaked runners: {live_daemons()}"
