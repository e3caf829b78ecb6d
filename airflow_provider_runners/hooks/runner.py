"""Hooks: one thin class per runner Connection type, for the Connection form and ``get_backend``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, get_backend

if TYPE_CHECKING:
    from airflow_provider_runners.core.backend import Backend


class RunnerHook(BaseHook):
    """Gives the backend configured by a runner Connection (``runners_*`` conn types)."""

    conn_name_attr = "runner_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "runners"
    hook_name = "Runners"
    hidden_fields: ClassVar[list[str]] = []

    def __init__(self, runner_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runner_conn_id = runner_conn_id

    def get_conn(self) -> Backend:
        return get_backend(self.runner_conn_id)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {"hidden_fields": cls.hidden_fields, "relabeling": {}}


class LocalDaskRunnerHook(RunnerHook):
    """Connection type ``runners_local_dask``: a LocalCluster in its own process on the worker."""

    conn_type = "runners_local_dask"
    hook_name = "Runners: local Dask cluster"
    hidden_fields: ClassVar[list[str]] = ["host", "port", "login", "schema", "password"]


class DataprocDaskRunnerHook(RunnerHook):
    """Connection type ``runners_dataproc_dask``: ephemeral Dataproc clusters running Dask.

    Everything is in the extras (project_id, region, zone, subnetwork_uri, ...; see
    :mod:`airflow_provider_runners.backends.dataproc_dask.backend`); credentials come from the google
    Connection named by ``gcp_conn_id``, never from this one.
    """

    conn_type = "runners_dataproc_dask"
    hook_name = "Runners: Dataproc Dask cluster"
    hidden_fields: ClassVar[list[str]] = ["host", "port", "login", "schema", "password"]


class LocalHostRunnerHook(RunnerHook):
    """Connection type ``runners_local_host``: commands as subprocesses on the worker (a local
    stand-in for a dedicated host). Optional extras: ``state_dir``, ``host_env``."""

    conn_type = "runners_local_host"
    hook_name = "Runners: local host (subprocess on the worker)"
    hidden_fields: ClassVar[list[str]] = ["host", "port", "login", "schema", "password"]


class LabgridRunnerHook(RunnerHook):
    """Connection type ``runners_labgrid``: benches reserved on a labgrid coordinator (host, port).

    Extras: see :mod:`airflow_provider_runners.backends.labgrid.backend` (owner_host, keepalive_s,
    health_command, health_timeout_s, coordinator_down_timeout_s, rpc_timeout_s).
    """

    conn_type = "runners_labgrid"
    hook_name = "Runners: labgrid bench"
    hidden_fields: ClassVar[list[str]] = ["login", "schema", "password"]


class BenchHttpRunnerHook(RunnerHook):
    """Connection type ``runners_bench_http``: an HTTP bench platform (docs/bench_http.openapi.yaml).

    host/port/schema (``http`` or ``https``) locate the API; the password holds its bearer
    token (a secret: masked, never in XCom, handles or evidence).
    """

    conn_type = "runners_bench_http"
    hook_name = "Runners: HTTP bench platform"
    hidden_fields: ClassVar[list[str]] = ["login"]


class Ec2RunnerHook(RunnerHook):
    """Connection type ``runners_ec2``: dedicated EC2 hosts (warm pool or cold start, SSM commands).

    Everything is in the extras (region_name, network_profiles, instance_profile, claim_table, ...;
    see :mod:`airflow_provider_runners.backends.ec2.backend` and docs/ec2.md); AWS credentials come from
    the Amazon provider Connection named by ``aws_conn_id``, never from this one.
    """

    conn_type = "runners_ec2"
    hook_name = "Runners: EC2 dedicated host"
    hidden_fields: ClassVar[list[str]] = ["host", "port", "login", "schema", "password"]


class KubernetesRunnerHook(RunnerHook):
    """Connection type ``runners_kubernetes``: an ephemeral pod per execution (EKS or any cluster).

    Host: an API server URL (password: a bearer token), or auth from the extras (``kubeconfig``,
    ``in_cluster``, ``eks_cluster_name`` + ``region_name`` + ``aws_conn_id``); see
    :mod:`airflow_provider_runners.backends.kubernetes.backend`.
    """

    conn_type = "runners_kubernetes"
    hook_name = "Runners: Kubernetes pod"
    hidden_fields: ClassVar[list[str]] = ["port", "login", "schema"]
