"""Operator extra links: the URL each button opens, built from a runner handle (the operator's
``handle`` argument or the provision task's ``runner_handle`` XCom), and their registration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_runners.handles import HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.links import (
    BenchLink,
    DataprocClusterLink,
    Ec2InstanceLink,
    RunnerDashboardLink,
    RunnerPodLink,
    bench_url,
    pod_url,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def handle(
    backend: str, runner_class: str = "dask_cluster", resource_id: str = "r-1", **fields: Any
) -> RunnerHandle:
    return RunnerHandle(
        backend=backend,
        runner_class=runner_class,
        resource_id=resource_id,
        conn_id="c",
        lineage_key="rl0",
        attempt_token="rl0-t1",
        created_at=T0,
        expires_at=T0,
        environment="dev",
        profile="small",
        **fields,
    )


class Op:
    def __init__(self, value: Any) -> None:
        self.handle = value


DATAPROC = handle(
    "dataproc_dask",
    resource_id="rn-rl0-t1",
    endpoints={
        "scheduler": "tcp://rn-rl0-t1-m.europe-west1-b.c.proj.internal:8786",
        "dashboard": "http://rn-rl0-t1-m.europe-west1-b.c.proj.internal:8787/status",
    },
    details={"project_id": "proj", "region": "europe-west1"},
)
EC2 = handle(
    "ec2", "dedicated_host", "i-0abc", endpoints={"instance_id": "i-0abc"}, details={"region": "eu-west-1"}
)
POD = handle("kubernetes", "pod", "sil-pod-1", details={"namespace": "sil", "cluster": "eks-sil"})
HTTP_BENCH = handle(
    "bench_http",
    "bench",
    "bh-rl0",
    endpoints={"api": "https://benches.lab/api/v1"},
    details={"api": "https://benches.lab/api/v1", "bench": "imx8-a"},
)
LABGRID = handle("labgrid", "bench", "lg-rl0", details={"coordinator": "lab:20408", "place": "imx8-a"})


@pytest.mark.parametrize(
    ("link", "runner", "url"),
    [
        (RunnerDashboardLink(), DATAPROC, "http://rn-rl0-t1-m.europe-west1-b.c.proj.internal:8787/status"),
        (
            DataprocClusterLink(),
            DATAPROC,
            "https://console.cloud.google.com/dataproc/clusters/rn-rl0-t1/monitoring?region=europe-west1&project=proj",
        ),
        (
            Ec2InstanceLink(),
            EC2,
            "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-0abc",
        ),
        (BenchLink(), HTTP_BENCH, "https://benches.lab/api/v1/benches"),
        # Links that do not apply to a runner are empty: Airflow shows no button.
        (DataprocClusterLink(), EC2, ""),
        (Ec2InstanceLink(), DATAPROC, ""),
        (RunnerDashboardLink(), EC2, ""),
        (BenchLink(), DATAPROC, ""),
        (BenchLink(), LABGRID, ""),  # labgrid has no web UI unless bench_link_template is set
        (RunnerPodLink(), POD, ""),  # no pod_link_template configured
    ],
)
def test_link_url_from_the_operators_handle(link: Any, runner: RunnerHandle, url: str) -> None:
    assert link.get_link(Op(runner.to_xcom()), ti_key=None) == url


def test_link_url_from_the_handle_xcom_of_a_provision_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time import xcom

    asked: list[tuple[Any, str]] = []

    def get_value(*, ti_key: Any, key: str) -> Any:
        asked.append((ti_key, key))
        return DATAPROC.to_xcom()

    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(get_value))

    class Provision:  # a provision operator has no handle argument: the handle is in its XCom
        pass

    assert RunnerDashboardLink().get_link(Provision(), ti_key="ti-key") == DATAPROC.endpoints["dashboard"]
    assert asked == [("ti-key", HANDLE_XCOM_KEY)]


def test_templates_for_pods_and_benches() -> None:
    assert pod_url(POD, "https://k8s.lab/#/pod/{namespace}/{pod}?c={cluster}") == (
        "https://k8s.lab/#/pod/sil/sil-pod-1?c=eks-sil"
    )
    assert pod_url(EC2, "https://k8s.lab/#/pod/{namespace}/{pod}") == ""
    assert bench_url(LABGRID, "https://benches.lab/ui/{bench}?via={coordinator}") == (
        "https://benches.lab/ui/imx8-a?via=lab:20408"
    )


def test_provision_work_and_command_operators_carry_the_links() -> None:
    from airflow_provider_runners.decorators.runner import RunnerPythonOperator
    from airflow_provider_runners.get_provider_info import get_provider_info
    from airflow_provider_runners.operators.command import RunnerCommandOperator
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator
    from airflow_provider_runners.operators.work import DaskJobOperator

    names = {"Dask dashboard", "Dataproc cluster", "EC2 instance", "Pod", "Bench"}
    for operator in (ProvisionRunnerOperator, DaskJobOperator, RunnerCommandOperator, RunnerPythonOperator):
        assert {link.name for link in operator.operator_extra_links} == names
    registered = get_provider_info()["extra-links"]
    assert {path.rsplit(".", 1)[1] for path in registered} == {
        type(link).__name__ for link in ProvisionRunnerOperator.operator_extra_links
    }


def test_a_dag_with_runner_links_serializes_with_its_buttons() -> None:
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_provider_runners import runner
    from airflow_provider_runners.operators.work import DaskJobOperator

    with DAG("links_serialize", schedule=None, start_date=T0) as dag:
        with runner(
            "cluster", spec={"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "qa"}}
        ) as h:
            DaskJobOperator(task_id="job", handle=h, python_callable=len)
    again = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for task_id in ("cluster.provision", "cluster.job"):
        links = again.get_task(task_id).extra_links
        assert {"Dask dashboard", "Dataproc cluster", "EC2 instance", "Pod", "Bench"} <= set(links)
