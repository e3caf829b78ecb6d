"""Parsing a ``dags/`` file imports no heavy module: what the dag-processor pays on every parse.

Airflow 3's dag-processor imports Airflow once and forks a child per parse; the child imports
what the file imports. This test does the same (one subprocess that imports Airflow, then a
fork per file) and fails when parsing a file imports a module the parse does not need — a
backend's client library, Dask, pandas, pydantic-settings — or the file does not parse.
docs/benchmarks.md ("Parse time") has the measured cost per file.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

#: Top-level modules (or dotted prefixes) no DAG file may import at parse time.
HEAVY = (
    "dask",
    "distributed",
    "pandas",
    "pyarrow",
    "numpy",
    "boto3",
    "botocore",
    "kubernetes",
    "kubernetes_asyncio",
    "google.cloud.dataproc_v1",
    "airflow.providers.google",
    "airflow.providers.amazon",
    "airflow.providers.cncf",
    "paramiko",
    "asyncssh",
    "labgrid",
    "pydantic_settings",
)

_SCRIPT = r"""
import json, os, sys
from pathlib import Path

import airflow, airflow.sdk
from airflow.dag_processing.dagbag import DagBag

folder, heavy = Path(sys.argv[1]), tuple(json.loads(sys.argv[2]))
sys.path.append(str(folder))  # as the dag-processor puts the bundle's folder
found = {}
for path in sorted(folder.glob("*.py")):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        before = set(sys.modules)
        bag = DagBag(dag_folder=str(path))
        new = sorted(n for n in set(sys.modules) - before if n in heavy or n.startswith(tuple(h + "." for h in heavy)))
        os.write(write_fd, json.dumps({"heavy": new, "errors": {str(k): str(v)[:500] for k, v in bag.import_errors.items()}}).encode())
        os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    found[path.name] = json.loads(data)
print(json.dumps(found))
"""


def test_no_dag_file_imports_a_heavy_module_at_parse_time() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(REPO / "dags"), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(found) == len(list((REPO / "dags").glob("*.py")))
    errors = {name: r["errors"] for name, r in found.items() if r["errors"]}
    assert not errors, f"DAG files that do not parse: {errors}"
    heavy = {name: r["heavy"] for name, r in found.items() if r["heavy"]}
    assert not heavy, f"heavy modules imported while parsing: {heavy}"


def test_every_airflow_process_holds_the_catalog_models_before_a_parse_forks() -> None:
    """The provider info (loaded by ``import airflow``) imports the catalog's models, so a
    dag-processor child does not build them for every parse (get_provider_info.py)."""
    code = "import sys, airflow; print('airflow_provider_runners.core.catalog' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"
