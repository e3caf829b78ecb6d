"""Monthly partitioned bulk extract on a dedicated XLarge host over a private network profile.

Seed 000's pattern: a host with pinned capacity, the vendor driver bundle and a private route
is provisioned for the window, pulls monthly partitions (one mapped command per month),
writes them with checkpoints and idempotent paths to object storage, sends invalid records to
a DLQ path, and is torn down afterwards — also when an extract fails.

Locally (docker-compose by default, the test suite) the host is the Airflow worker (``local_host``,
Connection ``runners_local_host`` needs no definition) and object storage is ``file://``.
In production point ``RUNNERS_EXTRACT_CONN_ID`` at a ``runners_ec2`` Connection and
``RUNNERS_EXTRACT_URL`` at ``s3://bucket/prefix`` and ``RUNNERS_EXTRACT_ERP_SECRET`` at a
Secrets Manager reference (``aws-sm:prod/erp#password``); the program (dags/extract_job.py)
must then be on the host image. ``RUNNERS_EXTRACT_ENVIRONMENT`` picks the catalog environment
whose ``XLarge`` profile has an instance type (``dev`` / ``prod``; default: the configured one).
Locally the ERP password comes from the ``erp_source`` Connection at run time. docker-compose.yaml
sets all three for ``RUNNERS_EXTRACT_CONN_ID=runners_ec2``: an EC2 host on its ``moto`` service.

``dag_run.conf``: ``months`` (default 2), ``rows_per_day`` (2000), ``url`` (storage root),
``crash_once_after_chunk`` (restart drill: the first try of each extract dies after that chunk
and the retry resumes from its checkpoints).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_runners import RunnerCommandOperator, runner

CONN_ID = os.environ.get("RUNNERS_EXTRACT_CONN_ID", "runners_local_host")
#: Where the ERP password lives: a Connection locally; on EC2 a reference the host resolves
#: with its instance profile, e.g. "aws-sm:prod/erp#password" (docs/commands.md).
ERP_SECRET = os.environ.get("RUNNERS_EXTRACT_ERP_SECRET") or "conn:erp_source#password"
ENVIRONMENT = os.environ.get("RUNNERS_EXTRACT_ENVIRONMENT") or None
JOB = str(Path(__file__).with_name("extract_job.py"))

HOST_SPEC = {
    "runner_class": "dedicated_host",
    "profile": "XLarge",
    "network_profile": "private",
    "image": "hardened-base@2026.11",
    "driver_bundles": ["hana-jdbc@2.19.16"],
    "tags": {"tenant": "finance", "pipeline": "erp-monthly-extract"},
    "ttl": "6h",
    **({"environment": ENVIRONMENT} if ENVIRONMENT else {}),
}


def _storage_root(conf: dict[str, Any]) -> str:
    default = "file://" + os.path.join(
        os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "runners", "raw_stage"
    )
    return str(conf.get("url") or os.environ.get("RUNNERS_EXTRACT_URL") or default).rstrip("/")


with DAG(
    dag_id="dedicated_host_extract",
    description="Monthly ERP partitions extracted on a dedicated host, checkpoints and DLQ in object storage",
    schedule="@monthly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["runners", "dedicated_host", "example"],
    default_args={"retries": 0},
):

    @task
    def plan_partitions(dag_run: Any = None, logical_date: Any = None) -> list[list[str]]:
        """One extract command per month partition; paths depend only on the partition."""
        from extract_job import previous_months

        conf = dict(getattr(dag_run, "conf", None) or {})
        root = _storage_root(conf)
        # The run's logical date (a manual run may have none: then when it was due to run).
        when = logical_date or getattr(dag_run, "run_after", None) or datetime.now(UTC)
        end = when.astimezone(UTC).date()
        commands = []
        for partition in previous_months(end, int(conf.get("months", 2))):
            command = [
                "python3",
                JOB,
                f"--partition={partition}",
                f"--output={root}/erp/ledger",
                f"--checkpoints={root}/_checkpoints/{dag_run.run_id}",
                f"--dlq={root}/_dlq/erp/ledger",
                f"--rows-per-day={int(conf.get('rows_per_day', 2000))}",
            ]
            if conf.get("crash_once_after_chunk") is not None:
                command.append(f"--crash-once-after-chunk={int(conf['crash_once_after_chunk'])}")
            commands.append(command)
        return commands

    @task
    def verify_partitions(commands: list[list[str]]) -> dict[str, Any]:
        """Each partition complete (``_SUCCESS``), its row count equal to the files' lines."""
        import json

        import fsspec

        summary: dict[str, Any] = {"partitions": {}, "rows": 0, "dlq": 0}
        for command in commands:
            args = dict(part.removeprefix("--").split("=", 1) for part in command[2:])
            month = f"{args['output']}/month={args['partition']}"
            fs, _ = fsspec.core.url_to_fs(month)
            totals = json.loads(fs.cat_file(f"{month}/_SUCCESS"))
            lines = sum(len(fs.cat_file(path).splitlines()) for path in fs.glob(f"{month}/part-*.jsonl"))
            if lines != totals["rows"]:
                raise ValueError(f"{month}: {lines} rows in files, {totals['rows']} reported")
            summary["partitions"][args["partition"]] = {"rows": lines, "dlq": totals["dlq"]}
            summary["rows"] += lines
            summary["dlq"] += totals["dlq"]
        return summary

    plan = plan_partitions()
    with runner("host", conn_id=CONN_ID, spec=HOST_SPEC, ready_timeout=timedelta(minutes=20)) as host:
        extract = RunnerCommandOperator.partial(
            task_id="extract",
            handle=host,
            env={"ERP_USER": "extract", "ERP_DRIVER": "hana-jdbc-2.19.16"},
            secret_env={"ERP_PASSWORD": ERP_SECRET},
            timeout="2h",
            retries=1,
            retry_delay=timedelta(seconds=1),
        ).expand(command=plan)
    extract >> verify_partitions(plan)
