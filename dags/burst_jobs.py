"""Job code for dags/hybrid_burst.py: a local work queue and the loop that drains it on a runner.

``LocalQueue`` stands in for SQS on one host: one JSON file per job in
``$AIRFLOW_HOME/runners/burst_queue/<name>/``; a worker claims a job by renaming its file into
``claimed/`` (atomic), so two runners never take the same job. ``drain`` runs in a work task
with a Dask client on a runner: claim, compute, repeat until the queue is empty or the burst
planner marks the runner ``draining``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class LocalQueue:
    """A directory of job files; see the module docstring."""

    def __init__(self, name: str) -> None:
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        self.path = Path(home) / "runners" / "burst_queue" / name
        (self.path / "claimed").mkdir(parents=True, exist_ok=True)

    def put(self, jobs: list[dict[str, Any]]) -> int:
        stamp = time.time_ns()
        for i, job in enumerate(jobs):
            tmp = self.path / f".job-{stamp}-{i:06d}.tmp"
            tmp.write_text(json.dumps(job))
            tmp.rename(self.path / f"job-{stamp}-{i:06d}.json")
        return len(jobs)

    def depth(self) -> int:
        return sum(1 for _ in self.path.glob("job-*.json"))

    def claim(self) -> dict[str, Any] | None:
        for path in sorted(self.path.glob("job-*.json")):
            target = self.path / "claimed" / f"{path.name}.{os.getpid()}"
            try:
                path.rename(target)
            except FileNotFoundError:  # another worker took it first
                continue
            return json.loads(target.read_text())
        return None


def simulate_job(job: dict[str, Any]) -> float:
    """The work of one job (runs on a Dask worker): a small, deterministic computation."""
    total = 0.0
    for i in range(int(job.get("size", 20_000))):
        total += (i % 7) * 0.5
    return total


def drain(
    client: Any, queue: str, handle: Any = None, launch: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run jobs from ``queue`` on the runner until the queue is empty (or the runner is drained)."""
    from airflow_provider_runners.operators.burst import should_drain

    q = LocalQueue(queue)
    done = 0
    while True:
        if handle is not None and should_drain(handle):
            return {"jobs": done, "stopped": "draining", "slot": (launch or {}).get("slot")}
        batch = [job for job in (q.claim() for _ in range(4)) if job is not None]
        if not batch:
            return {"jobs": done, "stopped": "queue empty", "slot": (launch or {}).get("slot")}
        client.gather(client.map(simulate_job, batch, pure=False))
        done += len(batch)


def drain_sqs(
    client: Any, queue_url: str, aws_conn_id: str, handle: Any = None, launch: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Like :func:`drain`, for an SQS queue: receive up to 10 jobs, run them on the runner, delete
    them; until the queue is empty (or the runner is drained). Jobs are JSON message bodies."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    from airflow_provider_runners.operators.burst import should_drain

    sqs = SqsHook(aws_conn_id=aws_conn_id).get_conn()
    done = 0
    while True:
        if handle is not None and should_drain(handle):
            return {"jobs": done, "stopped": "draining", "slot": (launch or {}).get("slot")}
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return {"jobs": done, "stopped": "queue empty", "slot": (launch or {}).get("slot")}
        jobs = [json.loads(m["Body"]) for m in messages]
        client.gather(client.map(simulate_job, jobs, pure=False))
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        done += len(messages)
