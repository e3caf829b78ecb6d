"""The stand-ins docker-compose.yaml runs for the cloud examples, run here as the compose file
runs them (same scripts, same arguments), against real servers:

* ``scripts/kube-standin.py`` serves a Kubernetes API whose kubelet really runs a pod's command,
  and stops every pod process on SIGTERM (``docker compose stop``);
* ``scripts/moto-standin.py`` (the ``moto`` service) serves moto with the SSM agent stand-in, and
  ``scripts/compose-aws-init.py`` (airflow-init) makes on it the SQS queues, the runner registry's
  and the claim DynamoDB tables, the runners_ec2 Connection's network and instance profile, the
  catalog's AMI tagged with its digest and the ERP secret; a second run changes nothing;
* with all that, the package's ``ec2`` backend (real boto3) creates a host for
  dedicated_host_extract's spec on the stand-in, runs an SSM command there (a Secrets Manager
  reference resolved on the host) and tears the host down; ec2_warm_pool's pass fills the compose
  Connection's pool and job_array_burst's cycle launches a host that drains its queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.moto_aws import free_port

pytestmark = pytest.mark.integration
COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not up yet
            if value := predicate():
                return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.timeout(900)
def test_kube_standin_runs_a_pods_command_and_stops_cleanly(tmp_path: Path) -> None:
    from kubernetes import client

    service = COMPOSE["services"]["kubernetes-standin"]
    script = REPO / "scripts" / Path(service["entrypoint"][-1]).name
    args = list(service["command"])
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{port}"
        api = client.CoreV1Api(client.ApiClient(cfg))
        _wait(lambda: api.list_namespaced_pod("sil") is not None, 60, "the stand-in to serve")
        marker = tmp_path / "ran"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "python@sha256:" + "0" * 64,
                        "command": [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok')"],
                    }
                ],
            },
        }
        api.create_namespaced_pod("sil", pod)
        phase = _wait(
            lambda: (
                (p := api.read_namespaced_pod("probe", "sil").status.phase) in ("Succeeded", "Failed") and p
            ),
            60,
            "the pod to finish",
        )
        assert phase == "Succeeded"
        assert marker.read_text() == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]


ERP_PASSWORD = "erp-COMPOSE-SECRET-51c7"  # the test's ERP_SOURCE_PASSWORD


@pytest.fixture(scope="module")
def moto_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """scripts/moto-standin.py as a process, with the compose file's arguments (but 127.0.0.1 and a
    free port); yields its endpoint URL."""
    service = COMPOSE["services"]["moto"]
    script = REPO / "scripts" / Path(service["entrypoint"][-1]).name
    args = list(service["command"])
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    workdir = tmp_path_factory.mktemp("moto-standin")
    # The "host" runs python3 as the container would: this interpreter's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    proc = subprocess.Popen(
        [sys.executable, str(script), *args, "--workdir", str(workdir)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": path},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        _wait(
            lambda: urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2), 120, "moto-standin"
        )
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]


def _compose_env(endpoint: str) -> dict[str, str]:
    """The Airflow services' environment of the compose file, with moto's address here."""
    env_compose = COMPOSE["services"]["airflow-worker"]["environment"]
    here = {
        k: str(v).replace("http://moto:5000", endpoint)
        for k, v in env_compose.items()
        if k.startswith(("AIRFLOW_CONN_", "RUNNERS_BURST_", "RUNNERS_EC2_", "AIRFLOW__RUNNERS__REGISTRY"))
    }
    here["AIRFLOW_CONN_ERP_SOURCE"] = here["AIRFLOW_CONN_ERP_SOURCE"].replace(
        "${ERP_SOURCE_PASSWORD:-local-placeholder}", ERP_PASSWORD
    )
    assert endpoint in here["AIRFLOW_CONN_AWS_MOTO"]
    return here


@pytest.fixture(scope="module")
def initialised(moto_standin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """compose-aws-init.py run twice (as airflow-init runs it) against the stand-in."""
    init = COMPOSE["services"]["airflow-init"]
    assert "python /opt/airflow/scripts/compose-aws-init.py" in init["command"][-1]
    tmp = tmp_path_factory.mktemp("aws-init")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__RUNNERS__", "AIRFLOW_CONN_"))}
    env.update(AIRFLOW_HOME=str(tmp / "home"), **_compose_env(moto_standin))
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts/compose-aws-init.py")],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(result.stdout + result.stderr)
    assert not any(ERP_PASSWORD in out for out in outputs), "the ERP password was printed"
    return _compose_env(moto_standin)


@pytest.mark.timeout(900)  # airflow imports in subprocesses: slow on a loaded machine
def test_aws_init_prepares_queues_tables_network_and_amis_once(
    moto_standin: str, initialised: dict[str, str]
) -> None:
    import boto3

    from airflow_provider_runners.core.catalog import load_catalog

    env_compose = COMPOSE["services"]["airflow-worker"]["environment"]
    kw = {
        "endpoint_url": moto_standin,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    urls = boto3.client("sqs", **kw).list_queues()["QueueUrls"]
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == ["job-array", "runners-burst"]
    table = env_compose["AIRFLOW__RUNNERS__REGISTRY"].removeprefix("dynamodb://")
    ddb = boto3.client("dynamodb", **kw)
    ec2_extra = json.loads(env_compose["AIRFLOW_CONN_RUNNERS_EC2"])["extra"]
    assert sorted(ddb.list_tables()["TableNames"]) == sorted([table, ec2_extra["claim_table"]])
    assert ddb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
    # The network of the Connection, with its ids, made once.
    ec2 = boto3.client("ec2", **kw)
    private = ec2_extra["network_profiles"]["private"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [private["subnet_id"]]}])[
        "Subnets"
    ]
    assert len(subnets) == 1
    groups = ec2.describe_security_groups(GroupIds=private["security_group_ids"])["SecurityGroups"]
    assert {g["VpcId"] for g in groups} == {subnets[0]["VpcId"]}
    assert len(ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["runners-compose"]}])["Vpcs"]) == 1
    boto3.client("iam", **kw).get_instance_profile(InstanceProfileName=ec2_extra["instance_profile"])
    # The catalog's AMI, approved by its digest tag.
    image = load_catalog(REPO / "airflow_provider_runners/catalogs/default.yaml").images["hardened-base"][
        "2026.11"
    ]
    ami = ec2.describe_images(ImageIds=[image.options["amis"]["us-east-1"]])["Images"][0]
    assert {t["Key"]: t["Value"] for t in ami["Tags"]}["runner-image-digest"] == image.digest
    secret = boto3.client("secretsmanager", **kw).get_secret_value(SecretId="prod/erp")["SecretString"]
    assert json.loads(secret) == {"user": "extract", "password": ERP_PASSWORD}


@pytest.mark.timeout(900)
def test_an_ec2_runner_on_the_standin_runs_an_ssm_command_and_is_torn_down(
    initialised: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """dedicated_host_extract's spec, as compose runs it (RUNNERS_EXTRACT_CONN_ID=runners_ec2):
    the runners_ec2 Connection of the compose file, real boto3, the package's ec2 backend."""
    from airflow_provider_runners.backends.ec2.backend import Ec2Backend
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.backend import CommandRequest, ProvisionRequest, RunnerState
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.core.specs import RunnerSpec

    for key in [k for k in os.environ if k.startswith("AIRFLOW__RUNNERS__")]:
        monkeypatch.delenv(key)
    for key, value in initialised.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.1)
    monkeypatch.setattr(Ec2Backend, "command_poll_s", 0.1)
    env_compose = COMPOSE["services"]["airflow-worker"]["environment"]
    assert env_compose["RUNNERS_EXTRACT_ENVIRONMENT"] == "${RUNNERS_EXTRACT_CONN_ID:+dev}"
    spec = RunnerSpec.parse(
        {
            "runner_class": "dedicated_host",
            "profile": "XLarge",
            "environment": "dev",
            "network_profile": "private",
            "image": "hardened-base@2026.11",
            "driver_bundles": ["hana-jdbc@2.19.16"],
            "tags": {"tenant": "finance", "pipeline": "erp-monthly-extract"},
            "ttl": "6h",
        }
    )
    backend = get_backend("runners_ec2")
    assert isinstance(backend, Ec2Backend)
    lineage = Lineage("dedicated_host_extract", "run-1", "host.provision")
    request = ProvisionRequest.build(
        resolve_spec(
            spec, backend="ec2", catalog_path=str(REPO / "airflow_provider_runners/catalogs/default.yaml")
        ),
        lineage,
        lineage.attempt_token(1),
        "runners_ec2",
        {"tenant": "finance", "pipeline": "erp-monthly-extract"},
    )
    handle = backend.create(request)
    try:
        _wait(lambda: backend.status(handle).state is RunnerState.READY, 60, "the host to be ready")
        marker = tmp_path / "ran-on-the-host"
        lines: list[str] = []
        result = backend.run_command(
            handle,
            CommandRequest(
                command=(
                    "python3 -c \"import fsspec; print('fsspec', fsspec.__name__)\" && "
                    f'echo "erp password: ${{#ERP_PASSWORD}} chars" && echo "$RUNNER_DRIVER_HANA_JDBC" > {marker}'
                ),
                name=f"{handle.attempt_token}-extract",
                secret_env={"ERP_PASSWORD": "aws-sm:prod/erp#password"},
                timeout=60,
            ),
            lines.append,
            threading.Event(),
        )
        assert result.exit_code == 0, lines
        assert "fsspec fsspec" in lines
        assert f"erp password: {len(ERP_PASSWORD)} chars" in lines
        assert ERP_PASSWORD not in "\n".join(lines)
        assert marker.read_text().strip() == "2.19.16"
    finally:
        backend.teardown(handle)
    import boto3

    ec2 = boto3.client(
        "ec2",
        endpoint_url=json.loads(initialised["AIRFLOW_CONN_AWS_MOTO"])["extra"]["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    state = ec2.describe_instances(InstanceIds=[handle.resource_id])["Reservations"][0]["Instances"][0][
        "State"
    ]
    assert state["Name"] in ("shutting-down", "terminated")


@pytest.mark.timeout(900)
def test_the_warm_pool_and_the_job_array_examples_run_on_the_standin(
    initialised: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ec2_warm_pool's pass fills the compose Connection's pool; job_array_burst's cycle (the DAG's
    spec and job command, the compose file's orchestrator config) launches a host that drains the
    queue over SSM. Every host is terminated at the end."""
    import importlib.util

    import boto3

    from airflow_provider_runners.backends.ec2 import warm_pool
    from airflow_provider_runners.backends.registry import get_backend
    from airflow_provider_runners.core.lineage import Lineage
    from airflow_provider_runners.operators.job_array import prepare, run_cycle

    for key in [k for k in os.environ if k.startswith("AIRFLOW__RUNNERS__")]:
        monkeypatch.delenv(key)
    for key, value in initialised.items():
        monkeypatch.setenv(key, value)
    catalog = str(REPO / "airflow_provider_runners/catalogs/default.yaml")
    endpoint = json.loads(initialised["AIRFLOW_CONN_AWS_MOTO"])["extra"]["endpoint_url"]
    kw = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    ec2, sqs = boto3.client("ec2", **kw), boto3.client("sqs", **kw)
    backend: Any = get_backend(initialised["RUNNERS_EC2_POOL_CONN_ID"])
    try:
        report = warm_pool.maintain(backend, catalog_path=catalog)
        assert report.errors == []
        idle = ec2.describe_instances(
            Filters=[
                {"Name": "tag:runner-pool-state", "Values": ["idle"]},
                {"Name": "instance-state-name", "Values": ["stopped"]},
            ]
        )["Reservations"]
        assert len(idle) == 1  # warm_pools.dev-large: min_size 1

        spec_file = REPO / "dags" / "job_array_burst.py"
        module_spec = importlib.util.spec_from_file_location("compose_job_array_burst", spec_file)
        assert module_spec is not None
        assert module_spec.loader is not None
        dag_module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(dag_module)  # reads RUNNERS_BURST_CONFIG, as the DAG does
        config, spec = prepare(dag_module.CONFIG, dag_module.SPEC, catalog)
        queue_url = config.queue_url
        for job in range(3):
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job": job}))
        result = run_cycle(
            config=config, spec=spec, conn_id=initialised["RUNNERS_BURST_EC2_CONN_ID"],
            job_command=dag_module.JOB_COMMAND, lineage=Lineage("job_array_burst", "run-1", "cycle"),
            catalog_path=catalog, ready_timeout_s=60,
        )  # fmt: skip
        assert len(result["launched"]) == 1, result  # min_cloud_instances: 1; 3 jobs < the threshold

        def drained() -> bool:
            attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
            return (
                attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
            )

        _wait(drained, 60, "the host to drain the queue")
    finally:
        live = [
            i["InstanceId"]
            for r in ec2.describe_instances(
                Filters=[
                    {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
                ]
            )["Reservations"]
            for i in r["Instances"]
        ]
        if live:
            ec2.terminate_instances(InstanceIds=live)
