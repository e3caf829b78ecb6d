"""Kubernetes auth through cncf-kubernetes' ``KubernetesHook`` (kubeconfig, a ``kubernetes``
Connection, the default) and the backend's "Test Connection", against the Kubernetes API emulator
(tests/fakes/kubernetes.py; real ``kubernetes`` client over HTTP). docs/kubernetes.md."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend
from airflow_provider_runners.backends.kubernetes.client import ClusterAuth
from airflow_provider_runners.core.backend import ConnectionConfig
from airflow_provider_runners.exceptions import ConnectionConfigError
from tests.fakes.kubernetes import KubeCluster

TOKEN = "kc-token-5f4e3d2c1b"


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeCluster]:
    with KubeCluster(kubelet=False) as cluster:
        yield cluster


def _kubeconfig(path: Path, url: str, context: str = "emu") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emu-cluster", "cluster": {"server": url}}],
                "users": [{"name": "emu-user", "user": {"token": TOKEN}}],
                "contexts": [{"name": context, "context": {"cluster": "emu-cluster", "user": "emu-user"}}],
                "current-context": context,
            }
        )
    )
    return path


def _backend(conn_id: str = "k8s_auth", host: str | None = None, **extra: Any) -> KubernetesBackend:
    return KubernetesBackend(
        ConnectionConfig(conn_id, "runners_kubernetes", host=host, extra={"namespace": "auth", **extra})
    )


def test_a_kubeconfig_is_loaded_by_kubernetes_hook(kube: KubeCluster, tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", kube.url, context="emu")
    b = _backend(kubeconfig=str(config), context="emu")
    assert b.auth.mode == "kubeconfig"
    cfg = b.auth.configuration()
    assert cfg.host == kube.url
    assert TOKEN in str(cfg.api_key)  # the kubeconfig user's token
    assert b.list_managed() == []
    assert b.check_connection() == (
        True,
        "kubernetes Connection 'k8s_auth': API server reachable (kubeconfig: emu); pods in 'auth' readable",
    )


def test_a_cncf_kubernetes_connection_is_read_by_kubernetes_hook(
    kube: KubeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _kubeconfig(tmp_path / "config", kube.url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_K8S_CNCF",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(config)}}),
    )
    b = _backend(kubernetes_conn_id="k8s_cncf")
    assert (b.auth.mode, b.auth.cluster_key) == ("kubernetes_conn", "kubernetes_conn:k8s_cncf")
    assert b.auth.configuration().host == kube.url
    assert b.list_managed() == []


def test_the_default_is_kubernetes_hooks_default_kubeconfig(
    kube: KubeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import kube_config

    # $KUBECONFIG is read when the kubernetes package is imported: set what it became
    monkeypatch.setattr(
        kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(_kubeconfig(tmp_path / "d", kube.url))
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod
    b = _backend()
    assert b.auth.mode == "default_kubeconfig"
    assert b.auth.configuration().host == kube.url


def test_url_and_token_stay_ours_and_verify_ssl_false_touches_only_this_configuration(
    kube: KubeCluster,
) -> None:
    import kubernetes

    auth = ClusterAuth.from_config(
        ConnectionConfig(
            "k", "runners_kubernetes", host=kube.url, password=TOKEN, extra={"verify_ssl": "false"}
        )
    )
    cfg = auth.configuration()
    assert (auth.mode, cfg.host, cfg.api_key["authorization"], cfg.verify_ssl) == (
        "host",
        kube.url,
        TOKEN,
        False,
    )
    assert kubernetes.client.Configuration.get_default_copy().verify_ssl is True
    assert TOKEN not in repr(auth)


def test_a_broken_kubeconfig_is_a_clear_error_naming_the_connection(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    b = _backend("k8s_bad", kubeconfig=str(missing))
    with pytest.raises(ConnectionConfigError, match=r"Connection 'k8s_bad': Kubernetes auth \(kubeconfig\)"):
        b.auth.configuration()
    ok, message = b.check_connection()
    assert not ok
    assert "Connection 'k8s_bad'" in message


def test_test_connection_fails_for_an_unreachable_api_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = _backend("k8s_down", host=f"http://127.0.0.1:{port}", qps=100, burst=100)
    b.api().api_client.rest_client.pool_manager.connection_pool_kw["retries"] = 0
    ok, message = b.check_connection()
    assert not ok
    assert message.startswith("kubernetes Connection 'k8s_down': ")
