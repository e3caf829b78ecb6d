"""Seed 001's job array on EC2 hosts: each host runs a *drain command* over SSM (docs/cost.md).

What it is for: the burst cycle (``operators/job_array.py``) keeps a pool of ``dedicated_host``
runners and, while the SQS queue holds jobs, sends every idle host this loop through SSM Run
Command (the same ``AWS-RunShellScript`` path as ``RunnerCommandOperator``)::

    receive one message (aws sqs receive-message, instance-profile credentials)
    -> run the job command with the message body in $RUNNER_JOB_BODY
    -> exit 0: delete the message; otherwise leave it (SQS redelivers it after its visibility timeout)
    until the queue is empty, then print "drained jobs=N failed=M" and exit 0

The host keeps running when the loop ends (warm for the next cycle); only the cycle's
scale-down or the host's ttl ends it. Job bodies are one line (JSON). The instance profile
needs ``sqs:ReceiveMessage`` and ``sqs:DeleteMessage`` on the queue.

Which host is busy: the command id is written to the instance's ``runner-drain-command`` tag;
the host is busy while that invocation is ``Pending`` / ``InProgress``. Creates nothing but SSM
commands and that tag; cancel a drain by hand with ``aws ssm cancel-command --command-id ID``.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from airflow_provider_runners.backends.ec2 import ssm as _ec2_ssm

DRAIN_TAG = "runner-drain-command"
BUSY = frozenset({"Pending", "InProgress", "Delayed"})
_RESULT_RE = re.compile(r"drained jobs=(\d+) failed=(\d+)")


def drain_script(queue_url: str, region: str, job_command: str, max_jobs: int = 0) -> str:
    """The bash loop above (``max_jobs`` > 0 stops after that many jobs)."""
    q, r = shlex.quote(queue_url), shlex.quote(region)
    return "\n".join(
        [
            "set +x",
            "exec 2>&1",
            f"export RUNNER_JOB_QUEUE_URL={q}",
            f"JOB_COMMAND={shlex.quote(job_command)}",
            "jobs=0; failed=0",
            "while :; do",
            f"  if [ {int(max_jobs)} -gt 0 ] && [ $((jobs + failed)) -ge {int(max_jobs)} ]; then break; fi",
            (
                f"  msg=$(aws sqs receive-message --queue-url {q} --region {r} --max-number-of-messages 1 "
                "--wait-time-seconds 0 --query 'Messages[0].[ReceiptHandle,Body]' --output text) || exit 98"
            ),
            '  if [ -z "$msg" ] || [ "$msg" = "None" ]; then break; fi',
            "  receipt=${msg%%$'\\t'*}; body=${msg#*$'\\t'}",
            '  if RUNNER_JOB_BODY="$body" bash -c "$JOB_COMMAND"; then',
            f'    aws sqs delete-message --queue-url {q} --region {r} --receipt-handle "$receipt" || exit 98',
            "    jobs=$((jobs + 1))",
            "  else",
            "    failed=$((failed + 1))",
            "  fi",
            "done",
            'echo "drained jobs=$jobs failed=$failed"',
        ]
    )


def start_drain(backend: Any, instance_id: str, script: str, name: str, timeout_s: float) -> str:
    """Send the drain script to one host; tag the host with the command id. Returns the id."""
    command_id = _ec2_ssm.send(backend.client("ssm"), instance_id, script, name, timeout_s)
    backend.client("ec2").create_tags(Resources=[instance_id], Tags=[{"Key": DRAIN_TAG, "Value": command_id}])
    return command_id


def drain_state(backend: Any, instance_id: str, tags: dict[str, str]) -> dict[str, Any]:
    """``{"busy": bool, "status": ..., "jobs": n, "failed": n}`` of the host's last drain command."""
    command_id = tags.get(DRAIN_TAG)
    if not command_id:
        return {"busy": False, "status": None, "jobs": 0, "failed": 0}
    inv = _ec2_ssm.invocation(backend.client("ssm"), command_id, instance_id)
    if inv is None:
        return {"busy": True, "status": "Pending", "jobs": 0, "failed": 0, "command_id": command_id}
    status = inv.get("Status", "Pending")
    found = _RESULT_RE.findall(inv.get("StandardOutputContent") or "")
    jobs, failed = (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)
    return {
        "busy": status in BUSY,
        "status": status,
        "jobs": jobs,
        "failed": failed,
        "command_id": command_id,
    }
