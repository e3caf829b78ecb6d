"""docker-compose.yaml cannot be run here (no Docker engine), so it is validated instead:
structure as in Airflow's official 3.x file, every referenced file present, settings consistent
with each other, with the Dockerfile, the lock file and the README."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yaml").read_text())  # resolves anchors and << merges
    assert isinstance(data, dict)
    return data


def test_has_the_services_of_airflows_official_file(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"postgres", "redis", "airflow-init", *AIRFLOW_SERVICES}


@pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
def test_airflow_services_share_the_image_and_settings(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["build"] == "."
    assert service["image"] == "airflow-provider-runners:local"
    assert service["command"] == AIRFLOW_SERVICES[name]
    env = service["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "healthcheck" in service
    for dependency, condition in service["depends_on"].items():
        assert dependency in compose["services"], f"{name} depends on unknown service {dependency}"
        if condition["condition"] == "service_healthy":
            assert "healthcheck" in compose["services"][dependency], f"{dependency} has no healthcheck"


def test_database_and_broker_urls_match_the_postgres_and_redis_services(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]["environment"]
    env = compose["services"]["airflow-scheduler"]["environment"]
    expected = f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres/{pg['POSTGRES_DB']}"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://{expected}"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+postgresql://{expected}"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379/")
    assert compose["services"]["airflow-apiserver"]["ports"] == ["8080:8080"]


def test_worker_keeps_warm_shutdown_and_init_migrates(compose: dict[str, Any]) -> None:
    assert compose["services"]["airflow-worker"]["environment"]["DUMB_INIT_SETSID"] == "0"
    init = compose["services"]["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "airflow-runners catalog validate" in init["command"][-1]


def test_mounted_folders_exist(compose: dict[str, Any]) -> None:
    for volume in compose["services"]["airflow-scheduler"]["volumes"]:
        source = volume.rsplit(":/opt/", 1)[0]
        if source.startswith("${AIRFLOW_PROJ_DIR:-.}/"):
            folder = source.split("/", 1)[1]
            if folder != "logs":  # created by airflow-init
                assert (REPO / folder).is_dir(), f"{folder}/ is mounted but missing from the repo"
        else:
            assert source in compose["volumes"], f"named volume {source} is not declared"


def test_dockerfile_extends_the_official_image_at_the_locked_airflow_version() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    locked = re.search(
        r"^apache-airflow==([\w.]+)$", (REPO / "requirements/lock.txt").read_text(), re.MULTILINE
    )
    assert locked is not None
    assert f"ARG AIRFLOW_VERSION={locked.group(1)}" in dockerfile
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in dockerfile
    for source in re.findall(r"^COPY --chown=\S+ (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which does not exist"


def test_every_variable_is_documented_in_the_file_and_the_readme() -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    readme = (REPO / "README.md").read_text()
    variables = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))  # $${X} is for the container shell
    assert variables, "expected ${VAR} references"
    for name in variables:
        assert name in header, f"{name} is used but not documented in the compose file header"
        assert name in readme, f"{name} is used but not documented in README.md"


def test_labgrid_coordinator_serves_the_bench_connection(compose: dict[str, Any]) -> None:
    import json

    service = compose["services"]["labgrid-coordinator"]
    assert service["image"] == "airflow-provider-runners:local"
    assert service["entrypoint"] == ["airflow-runners", "bench-coordinator"]
    args = service["command"]
    listen_port = int(args[args.index("--listen") + 1].rsplit(":", 1)[1])
    assert str(listen_port) in [str(p) for p in service["expose"]]
    assert "healthcheck" in service
    places = args[args.index("--places") + 1].removeprefix("/opt/airflow/")
    assert (REPO / places).is_file(), f"{places} is mounted for the coordinator but missing"
    assert yaml.safe_load((REPO / places).read_text())["places"], "no example benches"
    conn = json.loads(compose["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_RUNNERS_BENCH"])
    assert conn == {"conn_type": "runners_labgrid", "host": "labgrid-coordinator", "port": listen_port}
    assert "labgrid" in re.search(
        r"/opt/airflow/provider\[([\w,]+)\]", (REPO / "Dockerfile").read_text()
    ).group(1)
