"""Test-wide setup: a throwaway AIRFLOW_HOME, set before Airflow is imported anywhere."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="runners-tests-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__RUNNERS__EVIDENCE_PATH"] = "file://" + str(_HOME / "runners" / "evidence")
os.environ.pop("AIRFLOW__RUNNERS__CATALOG_PATH", None)
os.environ.pop("AIRFLOW__RUNNERS__ENVIRONMENT", None)
(_HOME / "dags").mkdir(parents=True, exist_ok=True)

REPO = Path(__file__).resolve().parent.parent


def local_dask_daemons(under: Path) -> list[str]:
    """Command lines of running local_dask daemons whose state file lies under ``under``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "airflow_provider_runners.backends.local_dask.daemon" in cmdline and str(under) in cmdline:
            found.append(cmdline)
    return found


AIRFLOW_HOME = _HOME
# Airflow puts the DAGs folder on sys.path (the dag-processor and task runner do, for each bundle);
# DAG files import their job code from it (dags/sales_etl.py). DagBags built by tests get the same,
# from the test DAGs folder, which holds a copy of dags/ as a deployment's would.
for _source in (REPO / "dags").glob("*.py"):
    shutil.copy(_source, _HOME / "dags" / _source.name)
sys.path.append(str(_HOME / "dags"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-at",
        default=os.environ.get("RUNNERS_TEST_CLOCK_AT"),
        help="run the tests with this process's wall clock moved to an ISO instant, ticking from there "
        "(e.g. 2026-12-31T23:59:00+00:00: a year change during the run). Subprocesses keep the real "
        "clock. docs/testing.md says what the last sweep found.",
    )


def pytest_configure(config: pytest.Config) -> None:
    clock_at = config.getoption("--clock-at")
    if not clock_at:
        return
    try:
        import time_machine
    except ImportError as err:  # pragma: no cover - the `test` extra brings it
        raise pytest.UsageError("--clock-at needs time-machine (the `test` extra)") from err
    instant = datetime.fromisoformat(clock_at)
    if instant.tzinfo is None:
        raise pytest.UsageError(f"--clock-at {clock_at!r}: give a UTC offset, e.g. {clock_at}+00:00")
    traveller = time_machine.travel(instant, tick=True)
    traveller.start()
    config.add_cleanup(traveller.stop)


def pytest_report_header(config: pytest.Config) -> str | None:
    clock_at = config.getoption("--clock-at")
    return f"wall clock moved to {clock_at} (ticking)" if clock_at else None
