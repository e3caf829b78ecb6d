"""The ``kubernetes`` backend's metadata: the ``spec.options`` it accepts and its Connection form
(docs/architecture.md, "Adding a backend")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from airflow_provider_runners.core.backend import ConnField

PodMode = Literal["command", "workspace"]


class KubernetesOptions(BaseModel):
    """``spec.options`` of a pod (docs/kubernetes.md); values are checked by ``pod.check_options``."""

    model_config = ConfigDict(extra="forbid")
    mode: PodMode | None = None
    command: str | list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    secret_env: dict[str, str] | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    workspace_size: str | None = None
    pod_template_file: str | None = None
    pod_template: dict[str, Any] | None = None


CONN_FIELDS: dict[str, ConnField] = {
    "namespace": ConnField("Namespace", placeholder="sil-runners"),
    "pod_template_file": ConnField("Pod template file", placeholder="/opt/airflow/config/sil-pod.yaml"),
    "service_account": ConnField("Service account", placeholder="sil-runner"),
    "qps": ConnField("API requests per second", type="number", placeholder="5"),
    "burst": ConnField("API request burst", type="integer", placeholder="10"),
    "kubernetes_conn_id": ConnField(
        "Kubernetes Connection (auth)",
        description="a cncf-kubernetes 'kubernetes' Connection whose in-cluster / kubeconfig settings "
        "KubernetesHook uses to reach the cluster (leave empty for the API server URL, EKS or kubeconfig extras)",
        placeholder="kubernetes_default",
    ),
}

PLACEHOLDERS: dict[str, str] = {
    "extra": '{"eks_cluster_name": "sil", "region_name": "eu-west-1", "aws_conn_id": "aws_default"}'
}
