"""Test-wide setup: a throwaway AIRFLOW_HOME, set before Airflow is imported anywhere."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

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


#: The file the fault suite's rows come back through under ``pytest -n``, and its size before the run.
_CHAOS_ROWS = pytest.StashKey[tuple[Path, int]]()


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_xdist_controller(config):
        # The fault suite's rows are recorded in a worker; they come back through this file
        # (tests/chaos/harness.py: record appends) to be printed at the end, as a serial run
        # prints them: only the lines this run adds, if the caller named a file of its own.
        rows = Path(os.environ.setdefault("RUNNERS_CHAOS_REPORT", str(_HOME / "chaos-rows.jsonl")))
        config.stash[_CHAOS_ROWS] = (rows, rows.stat().st_size if rows.is_file() else 0)
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


#: Tests that start a real deployment (tests/chaos, tests/e2e) run one after another on one
#: pytest-xdist worker (``make test`` runs ``pytest -n 2``): each deployment is five Airflow
#: processes, and two at once on 2 CPUs would slow the fault tests' timings.
DEPLOYMENT_DIRS = ("tests/chaos/", "tests/e2e/")

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pragma: no cover - the `test` extra brings pytest-xdist
    pass
else:

    class _FileOrDeploymentScheduling(LoadScopeScheduling):
        """pytest-xdist's ``--dist loadfile`` (a file's tests on one worker, so its module
        fixtures start once), with every test on a real deployment in one scope."""

        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(DEPLOYMENT_DIRS):
                return "deployment"
            return nodeid.split("::", 1)[0]

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        # Only in place of ``load`` (what ``-n`` alone means) and ``loadfile``; an explicit
        # ``--dist each`` or ``loadgroup`` keeps pytest-xdist's own scheduler.
        if config.getvalue("dist") not in ("load", "loadfile"):
            return None
        return _FileOrDeploymentScheduling(config, log)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows, offset = config.stash.get(_CHAOS_ROWS, (None, 0))
    if rows is None or not rows.is_file():
        return
    with rows.open(encoding="utf-8") as fh:
        fh.seek(offset)
        lines = fh.read().splitlines()
    if lines:
        terminalreporter.section("fault suite (docs/reliability.md)")
        for line in lines:
            terminalreporter.line(line)


@pytest.fixture(autouse=True)
def _no_backend_kept_across_tests() -> None:
    """Triggers reuse a Connection's backend for a minute (triggers/shared_backend.py); each test
    defines its own Connections and fakes, so each starts with none kept."""
    from airflow_provider_runners.triggers import shared_backend

    shared_backend.forget()
