"""The ``kubernetes`` backend with the real ``kubernetes`` client over HTTP against kmock's emulator.

No Airflow DB: the backend, the pod builder and RunnerCommandOperator are driven directly; the
API server and the kubelet stand-in are those of tests/fakes/kubernetes.py (pods' commands are
real local processes). The dag.test() runs are in tests/integration/test_kubernetes.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from airflow_provider_runners.backends.kubernetes import pod as podlib
from airflow_provider_runners.backends.kubernetes.backend import POD_COMMAND, KubernetesBackend, validate_spec
from airflow_provider_runners.backends.kubernetes.client import TokenBucket
from airflow_provider_runners.core.backend import (
    Backend,
    CommandRequest,
    ConnectionConfig,
    ProvisionRequest,
    RunnerState,
)
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError
from airflow_provider_runners.testing.contract import BackendContract
from tests.fakes.kubernetes import KubeCluster

AGENT = "airflow-provider-runners"
BASE = {
    "runner_class": "pod",
    "profile": "small",
    "environment": "dev",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "adas", "pipeline": "sil"},
}


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeCluster]:
    with KubeCluster() as cluster:
        yield cluster
    assert cluster.kubelet is not None
    assert not cluster.kubelet.live_processes()


@pytest.fixture
def cluster(kube: KubeCluster) -> Iterator[KubeCluster]:
    assert kube.kubelet is not None
    kube.kubelet.script, kube.kubelet.default = [], "run"
    yield kube
    assert kube.kubelet.errors == []


def backend(kube: KubeCluster, **extra: Any) -> KubernetesBackend:
    config = ConnectionConfig(
        "k8s_unit",
        "runners_kubernetes",
        host=kube.url,
        extra={"namespace": "unit", "failure_grace_s": 0, **extra},
    )
    b = KubernetesBackend(config)
    b.teardown_poll_s = 0.05  # type: ignore[misc]
    b.command_poll_s = 0.1  # type: ignore[misc]
    return b


def request(task: str, options: dict[str, Any] | None = None, **spec: Any) -> ProvisionRequest:
    parsed = RunnerSpec.parse({**BASE, **spec, "options": options or {"command": "echo ok"}})
    lineage = Lineage("unit_dag", "run-1", task)
    labels = {"tenant": "adas", "pipeline": "sil", "profile": "small"}
    resolved = resolve_spec(parsed, backend="kubernetes")
    expires_at = datetime.fromtimestamp(4_102_444_800, UTC)
    return ProvisionRequest(resolved, lineage, lineage.attempt_token(1), "k8s_unit", labels, expires_at)


def wait_state(b: KubernetesBackend, handle: RunnerHandle, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = b.status(handle)
        if status.state is not RunnerState.PENDING or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def ours(kube: KubeCluster) -> list[Any]:
    return kube.server.requests_by(AGENT)


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(qps=50, burst=5)
    started = time.monotonic()
    waits = [bucket.acquire() for _ in range(15)]
    elapsed = time.monotonic() - started
    assert waits[:5] == [0.0] * 5  # the burst is free
    assert elapsed >= 10 / 50 * 0.9  # the other 10 at 50/s
    assert bucket.requests == 15


def test_every_client_of_a_cluster_shares_one_bucket(cluster: KubeCluster) -> None:
    a, b = backend(cluster), backend(cluster)
    a.api(), b.api()
    assert a.bucket is b.bucket
    before = a.bucket.requests
    a.list_managed()
    b.list_managed()
    assert a.bucket.requests == before + 2


def test_pod_runs_its_command_to_completion_and_teardown_is_idempotent(cluster: KubeCluster) -> None:
    b = backend(cluster)
    handle = b.create(request("complete", {"command": "echo line-1; echo line-2 >&2; exit 7"}))
    status = wait_state(b, handle)
    assert status.state is RunnerState.READY
    lines: list[str] = []
    result = b.run_command(handle, CommandRequest(POD_COMMAND, "c1"), lines.append, threading.Event())
    assert result.exit_code == 7
    assert lines == ["line-1", "line-2"]
    assert result.details["phase"] == "Failed"
    first = b.teardown(handle)
    assert first.existed is True
    assert first.details["exit_codes"] == {"main": 7}
    assert b.teardown(handle).existed is False
    assert b.status(handle).state is RunnerState.GONE


def test_status_many_is_one_list_per_namespace(cluster: KubeCluster) -> None:
    b = backend(cluster)
    cluster.kubelet.default = "pending"  # type: ignore[union-attr]
    handles = [b.create(request(f"many-{i}")) for i in range(20)]
    before = len(ours(cluster))
    statuses = b.status_many(handles)
    polls = ours(cluster)[before:]
    assert len(polls) == 1
    assert polls[0].params["labelSelector"] == "managed-by=airflow-provider-runners"
    assert {s.state for s in statuses.values()} == {RunnerState.PENDING}
    assert set(statuses) == {h.resource_id for h in handles}
    for h in handles:
        b.teardown(h)


def test_create_conflict_adopts_the_healthy_pod(cluster: KubeCluster) -> None:
    b = backend(cluster)
    req = request("conflict", {"command": "sleep 30"})
    first = b.create(req)
    assert wait_state(b, first).state is RunnerState.READY
    second = b.create(req)  # e.g. find() missed it: the API answers 409 AlreadyExists
    assert second.resource_id == first.resource_id
    assert second.details["create"] == "adopted on 409"
    assert second.details["pod_uid"] == first.details["pod_uid"]
    assert len(cluster.pods("unit")) == 1
    b.teardown(second)


def test_the_test_server_answers_like_kubernetes(cluster: KubeCluster) -> None:
    from kubernetes.client.rest import ApiException

    b = backend(cluster)
    with pytest.raises(ApiException) as missing:
        b.api().read_namespaced_pod("nope", "unit")
    body = json.loads(missing.value.body)
    assert (missing.value.status, body["reason"], body["message"]) == (
        404,
        "NotFound",
        'pods "nope" not found',
    )
    req = request("dup", {"command": "sleep 30"})
    handle = b.create(req)
    manifest = {
        "metadata": {"name": handle.resource_id},
        "spec": {"containers": [{"name": "main", "image": "x"}]},
    }
    with pytest.raises(ApiException) as conflict:
        b.api().create_namespaced_pod("unit", manifest)
    body = json.loads(conflict.value.body)
    assert (conflict.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["details"] == {"name": handle.resource_id, "kind": "pods"}
    b.teardown(handle)


def test_unschedulable_waits_out_the_grace_then_fails_naming_the_events(cluster: KubeCluster) -> None:
    cluster.kubelet.script = ["unschedulable"]  # type: ignore[union-attr]
    b = backend(cluster, failure_grace_s=1.0)
    handle = b.create(request("unschedulable"))
    time.sleep(0.3)
    early = b.status(handle)
    assert early.state is RunnerState.PENDING
    assert "Unschedulable" in early.message
    time.sleep(1.0)
    late = b.status(handle)
    assert late.state is RunnerState.FAILED
    assert "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu" in late.message
    assert "Warning FailedScheduling" in late.message
    assert b.teardown(handle).existed is True
    assert cluster.pods("unit") == []


def test_secret_env_is_a_secret_key_ref_that_the_kubelet_resolves(cluster: KubeCluster) -> None:
    cluster.add_secret("unit", "sil-db", {"password": "s3cr3t-VALUE-91"})
    b = backend(cluster)
    digest = hashlib.sha256(b"s3cr3t-VALUE-91").hexdigest()
    options = {
        "command": 'echo "$DB_PASSWORD" | tr -d "\\n" | sha256sum | cut -c1-64',
        "secret_env": {"DB_PASSWORD": "k8s-secret:sil-db#password"},
    }
    handle = b.create(request("secret", options))
    post = next(
        r for r in ours(cluster) if r.method == "POST" and r.data["metadata"]["name"] == handle.resource_id
    )
    assert "s3cr3t-VALUE-91" not in post.text
    env = post.data["spec"]["containers"][0]["env"]
    assert {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "sil-db", "key": "password"}},
    } in env
    lines: list[str] = []
    result = b.run_command(handle, CommandRequest(POD_COMMAND, "s1"), lines.append, threading.Event())
    assert (result.exit_code, lines) == (0, [digest])  # the value reached the process, not the manifest
    b.teardown(handle)


def test_exec_into_a_workspace_pod_then_cancel_stops_the_command(cluster: KubeCluster) -> None:
    b = backend(cluster)
    handle = b.create(request("workspace", {"mode": "workspace"}))
    assert wait_state(b, handle).state is RunnerState.READY
    lines: list[str] = []
    cmd = CommandRequest("echo out; pwd; echo err >&2; echo $CASE; exit 4", "e1", env={"CASE": "lane_keep"})
    result = b.run_command(handle, cmd, lines.append, threading.Event())
    assert result.exit_code == 4
    assert lines[0] == "out"
    assert lines[1].endswith(handle.details["pod_uid"])  # /workspace, mapped by the kubelet stand-in
    assert set(lines[2:]) == {"err", "lane_keep"}
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    lines.clear()
    cancelled = b.run_command(handle, CommandRequest("echo start; sleep 30", "e2"), lines.append, cancel)
    assert cancelled.cancelled is True
    assert cancelled.exit_code is None
    assert time.monotonic() - started < 5
    assert lines == ["start"]
    with pytest.raises(RunnerSpecError, match="secret_env.TOKEN: .* is not in the pod's environment"):
        b.run_command(
            handle, CommandRequest("true", "e3", secret_env={"TOKEN": "k8s-secret:x#y"}), print, cancel
        )
    b.teardown(handle)


def test_killing_the_work_task_deletes_the_pod_and_its_process(cluster: KubeCluster) -> None:
    from airflow_provider_runners.operators.command import RunnerCommandOperator

    b = backend(cluster)
    handle = b.create(request("killed", {"command": "echo started; sleep 60"}))
    assert wait_state(b, handle).state is RunnerState.READY
    op = RunnerCommandOperator(task_id="run", handle=handle.to_xcom(), command=POD_COMMAND)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcome.setdefault(
            "result", op._run(b, handle, CommandRequest(POD_COMMAND, "k1", timeout=60))
        )
    )
    worker.start()
    time.sleep(1.0)
    op.on_kill()
    worker.join(timeout=20)
    assert outcome["result"].cancelled is True
    assert cluster.pods("unit") == []
    assert cluster.kubelet is not None
    assert not cluster.kubelet.live_processes()


def test_active_deadline_is_the_backstop(cluster: KubeCluster) -> None:
    b = backend(cluster)
    handle = b.create(request("backstop", {"mode": "workspace", "command": "sleep 60"}, ttl="5s"))
    assert wait_state(b, handle).state is RunnerState.READY
    time.sleep(5.5)
    status = wait_state(b, handle)
    assert status.state is RunnerState.FAILED
    assert "DeadlineExceeded" in status.message
    b.teardown(handle)


def test_manifest_merges_template_profile_tags_and_connection(tmp_path: Path, cluster: KubeCluster) -> None:
    template = tmp_path / "pod.yaml"
    template.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {team: adas}\nspec:\n"
        "  containers:\n  - name: main\n    image: ignored:latest\n    volumeMounts: [{name: cache, mountPath: /cache}]\n"
        "  - name: sidecar\n    image: envoy:1\n  volumes: [{name: cache, emptyDir: {}}]\n"
        "  tolerations: [{key: sil, operator: Exists, effect: NoSchedule}]\n"
    )
    b = backend(
        cluster,
        pod_template_file=str(template),
        service_account="sil-runner",
        tag_node_selector={"tenant": "runners.example.com/tenant"},
    )
    handle = b.create(
        request("manifest", {"command": ["python3", "-c", "print(1)"], "node_selector": {"zone": "a"}})
    )
    post = next(
        r for r in ours(cluster) if r.method == "POST" and r.data["metadata"]["name"] == handle.resource_id
    )
    pod = post.data
    assert pod["metadata"]["labels"]["team"] == "adas"
    assert pod["metadata"]["labels"]["runner-lineage"] == handle.lineage_key
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "sil-runner"
    assert spec["automountServiceAccountToken"] is False
    assert spec["nodeSelector"] == {"runners.example.com/tenant": "adas", "zone": "a"}
    assert {
        "key": "runners.example.com/tenant",
        "operator": "Equal",
        "value": "adas",
        "effect": "NoSchedule",
    } in spec["tolerations"]
    assert {"key": "sil", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert [v["name"] for v in spec["volumes"]] == ["cache", "workspace"]
    main, sidecar = spec["containers"]
    assert main["image"].startswith("hardened-base@sha256:")
    assert main["command"] == ["python3", "-c", "print(1)"]
    assert main["workingDir"] == "/workspace"
    assert [m["mountPath"] for m in main["volumeMounts"]] == ["/cache", "/workspace"]
    assert sidecar == {"name": "sidecar", "image": "envoy:1"}
    b.teardown(handle)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"command": "x", "gpu": 1}, "spec.options: ['gpu'] not supported by kubernetes"),
        ({"mode": "batch", "command": "x"}, "spec.options.mode: 'batch'; allowed: ['command', 'workspace']"),
        ({"mode": "command"}, "spec.options.command: required with mode 'command'"),
        ({"command": []}, "spec.options.command: []; allowed: a shell string or a non-empty list of strings"),
        ({"command": "x", "env": {"API_TOKEN": "abc"}}, "spec.options.env.API_TOKEN: looks like a secret"),
        (
            {"command": "x", "secret_env": {"PW": "aws-sm:prod/db"}},
            "spec.options.secret_env.PW: 'aws-sm' references cannot be put in a pod; allowed: k8s-secret",
        ),
        ({"command": "x", "workspace_size": "lots"}, "spec.options.workspace_size: 'lots'"),
        ({"command": "x", "pod_template": {"kind": "Deployment"}}, "kind 'Deployment' apiVersion None"),
        (
            {
                "command": "x",
                "pod_template": {
                    "spec": {"containers": [{"name": "m", "env": [{"name": "PASSWORD", "value": "p"}]}]}
                },
            },
            "spec.containers[0].env[0] (PASSWORD) holds a secret value",
        ),
        (
            {"command": "x", "pod_template_file": "/nonexistent/pod.yaml"},
            "'/nonexistent/pod.yaml' cannot be read",
        ),
    ],
)
def test_bad_options_and_templates_are_parse_time_errors(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(RunnerSpecError) as err:
        validate_spec({**BASE, "options": options})
    assert expected in str(err.value)


def test_invalid_yaml_template_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "pod.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(RunnerSpecError, match=r"pod_template_file: '.*pod.yaml' is not valid YAML"):
        validate_spec({**BASE, "options": {"command": "x"}}, pod_template_file=str(bad))
    assert podlib.pod_name("rlabc") == "rp-rlabc"


def test_eks_auth_reads_the_cluster_and_signs_a_token_through_the_amazon_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EKS: endpoint and CA from DescribeCluster (moto server over HTTP, real boto3 and EksHook)."""
    import base64

    import boto3
    from moto.server import ThreadedMotoServer

    from airflow_provider_runners.backends.kubernetes.client import ClusterAuth

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_EKS_TEST",
            json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "eu-west-1"}}),
        )
        eks = boto3.client("eks", region_name="eu-west-1", endpoint_url=endpoint)
        eks.create_cluster(name="sil", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={})
        cluster = eks.describe_cluster(name="sil")["cluster"]
        auth = ClusterAuth(
            conn_id="k", eks_cluster_name="sil", region_name="eu-west-1", aws_conn_id="aws_eks_test"
        )
        assert (auth.mode, auth.cluster_key) == ("eks", "eks:eu-west-1:sil")
        cfg = auth.configuration()
    finally:
        server.stop()
    assert cfg.host == cluster["endpoint"]
    assert Path(cfg.ssl_ca_cert).read_bytes() == base64.b64decode(cluster["certificateAuthority"]["data"])
    token = cfg.api_key["authorization"]
    assert token.startswith("k8s-aws-v1.")
    signed = base64.urlsafe_b64decode(token.removeprefix("k8s-aws-v1.") + "==").decode()
    assert "Action=GetCallerIdentity" in signed
    assert "X-Amz-Signature=" in signed
    assert "x-k8s-aws-id" in signed  # the cluster name header is signed in
    assert cfg.refresh_api_key_hook is not None


def test_missing_kubernetes_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_runners.exceptions import MissingExtraError

    monkeypatch.setitem(__import__("sys").modules, "kubernetes", None)
    b = KubernetesBackend(ConnectionConfig("k", "runners_kubernetes", host="http://127.0.0.1:1"))
    with pytest.raises(MissingExtraError, match=r"pip install 'airflow-provider-runners\[kubernetes\]'"):
        b.api()


class TestKubernetesContract(BackendContract):
    """The backend contract against the Kubernetes API emulator and its kubelet (workspace pods)."""

    spec: ClassVar[dict[str, Any]] = {**BASE, "options": {"mode": "workspace"}}
    ready_timeout: ClassVar[float] = 30.0

    @pytest.fixture
    def backend(self, cluster: KubeCluster) -> Iterator[Backend]:
        yield backend(cluster)
        assert cluster.pods("unit") == []
