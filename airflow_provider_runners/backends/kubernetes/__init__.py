"""The ``kubernetes`` backend. A pod per runner on EKS or any cluster: client, pod builder, exec (docs/kubernetes.md)."""

from __future__ import annotations

from airflow_provider_runners.backends.kubernetes.backend import POD_COMMAND, KubernetesBackend

__all__ = ["POD_COMMAND", "KubernetesBackend"]
