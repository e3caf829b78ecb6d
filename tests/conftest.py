"""Test-wide setup: a throwaway AIRFLOW_HOME, set before Airflow is imported anywhere."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

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
