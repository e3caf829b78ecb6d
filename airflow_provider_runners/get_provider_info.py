"""Provider metadata returned through the ``apache_airflow_provider`` entry point.

``connection-types`` is generated from the backend classes shipped in this distribution (their
conn type, hook name and form); third-party backends declare theirs in their own provider info.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_runners import __version__
from airflow_provider_runners.backends.registry import builtin_backend_classes

# Every Airflow process loads this module at start (provider discovery, while Airflow reads its
# config) — also the dag-processor's manager, which then forks a child for every parse of a DAG
# file. The catalog's pydantic models are what the parse-time spec check of ``runner(...)``
# needs; built here once per process (about 0.02 s), a parse does not build them again
# (docs/benchmarks.md, "Parse time per DAG file"). The module imports only pydantic, yaml and
# core/specs.py: nothing of Airflow, which is still initialising.
from airflow_provider_runners.core import catalog as _parse_time_models  # noqa: F401


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-runners",
        "name": "Runners",
        "description": "Borrow compute for a DAG (Dask clusters, dedicated hosts, pods, hardware benches) "
        "as ordinary tasks, with evidence and guaranteed teardown.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "Runners", "external-doc-url": "https://github.com/airflow-provider-runners"}
        ],
        "operators": [
            {
                "integration-name": "Runners",
                "python-modules": [
                    "airflow_provider_runners.operators.provision",
                    "airflow_provider_runners.operators.teardown",
                    "airflow_provider_runners.operators.work",
                    "airflow_provider_runners.operators.command",
                    "airflow_provider_runners.operators.burst",
                    "airflow_provider_runners.operators.pool",
                    "airflow_provider_runners.operators.job_array",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Runners", "python-modules": ["airflow_provider_runners.sensors.runners"]}
        ],
        "notifications": ["airflow_provider_runners.notifications.budget.BudgetThresholdNotifier"],
        "task-decorators": [
            {"name": "runner", "class-name": "airflow_provider_runners.decorators.runner.runner_task"}
        ],
        "extra-links": [
            "airflow_provider_runners.links.RunnerDashboardLink",
            "airflow_provider_runners.links.DataprocClusterLink",
            "airflow_provider_runners.links.Ec2InstanceLink",
            "airflow_provider_runners.links.RunnerPodLink",
            "airflow_provider_runners.links.BenchLink",
        ],
        "hooks": [
            {"integration-name": "Runners", "python-modules": ["airflow_provider_runners.hooks.runner"]}
        ],
        "triggers": [
            {
                "integration-name": "Runners",
                "python-modules": [
                    "airflow_provider_runners.triggers.readiness",
                    "airflow_provider_runners.triggers.sensors",
                ],
            }
        ],
        "connection-types": [cls.connection_type_info() for cls in builtin_backend_classes()],
        "config": {
            "runners": {
                "description": "airflow-provider-runners: catalog, environment and evidence ledger.",
                "options": {
                    "catalog_path": {
                        "description": "Path of the runner catalog YAML. Empty: the catalog shipped with the provider.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/config/runners-catalog.yaml",
                        "default": "",
                    },
                    "environment": {
                        "description": "Catalog environment used when a spec names none. Empty: the "
                        "catalog's default_environment.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "prod",
                        "default": "",
                    },
                    "evidence_path": {
                        "description": "Base URL of the evidence ledger (file://, s3://, gs://). Empty: "
                        "file://$AIRFLOW_HOME/runners/evidence.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://my-bucket/runners/evidence",
                        "default": "",
                    },
                    "evidence_conn_id": {
                        "description": "Connection used for the evidence_path object store (s3/gs).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "aws_default",
                        "default": "",
                    },
                    "registry": {
                        "description": "Runner registry (budgets, burst, reaper): empty for a local SQLite "
                        "file in $AIRFLOW_HOME/runners, sqlite:///PATH, dynamodb://TABLE, or none.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "dynamodb://airflow-runners-registry",
                        "default": "",
                    },
                    "registry_conn_id": {
                        "description": "AWS Connection for a dynamodb:// registry.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "aws_default",
                        "default": "",
                    },
                    "registry_namespace": {
                        "description": "Partition of the registry this deployment uses. Empty: default.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "prod",
                        "default": "",
                    },
                    "pod_link_template": {
                        "description": "URL of a runner pod for the 'Pod' button of runner tasks, with "
                        "{namespace}, {pod} and {cluster}. Empty: no button.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "https://k8s-dashboard.example/#/pod/{namespace}/{pod}",
                        "default": "",
                    },
                    "bench_link_template": {
                        "description": "URL of a bench for the 'Bench' button of runner tasks, with "
                        "{bench}, {api} and {coordinator}. Empty: the HTTP bench platform's /benches.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "https://benches.example/ui/{bench}",
                        "default": "",
                    },
                    "reaper_conn_ids": {
                        "description": "Comma-separated runner Connections the reaper sweeps besides "
                        "runners_default, AIRFLOW_CONN_* variables and (CLI) the metadata DB.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "runners_ec2,runners_dataproc",
                        "default": "",
                    },
                    "heartbeat_interval": {
                        "description": "Seconds between heartbeats of a runner's registry record from "
                        "whoever holds it (readiness trigger, work and command tasks, @task.runner).",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "30",
                        "default": "30",
                    },
                    "heartbeat_expiry": {
                        "description": "Seconds after its last heartbeat a held runner's record expires: "
                        "the reaper then ends the runner (docs/cost.md, heartbeats).",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "3600",
                        "default": "3600",
                    },
                },
            }
        },
    }
