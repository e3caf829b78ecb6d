"""The stand-ins docker-compose.yaml runs for the cloud examples, run here as the compose file
runs them (same scripts, same arguments), against real servers:

* ``scripts/kube-standin.py`` serves a Kubernetes API whose kubelet really runs a pod's command,
  and stops every pod process on SIGTERM (``docker compose stop``);
* ``scripts/compose-aws-init.py`` (airflow-init) makes hybrid_burst's SQS queue and the runner
  registry's DynamoDB table on a real moto server, and a second run changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.moto_aws import free_port, moto_server

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


@pytest.mark.timeout(900)  # two airflow imports in subprocesses: slow on a loaded machine
def test_aws_init_makes_the_queue_and_the_registry_table_once(tmp_path: Path) -> None:
    env_compose = COMPOSE["services"]["airflow-worker"]["environment"]
    init = COMPOSE["services"]["airflow-init"]
    assert "python /opt/airflow/scripts/compose-aws-init.py" in init["command"][-1]
    with moto_server() as endpoint:
        conn = json.loads(env_compose["AIRFLOW_CONN_AWS_MOTO"])
        conn["extra"]["endpoint_url"] = endpoint  # the compose file's, with moto's address here
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__RUNNERS__")}
        env.update(
            AIRFLOW_HOME=str(tmp_path / "home"),
            AIRFLOW_CONN_AWS_MOTO=json.dumps(conn),
            **{
                k: env_compose[k]
                for k in (
                    "RUNNERS_BURST_AWS_CONN_ID",
                    "RUNNERS_BURST_QUEUE_URL",
                    "AIRFLOW__RUNNERS__REGISTRY",
                    "AIRFLOW__RUNNERS__REGISTRY_CONN_ID",
                )
            },
        )
        for _ in range(2):
            result = subprocess.run(
                [sys.executable, str(REPO / "scripts/compose-aws-init.py")],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, result.stderr[-3000:]

        import boto3

        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        queue = env_compose["RUNNERS_BURST_QUEUE_URL"].rsplit("/", 1)[1]
        urls = boto3.client("sqs", **kw).list_queues()["QueueUrls"]  # other tests share this moto server
        assert [u for u in urls if u.endswith(f"/{queue}")] == [f"{endpoint}/123456789012/{queue}"]
        table = env_compose["AIRFLOW__RUNNERS__REGISTRY"].removeprefix("dynamodb://")
        ddb = boto3.client("dynamodb", **kw)
        names = ddb.list_tables()["TableNames"]  # other tests share this moto server too
        assert [n for n in names if n.startswith("runners-registry")] == [table]
        assert ddb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
