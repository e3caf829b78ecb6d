"""The Dockerfile cannot be built here (no Docker engine), so its install step is run instead:
the exact ``pip install`` line of its RUN instruction, with the files its COPY instructions put
in the image, into a fresh virtualenv (offline, from uv's cache; the flags are pip's, and uv's
pip interface takes them). The result must import the provider and every backend's SDK, hold
the lock's versions, and contain no test tool."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
UV = Path(sys.executable).with_name("uv")
DOCKERFILE = (REPO / "Dockerfile").read_text()

#: What the runtime image must be able to import: the provider, the example DAGs' libraries and
#: the SDK of every backend (local_dask/local_host/bench_http need only the base install).
RUNTIME_IMPORTS = [
    "airflow_provider_runners",
    "dask.distributed",
    "pandas",
    "pyarrow",
    "airflow.providers.google.cloud.hooks.dataproc",
    "airflow.providers.amazon.aws.hooks.base_aws",
    "boto3",
    "kubernetes",
    "airflow.providers.cncf.kubernetes",
    "labgrid",
]
#: Test tools that must stay out of the runtime image (the `test` extra). pytest itself is a
#: dependency of labgrid (its pytest plugin), so the test extra's pytest plugins stand for it.
TEST_ONLY = [
    "pytest_asyncio",
    "pytest_timeout",
    "moto",
    "ruff",
    "mypy",
    "playwright",
    "hypothesis",
    "kmock",
    "compose",
    "hadolint",
]

CHECK = r"""
import importlib, importlib.util, json, sys
from importlib.metadata import distributions
imports, test_only = json.loads(sys.argv[1])
for name in imports:
    importlib.import_module(name)
print(json.dumps({
    "present": [n for n in test_only if importlib.util.find_spec(n) is not None],
    "versions": {d.metadata["Name"].lower().replace("_", "-"): d.version for d in distributions()},
}))
"""


def _arg_default(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"Dockerfile has no default for ARG {name}"
    return match.group(1)


def _pip_line(stage: str = "runtime") -> list[str]:
    """The arguments of the ``RUN pip install`` line of ``stage`` (the target docker-compose.yaml builds)."""
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.MULTILINE | re.DOTALL))
    (run,) = re.findall(r"^RUN (pip install .+)$", stages[stage], re.MULTILINE)
    args = shlex.split(run.replace("${AIRFLOW_VERSION}", _arg_default("AIRFLOW_VERSION")))
    assert args[:2] == ["pip", "install"]
    return args[2:]


def _stage_copies(root: Path) -> None:
    """Lay out the files the COPY instructions put under /opt/airflow, rooted at ``root``."""
    copies = re.findall(r"^COPY --chown=\S+ (.+) (\S+)$", DOCKERFILE, re.MULTILINE)
    assert copies
    for sources, dest in copies:
        for source in sources.split():
            target = root / dest.removeprefix("/")
            if dest.endswith("/"):
                target = target / Path(source).name
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / source, target)


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([\w.-]+)==(\S+)$", (REPO / "requirements/lock.txt").read_text(), re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_the_image_extends_the_official_image_with_runtime_extras_only() -> None:
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in DOCKERFILE
    assert _locked()["apache-airflow"] == _arg_default("AIRFLOW_VERSION")
    args = _pip_line()
    assert args[args.index("-c") + 1] == "/opt/airflow/provider/requirements/lock.txt"
    (provider,) = [a for a in args if a.startswith("/opt/airflow/provider[")]
    extras = set(provider.removeprefix("/opt/airflow/provider[").removesuffix("]").split(","))
    assert extras == {"google", "amazon", "kubernetes", "labgrid", "examples"}


@pytest.mark.skipif(not UV.exists(), reason="uv is installed into .venv by the Makefile")
@pytest.mark.timeout(900)  # two installs of a few hundred packages from the cache: ~90 s on an idle machine
def test_the_dockerfile_pip_line_installs_the_provider_and_every_backend(tmp_path: Path) -> None:
    root = tmp_path / "image"
    _stage_copies(root)
    args = [a.replace("/opt/airflow/", f"{root}/opt/airflow/") for a in _pip_line()]
    args.remove("--no-cache-dir")  # only keeps the image layer small; uv must read its cache here
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    _uv_pip_install(python, args)

    report = _check(python, tmp_path, RUNTIME_IMPORTS, TEST_ONLY)
    assert report["present"] == [], "test tools in the runtime image"
    assert _off_lock(report) == {}, "the image must hold the lock's versions"
    assert report["versions"]["apache-airflow"] == _arg_default("AIRFLOW_VERSION")

    # The `standins` target (moto's server, the Kubernetes API stand-in) adds to the runtime image.
    standins = [a.replace("/opt/airflow/", f"{root}/opt/airflow/") for a in _pip_line("standins")]
    standins.remove("--no-cache-dir")
    _uv_pip_install(python, standins)
    report = _check(python, tmp_path, ["moto.server", "kmock", "aiohttp.web"], [])
    assert _off_lock(report) == {}, "the standins image must hold the lock's versions"


def _uv_pip_install(python: Path, args: list[str]) -> None:
    install = subprocess.run(
        [str(UV), "pip", "install", "-q", "--offline", "--python", str(python), *args],
        check=False,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]


def _check(python: Path, cwd: Path, imports: list[str], absent: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH"))}
    env.update(AIRFLOW_HOME=str(cwd / "home"))
    result = subprocess.run(
        [str(python), "-c", CHECK, json.dumps([imports, absent])],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def _off_lock(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    locked = _locked()
    return {
        name: (version, locked[name])
        for name, version in report["versions"].items()
        if name in locked and locked[name] != version
    }
