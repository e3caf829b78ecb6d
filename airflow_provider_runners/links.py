"""Operator extra links: buttons on a task's page that open what its runner is.

Each link reads the runner's handle — the operator's ``handle`` argument (work and command tasks,
rendered) or the task's ``runner_handle`` XCom (provision) — and builds a URL from it; a link that
does not apply to the runner (a Dataproc link on a pod) is empty, and Airflow shows no button.
Airflow evaluates the links on the worker when the task ends and stores each URL in XCom
(``_link_<class name>``), so the UI needs no access to any backend.

===========================  =============================================================
``RunnerDashboardLink``      the Dask dashboard (``endpoints["dashboard"]``: local_dask, Dataproc)
``DataprocClusterLink``      the cluster in the Google Cloud console (``dataproc_dask``)
``Ec2InstanceLink``          the instance in the AWS console (``ec2``)
``RunnerPodLink``            ``[runners] pod_link_template`` (e.g. your Kubernetes dashboard;
                             ``{namespace}``, ``{pod}``, ``{cluster}``), empty when unset
``BenchLink``                ``[runners] bench_link_template`` (``{bench}``, ``{api}``,
                             ``{coordinator}``); unset: the platform's ``/benches`` for bench_http
===========================  =============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

from airflow_provider_runners.handles import HANDLE_XCOM_KEY, RunnerHandle

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def handle_for(operator: Any, ti_key: Any) -> RunnerHandle | None:
    """The runner a task used: its ``handle`` argument if rendered to a value, else its XCom."""
    value = getattr(operator, "handle", None)
    if isinstance(value, (RunnerHandle, dict, str)):
        try:
            return RunnerHandle.from_xcom(value)
        except Exception:  # noqa: BLE001 - an unrendered template or a foreign value: try XCom
            value = None
    try:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key=HANDLE_XCOM_KEY)
    except Exception:  # noqa: BLE001 - no XCom backend at hand (parse time, tests): no link
        return None
    return RunnerHandle.from_xcom(value) if value else None


def _template(option: str) -> str:
    from airflow_provider_runners.core.settings import setting

    return setting(option) or ""


def dashboard_url(handle: RunnerHandle) -> str:
    return handle.endpoints.get("dashboard", "")


def dataproc_url(handle: RunnerHandle) -> str:
    if handle.backend != "dataproc_dask":
        return ""
    d = handle.details
    return (
        f"https://console.cloud.google.com/dataproc/clusters/{quote(handle.resource_id)}/monitoring"
        f"?region={quote(str(d.get('region') or ''))}&project={quote(str(d.get('project_id') or ''))}"
    )


def ec2_url(handle: RunnerHandle) -> str:
    if handle.backend != "ec2":
        return ""
    region = quote(str(handle.details.get("region") or ""))
    instance = quote(handle.endpoints.get("instance_id") or handle.resource_id)
    return f"https://{region}.console.aws.amazon.com/ec2/home?region={region}#InstanceDetails:instanceId={instance}"


def pod_url(handle: RunnerHandle, template: str | None = None) -> str:
    template = _template("pod_link_template") if template is None else template
    if handle.backend != "kubernetes" or not template:
        return ""
    d = handle.details
    return template.format(
        pod=quote(handle.resource_id),
        namespace=quote(str(d.get("namespace") or "default")),
        cluster=quote(str(d.get("cluster") or "")),
    )


def bench_url(handle: RunnerHandle, template: str | None = None) -> str:
    if handle.runner_class != "bench":
        return ""
    template = _template("bench_link_template") if template is None else template
    d = handle.details
    bench = str(d.get("bench") or d.get("place") or "")
    if template:
        return template.format(
            bench=quote(bench), api=str(d.get("api") or ""), coordinator=str(d.get("coordinator") or "")
        )
    return f"{d['api']}/benches" if d.get("api") else ""


class _RunnerLink(BaseOperatorLink):
    def url(self, handle: RunnerHandle) -> str:
        raise NotImplementedError

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        handle = handle_for(operator, ti_key)
        return self.url(handle) if handle is not None else ""


class RunnerDashboardLink(_RunnerLink):
    """The runner's Dask dashboard."""

    name = "Dask dashboard"

    def url(self, handle: RunnerHandle) -> str:
        return dashboard_url(handle)


class DataprocClusterLink(_RunnerLink):
    """The runner's Dataproc cluster in the Google Cloud console."""

    name = "Dataproc cluster"

    def url(self, handle: RunnerHandle) -> str:
        return dataproc_url(handle)


class Ec2InstanceLink(_RunnerLink):
    """The runner's EC2 instance in the AWS console."""

    name = "EC2 instance"

    def url(self, handle: RunnerHandle) -> str:
        return ec2_url(handle)


class RunnerPodLink(_RunnerLink):
    """The runner's pod, through ``[runners] pod_link_template``."""

    name = "Pod"

    def url(self, handle: RunnerHandle) -> str:
        return pod_url(handle)


class BenchLink(_RunnerLink):
    """The bench the runner holds, through ``[runners] bench_link_template``."""

    name = "Bench"

    def url(self, handle: RunnerHandle) -> str:
        return bench_url(handle)


#: Every runner link; ``operator_extra_links`` of the provision, work and command operators.
RUNNER_LINKS = (RunnerDashboardLink(), DataprocClusterLink(), Ec2InstanceLink(), RunnerPodLink(), BenchLink())
