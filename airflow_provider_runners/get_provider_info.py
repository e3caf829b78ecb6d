"""Provider metadata returned through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_runners import __version__


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
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Runners", "python-modules": ["airflow_provider_runners.sensors.runners"]}
        ],
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
        "connection-types": [
            {
                "connection-type": "runners_local_dask",
                "hook-class-name": "airflow_provider_runners.hooks.runner.LocalDaskRunnerHook",
                "hook-name": "Runners: local Dask cluster",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "login", "schema", "password"],
                    "relabeling": {},
                    "placeholders": {
                        "extra": '{"state_dir": "/opt/airflow/runners/local_dask", "worker_env": {"AWS_PROFILE": "etl"}}'
                    },
                },
            },
            {
                "connection-type": "runners_dataproc_dask",
                "hook-class-name": "airflow_provider_runners.hooks.runner.DataprocDaskRunnerHook",
                "hook-name": "Runners: Dataproc Dask cluster",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "login", "schema", "password"],
                    "relabeling": {},
                    "placeholders": {
                        "extra": '{"project_id": "my-project", "region": "europe-west1", "zone": "europe-west1-b", '
                        '"subnetwork_uri": "projects/my-project/regions/europe-west1/subnetworks/private", '
                        '"service_account": "dask@my-project.iam.gserviceaccount.com", '
                        '"kms_key_name": "projects/my-project/locations/europe-west1/keyRings/r/cryptoKeys/k", '
                        '"gcp_conn_id": "google_cloud_default"}'
                    },
                },
            },
            {
                "connection-type": "runners_local_host",
                "hook-class-name": "airflow_provider_runners.hooks.runner.LocalHostRunnerHook",
                "hook-name": "Runners: local host (subprocess on the worker)",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "login", "schema", "password"],
                    "relabeling": {},
                    "placeholders": {
                        "extra": '{"state_dir": "/opt/airflow/runners/local_host", "host_env": {"JAVA_HOME": "/usr/lib/jvm/default"}}'
                    },
                },
            },
            {
                "connection-type": "runners_labgrid",
                "hook-class-name": "airflow_provider_runners.hooks.runner.LabgridRunnerHook",
                "hook-name": "Runners: labgrid bench",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "password"],
                    "relabeling": {"host": "Coordinator host", "port": "Coordinator port (20408)"},
                    "placeholders": {
                        "host": "labgrid-coordinator",
                        "port": "20408",
                        "extra": '{"owner_host": "airflow", "keepalive_s": 15, '
                        '"health_command": "labgrid-client -p $LG_PLACE power get"}',
                    },
                },
            },
            {
                "connection-type": "runners_bench_http",
                "hook-class-name": "airflow_provider_runners.hooks.runner.BenchHttpRunnerHook",
                "hook-name": "Runners: HTTP bench platform",
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {"schema": "Scheme (http/https)", "password": "API token"},
                    "placeholders": {
                        "host": "benches.example.internal",
                        "schema": "https",
                        "extra": '{"base_path": "/api/v1", "timeout_s": 10, "retries": 3}',
                    },
                },
            },
            {
                "connection-type": "runners_ec2",
                "hook-class-name": "airflow_provider_runners.hooks.runner.Ec2RunnerHook",
                "hook-name": "Runners: EC2 dedicated host",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "login", "schema", "password"],
                    "relabeling": {},
                    "placeholders": {
                        "extra": '{"region_name": "eu-west-1", "aws_conn_id": "aws_default", '
                        '"instance_profile": "runner-host", "network_profiles": {"private": '
                        '{"subnet_id": "subnet-0abc", "security_group_ids": ["sg-0abc"]}}, '
                        '"claim_table": "airflow-runners-ec2-claims", "pool_idle_ttl": "24h"}'
                    },
                },
            },
            {
                "connection-type": "runners_kubernetes",
                "hook-class-name": "airflow_provider_runners.hooks.runner.KubernetesRunnerHook",
                "hook-name": "Runners: Kubernetes pod",
                "ui-field-behaviour": {
                    "hidden-fields": ["port", "login", "schema"],
                    "relabeling": {
                        "host": "API server URL (optional)",
                        "password": "Bearer token (optional)",
                    },
                    "placeholders": {
                        "extra": '{"eks_cluster_name": "sil", "region_name": "eu-west-1", "aws_conn_id": "aws_default", '
                        '"namespace": "sil-runners", "qps": 5, "burst": 10, '
                        '"pod_template_file": "/opt/airflow/config/sil-pod.yaml", "service_account": "sil-runner"}'
                    },
                },
            },
        ],
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
                },
            }
        },
    }
