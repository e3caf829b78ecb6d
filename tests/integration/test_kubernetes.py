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
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.kubernetes.backend import KubernetesBackend
from airflow_provider_runners.core.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from tests.fakes.kubernetes import KubeCluster
from tests.integration.conftest import chain_for, run_dag, ti_states, xcoms

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


ONCE = "k8s_pod_once"


def _provisions(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    return [e for e in chain_for(dag_id, run_id).entries if e["event"] == "provision"]


def test_crashloop_pod_is_deleted_recreated_and_the_command_runs(dagbag: Any, cluster: KubeCluster) -> None:
    assert cluster.kubelet is not None
    cluster.kubelet.script = ["crashloop"]
    dr = run_dag(dagbag, ONCE)
    assert str(dr.state) == "success", ti_states(dr)
    creates = _creates(cluster)
    assert len(creates) == 2
    assert creates[0].data["metadata"]["name"] == creates[1].data["metadata"]["name"]  # same name: lineage
    tokens = [c.data["metadata"]["annotations"]["airflow-provider-runners/attempt-token"] for c in creates]
    assert [t[-3:] for t in tokens] == ["-t1", "-t2"]
    provisions = _provisions(ONCE, dr.run_id)
    assert [(e["try_number"], e["outcome"]) for e in provisions] == [(1, "up_for_retry"), (2, "success")]
    message = provisions[0]["error"]["message"]
    assert "CrashLoopBackOff" in message
    assert "Back-off restarting failed container main" in message  # the pod's events
    assert provisions[0]["facts"]["cleanup"]["torn_down"] is True
    work = next(e for e in chain_for(ONCE, dr.run_id).entries if e["event"] == "work")
    assert work["facts"]["exit_code"] == 0
    assert cluster.pods() == []


def test_permanent_image_pull_failure_fails_clearly_and_deletes_every_pod(
    dagbag: Any, cluster: KubeCluster
) -> None:
    assert cluster.kubelet is not None
    cluster.kubelet.default = "imagepull"
    dr = run_dag(dagbag, ONCE)
    states = ti_states(dr)
    assert str(dr.state) == "failed"
    assert states["pod.provision"] == "failed"
    assert states["pod.run"] == "upstream_failed"
    assert len(_creates(cluster)) == 3  # the first try and the retry budget of 2
    provisions = _provisions(ONCE, dr.run_id)
    assert [e["outcome"] for e in provisions] == ["up_for_retry", "up_for_retry", "failed"]
    message = provisions[-1]["error"]["message"]
    assert "ImagePullBackOff" in message
    assert 'Back-off pulling image "hardened-base@sha256:9c8b7a6f' in message
    assert "events: " in message
    assert 'Failed to pull image "hardened-base@sha256:' in message
    assert cluster.pods() == []  # each broken pod was deleted before the next try


def test_retry_after_crash_adopts_the_pod_and_makes_one(
    dagbag: Any, cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_runners.operators import provision

    real_acquire = provision.acquire
    crashed: list[str] = []

    def crash_once(backend: Any, request: Any) -> Any:
        result = real_acquire(backend, request)
        if not crashed:
            crashed.append(result[0].resource_id)
            raise RuntimeError("simulated worker crash right after the create call")
        return result

    monkeypatch.setattr(provision, "acquire", crash_once)
    dr = run_dag(dagbag, ONCE)
    assert str(dr.state) == "success", ti_states(dr)
    assert len(_creates(cluster)) == 1
    provisions = _provisions(ONCE, dr.run_id)
    assert provisions[-1]["facts"]["acquisition"] == "adopted"
    assert provisions[-1]["runner"]["resource_id"] == crashed[0]
    assert cluster.pods() == []


def test_teardown_twice_is_success_and_evidence_has_the_pod_facts(dagbag: Any, cluster: KubeCluster) -> None:
    from airflow_provider_runners.backends.registry import get_backend

    dr = run_dag(dagbag, ONCE)
    assert str(dr.state) == "success", ti_states(dr)
    values = {(t, k): v for t, k, v in xcoms(ONCE, dr.run_id)}
    handle = RunnerHandle.from_xcom(values[("pod.provision", HANDLE_XCOM_KEY)])
    backend = get_backend(CONN_ID)
    assert backend.teardown(handle).existed is False  # the DAG's teardown already deleted it
    assert backend.teardown(handle).existed is False
    entries = chain_for(ONCE, dr.run_id).entries
    facts = entries[0]["facts"]
    assert facts["pod"] == handle.resource_id
    assert facts["pod_uid"] == handle.details["pod_uid"]
    assert facts["node"] == "node-1"
    assert facts["namespace"] == NAMESPACE
    assert facts["cluster"] == cluster.url
    assert facts["image_digests"]["main"].startswith("sha256:9c8b7a6f5e4d")
    assert facts["service_account"] == "default"
    assert facts["timings"]["created"]
    assert facts["timings"]["started"]
    work = next(e for e in entries if e["event"] == "work")
    assert work["facts"]["exit_code"] == 0
    assert work["facts"]["restarts"] == 0
    teardown = entries[-1]["facts"]["teardown"][0]
    assert teardown["existed"] is True
    assert teardown["exit_codes"] == {"main": 0}
    assert teardown["phase"] == "Succeeded"


def test_bad_pod_template_is_a_dag_import_error_and_nothing_is_created(
    tmp_path: Path, airflow_db: Any, cluster: KubeCluster
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    template = tmp_path / "pod.yaml"
    template.write_text("apiVersion: v1\nkind: Pod\nspec:\n  containers: []\n")
    (tmp_path / "bad_k8s.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG\n"
        "from airflow_provider_runners import runner\n"
        "spec = {'runner_class': 'pod', 'backend': 'kubernetes', 'profile': 'small', 'environment': 'dev',\n"
        "        'image': 'hardened-base@2026.11', 'tags': {'tenant': 'qa'},\n"
        f"        'options': {{'pod_template_file': {str(template)!r}, 'command': 'true'}}}}\n"
        "with DAG('bad_k8s', schedule=None, start_date=datetime(2026, 1, 1)):\n"
        f"    with runner('pod', conn_id={CONN_ID!r}, spec=spec):\n"
        "        pass\n"
    )
    bag = DagBag(dag_folder=str(tmp_path))
    assert "bad_k8s" not in bag.dag_ids
    (error,) = bag.import_errors.values()
    assert "spec.options.pod_template_file: spec.containers must be a non-empty list of containers" in error
    assert cluster.server.requests_by("airflow-provider-runners") == []
