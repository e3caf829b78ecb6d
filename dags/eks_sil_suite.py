"""Seed 003 on Kubernetes (EKS): a software-in-the-loop (SIL) test suite, one pod per shard.

``eks_sil_suite`` fans the suite out with dynamic task mapping: the task group ``sil_shard`` is
expanded over the shards, and each mapped instance borrows its own pod (provision, a setup
task) that runs the suite's command for its shard to completion (``RunnerCommandOperator`` with
``POD_COMMAND``: the pod's log is streamed into the task log and its exit code is the task's
state), then deletes it (teardown). ``collect`` gathers every shard's exit code and duration,
and fails the run if a shard failed.

Each pod learns its shard from ``RUNNERS_MAP_INDEX`` (set by the backend from the task's map
index), so the command is the same for all shards; the SIL cases travel in ``SIL_CASES``.
Pods are ``hardened-base`` images pinned by digest, sized by the catalog's ``pod`` profile
``small``, labelled with tenant/pipeline/lineage and stopped by Kubernetes at the ttl
(``activeDeadlineSeconds``) even if Airflow never tears them down.

The Connection id comes from ``RUNNERS_EKS_SIL_CONN_ID`` (default ``runners_kubernetes_default``),
a ``runners_kubernetes`` Connection (docs/kubernetes.md: EKS, kubeconfig or in-cluster). The
test suite points it at a local Kubernetes API (kmock) whose kubelet stand-in runs the pods'
commands as local processes.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task, task_group

from airflow_provider_runners import runner
from airflow_provider_runners.backends.kubernetes import POD_COMMAND
from airflow_provider_runners.exceptions import RunnerCommandError
from airflow_provider_runners.operators.command import RunnerCommandOperator

CONN_ID = os.environ.get("RUNNERS_EKS_SIL_CONN_ID", "runners_kubernetes_default")
#: Provision retries recreate a pod that crash-looped, could not pull its image or stayed
#: unschedulable (the broken pod is deleted first): the retry budget.
PROVISION_RETRIES = int(os.environ.get("RUNNERS_EKS_SIL_RETRIES", "2"))
PROVISION_RETRY_DELAY = timedelta(seconds=float(os.environ.get("RUNNERS_EKS_SIL_RETRY_DELAY_S", "30")))

#: One SIL case per shard: an adaptive-cruise controller following a braking lead vehicle.
SIL_CASES = [
    {"name": "acc_highway_follow", "ego_mps": 30.0, "lead_mps": 27.0, "gap_m": 60.0, "lead_brake_mps2": 0.0},
    {"name": "acc_lead_brakes", "ego_mps": 25.0, "lead_mps": 25.0, "gap_m": 40.0, "lead_brake_mps2": 4.0},
    {"name": "acc_cut_in", "ego_mps": 28.0, "lead_mps": 20.0, "gap_m": 25.0, "lead_brake_mps2": 1.0},
    {"name": "acc_stop_and_go", "ego_mps": 12.0, "lead_mps": 12.0, "gap_m": 15.0, "lead_brake_mps2": 3.0},
]

#: The suite's command: simulate the controller against the plant for the shard's case, 10 ms steps.
SIL_SCRIPT = r"""
import json, os, sys, time
case = json.loads(os.environ["SIL_CASES"])[int(os.environ["RUNNERS_MAP_INDEX"])]
print(f"SIL case {case['name']}: ego {case['ego_mps']} m/s, lead {case['lead_mps']} m/s, gap {case['gap_m']} m")
ego, lead, gap, dt, min_gap, t0 = case["ego_mps"], case["lead_mps"], case["gap_m"], 0.01, 1e9, time.time()
for step in range(3000):
    lead = max(0.0, lead - case["lead_brake_mps2"] * dt) if step < 500 else lead
    desired = 2.0 + 1.5 * ego
    accel = max(-8.0, min(2.0, 0.4 * (gap - desired) + 0.9 * (lead - ego)))
    ego = max(0.0, ego + accel * dt)
    gap += (lead - ego) * dt
    min_gap = min(min_gap, gap)
    if step % 1000 == 0:
        print(f"t={step * dt:5.1f}s ego={ego:5.2f} lead={lead:5.2f} gap={gap:6.2f}")
result = {"case": case["name"], "min_gap_m": round(min_gap, 2), "passed": min_gap > 2.0, "s": round(time.time() - t0, 3)}
with open(os.path.join(os.environ["RUNNERS_WORKSPACE"], "result.json"), "w") as f:
    json.dump(result, f)
print("SIL-RESULT " + json.dumps(result))
sys.exit(0 if result["passed"] else 1)
"""

#: ``backend`` names the backend, so its options model and pod checks run when the DAG is parsed
#: (docs/architecture.md): a bad option or template is a DAG import error, nothing is created.
SPEC = {
    "runner_class": "pod",
    "backend": "kubernetes",
    "profile": "small",
    "environment": os.environ.get("RUNNERS_EKS_SIL_ENVIRONMENT", "dev"),
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "adas", "pipeline": "sil-suite", "cost_center": "cc-4711"},
    "ttl": "30m",
    "options": {
        "command": ["python3", "-c", SIL_SCRIPT],
        "env": {"SIL_CASES": json.dumps(SIL_CASES)},
        "workspace_size": "1Gi",
    },
}


@task_group(group_id="sil_shard")
def sil_shard(shard: int) -> None:
    """One shard: a pod runs the suite for its case, then it is deleted.

    ``shard`` is only what the group is mapped over: the pod reads its shard from
    ``RUNNERS_MAP_INDEX``, which the backend sets from the task's map index.
    """
    with runner(
        "pod",
        conn_id=CONN_ID,
        spec=SPEC,
        ready_timeout=timedelta(minutes=10),
        provision_kwargs={"retries": PROVISION_RETRIES, "retry_delay": PROVISION_RETRY_DELAY},
    ) as pod:
        RunnerCommandOperator(task_id="run", handle=pod, command=POD_COMMAND, timeout="20m")


@task(trigger_rule="all_done")
def collect(**context: Any) -> dict[str, Any]:
    """Every shard's exit code and duration; fails when a shard failed or never ran."""
    ti = context["ti"]
    results = {}
    for index, case in enumerate(SIL_CASES):
        facts = ti.xcom_pull(task_ids="sil_shard.pod.run", key="runner_facts", map_indexes=index) or {}
        results[case["name"]] = {"exit_code": facts.get("exit_code"), "seconds": facts.get("command_seconds")}
    failed = sorted(name for name, r in results.items() if r["exit_code"] != 0)
    print(json.dumps(results, indent=2))
    if failed:
        raise RunnerCommandError(f"SIL shards failed: {failed}")
    return {"passed": len(results), "results": results}


with DAG(
    dag_id="eks_sil_suite",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    dagrun_timeout=timedelta(hours=1),
    tags=["runners", "example", "kubernetes"],
    doc_md=__doc__,
) as eks_sil_suite:
    sil_shard.expand(shard=list(range(len(SIL_CASES)))) >> collect()

if __name__ == "__main__":
    eks_sil_suite.test()
