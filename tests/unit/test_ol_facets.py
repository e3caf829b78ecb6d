"""OpenLineage facets of the work operators (ol_facets.py, docs/openlineage.md).

The openlineage provider is not a dependency: the facet content is tested here as plain data;
``operator_lineage`` builds the provider's ``OperatorLineage`` from it when the provider is there.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk import Asset

from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.ol_facets import dataset_names, operator_lineage, runner_facet_fields
from airflow_provider_runners.operators.command import RunnerCommandOperator
from airflow_provider_runners.operators.work import DaskJobOperator

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
HANDLE = RunnerHandle(
    backend="ec2",
    runner_class="dedicated_host",
    resource_id="i-0abc123",
    conn_id="runners_ec2",
    lineage_key="etl-daily.cluster",
    attempt_token="a1b2",
    created_at=T0,
    expires_at=T0 + timedelta(hours=1),
    environment="dev",
    profile="large",
    tags={"tenant": "analytics", "pipeline": "sales-etl"},
    details={"image_digest": "sha256:0f0e", "image_ref": "runner-base:2026.01", "ami_id": "ami-1"},
)
HAS_OPENLINEAGE = importlib.util.find_spec("openlineage") is not None


def test_the_runner_facet_describes_backend_resource_profile_and_image() -> None:
    facts = {"exit_code": 0, "command_seconds": 12.5, "command_name": "a1b2-build", "env": {"X": "1"}}
    assert runner_facet_fields(HANDLE, facts) == {
        "backend": "ec2",
        "runnerClass": "dedicated_host",
        "resourceId": "i-0abc123",
        "connId": "runners_ec2",
        "environment": "dev",
        "profile": "large",
        "image": "runner-base:2026.01",
        "imageDigest": "sha256:0f0e",
        "lineageKey": "etl-daily.cluster",
        "adopted": False,
        "tags": {"pipeline": "sales-etl", "tenant": "analytics"},
        "work": {"command_name": "a1b2-build", "exit_code": 0, "command_seconds": 12.5},
    }
    bare = HANDLE.model_copy(update={"details": {}})
    assert "imageDigest" not in runner_facet_fields(bare)
    assert "work" not in runner_facet_fields(bare)


def test_inlets_and_outlets_with_a_uri_become_datasets() -> None:
    assets = [
        Asset("s3://raw-bucket/sales/2026.parquet"),
        Asset("file:///data/out.csv"),
        "gs://b/x",
        object(),
    ]
    assert dataset_names(assets) == [
        ("s3://raw-bucket", "sales/2026.parquet"),
        ("file", "/data/out.csv"),
        ("gs://b", "x"),
    ]


@pytest.mark.skipif(HAS_OPENLINEAGE, reason="the openlineage client is installed")
def test_without_the_openlineage_provider_there_is_no_lineage_and_no_error() -> None:
    assert operator_lineage(HANDLE.to_xcom(), {}, [], []) is None


def test_both_work_operators_offer_facets_on_complete() -> None:
    job = DaskJobOperator(
        task_id="job", handle=HANDLE.to_xcom(), python_callable=print, outlets=[Asset("s3://o/p")]
    )
    cmd = RunnerCommandOperator(task_id="cmd", handle=HANDLE.to_xcom(), command="true")
    for op in (job, cmd):
        lineage = op.get_openlineage_facets_on_complete(None)
        if not HAS_OPENLINEAGE:
            assert lineage is None
            continue
        facet = lineage.run_facets["runner"]
        assert facet.resourceId == "i-0abc123"
        assert facet.imageDigest == "sha256:0f0e"
    if HAS_OPENLINEAGE:
        assert [(d.namespace, d.name) for d in job.get_openlineage_facets_on_complete(None).outputs] == [
            ("s3://o", "p")
        ]


def test_a_handle_that_is_not_a_handle_gives_no_lineage() -> None:
    assert operator_lineage("not a handle", None, [], []) is None
