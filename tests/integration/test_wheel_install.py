"""Cloud Composer installs the provider from a wheel: build it, install only the wheel and the
demo set (the base install + the `examples` extra, requirements/demo.lock: no cloud SDK) in a
fresh virtualenv, and import every example DAG from outside the repo — DAG files must parse with
no backend extra installed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
UV = Path(sys.executable).with_name("uv")

CHECK = r"""
import json, os, sys
import airflow_provider_runners
assert "/site-packages/" in airflow_provider_runners.__file__, airflow_provider_runners.__file__
from airflow.dag_processing.dagbag import DagBag
from airflow_provider_runners.core.catalog import load_catalog
from importlib.metadata import entry_points
sys.path.insert(0, sys.argv[1])  # Airflow puts the DAGs folder on sys.path (dags import sales_etl)
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {k: v[-300:] for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "environments": sorted(load_catalog().environments),
    "providers": sorted(ep.name for ep in entry_points(group="apache_airflow_provider")
                        if ep.value.startswith("airflow_provider_runners")),
    "module": airflow_provider_runners.__file__,
}))
"""


@pytest.mark.skipif(not UV.exists(), reason="uv is installed into .venv by the Makefile")
def test_every_dag_imports_with_only_the_wheel_installed(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([str(UV), "build", "--wheel", "-o", str(dist), str(REPO)], check=True, capture_output=True)
    (wheel,) = dist.glob("airflow_provider_runners-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "airflow_provider_runners/catalogs/default.yaml" in names
    assert not any(n.startswith(("tests/", "dags/", "benchmarks/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [str(UV), "pip", "install", "-q", "--python", str(python)]
    subprocess.run([*install, "-r", str(REPO / "requirements/demo.lock")], check=True, capture_output=True)
    subprocess.run([*install, "--no-deps", str(wheel)], check=True, capture_output=True)

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    result = subprocess.run(
        [str(python), "-c", CHECK, str(REPO / "dags")],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert {"local_dask_etl", "local_dask_etl_failure"} <= set(report["dags"])
    assert report["environments"] == ["dev", "local", "prod"]
    assert report["providers"] == ["provider_info"]
    assert str(venv) in report["module"]
