"""``dags/eks_sil_suite.py`` and the ``kubernetes`` backend through real dag.test() runs.

The Kubernetes API is kmock's KubernetesEmulator over HTTP, taught the real API's answers
(409/404 Status objects, selectors, graceful deletion, logs, exec), with a kubelet stand-in that
runs each pod's command as a real local process (tests/fakes/kubernetes.py). The backend talks to
it with the real ``kubernetes`` client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_runners.backends.kubernetes import KubernetesBackend
from airflow_provider_runners.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.lineage import MANAGED_BY
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from tests.fakes.kubernetes import KubeCluster
from tests.integration.conftest import run_dag, ti_states, xcoms

pytestmark = pytest.mark.integration

CONN_ID = "runners_k8s_test"
DAG_ID = "eks_sil_suite"
NAMESPACE = "sil"
# Read when the DagBag parses the DAG file (module import time, before any fixture runs).
os.environ["RUNNERS_EKS_SIL_CONN_ID"] = CONN_ID
os.environ["RUNNERS_EKS_SIL_RETRY_DELAY_S"] = "0"
SHARDS = 4


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeCluster]:
    with KubeCluster() as kube:
        extra = {"namespace": NAMESPACE, "failure_grace_s": 0.3, "grace_period_s": 5}
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{CONN_ID.upper()}",
            json.dumps({"conn_type": "runners_kubernetes", "host": kube.url, "extra": extra}),
        )
        monkeypatch.setattr(KubernetesBackend, "poll_interval", 0.05)
        monkeypatch.setattr(KubernetesBackend, "teardown_poll_s", 0.05)
        monkeypatch.setattr(KubernetesBackend, "command_poll_s", 0.2)
        SharedStatusPoller._pollers.clear()
        yield kube
        assert kube.kubelet is not None
        assert kube.kubelet.errors == []
    assert not kube.kubelet.live_processes(), "a pod's process outlived the test"


def _values(run_id: str) -> dict[tuple[str, str, int], Any]:
    out = {}
    for task, key, value in xcoms(DAG_ID, run_id):
        out.setdefault((task, key), []).append(value)
    return out  # type: ignore[return-value]


def _creates(kube: KubeCluster) -> list[Any]:
    return [r for r in kube.server.requests_by("airflow-provider-runners") if r.method == "POST"]


def test_sil_suite_fans_out_pods_runs_them_and_deletes_them(dagbag: Any, cluster: KubeCluster) -> None:
    dr = run_dag(dagbag, DAG_ID)
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    assert set(states.values()) == {"success"}
    creates = _creates(cluster)
    assert len(creates) == SHARDS
    bodies = [r.data for r in creates]
    assert sorted(b["metadata"]["name"] for b in bodies) == sorted({b["metadata"]["name"] for b in bodies})
    for body in bodies:
        labels = body["metadata"]["labels"]
        assert labels["managed-by"] == MANAGED_BY
        assert labels["tenant"] == "adas"
        assert labels["pipeline"] == "sil-suite"
        assert int(labels["expires-at"]) > 0
        assert labels["runner-lineage"]
        spec = body["spec"]
        assert spec["activeDeadlineSeconds"] == 30 * 60
        assert spec["restartPolicy"] == "Never"
        main = spec["containers"][0]
        assert main["image"].startswith("hardened-base@sha256:9c8b7a6f")
        assert main["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
        assert {"name": "workspace", "emptyDir": {"sizeLimit": "1Gi"}} in spec["volumes"]
    assert sorted(
        next(e["value"] for e in b["spec"]["containers"][0]["env"] if e["name"] == "RUNNERS_MAP_INDEX")
        for b in bodies
    ) == ["0", "1", "2", "3"]
    assert cluster.pods() == []  # every pod deleted and gone
    assert cluster.kubelet is not None
    assert len(cluster.kubelet.removed_workspaces) == SHARDS
    assert not any(p.exists() for p in cluster.kubelet.removed_workspaces)

    collected = next(
        v for (task, key), v in _values(dr.run_id).items() if task == "collect" and key == "return_value"
    )
    assert collected[0]["passed"] == SHARDS
    assert set(collected[0]["results"]) == {
        "acc_highway_follow",
        "acc_lead_brakes",
        "acc_cut_in",
        "acc_stop_and_go",
    }

    handles = [
        RunnerHandle.from_xcom(v) for v in _values(dr.run_id)[("sil_shard.pod.provision", HANDLE_XCOM_KEY)]
    ]
    assert len({h.resource_id for h in handles}) == SHARDS
