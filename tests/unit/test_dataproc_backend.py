"""``dataproc_dask`` against the fake Dataproc transport: the real DataprocHook and google clients run;
every request proto is recorded and asserted field by field."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_runners.backends.dataproc_dask import backend as dataproc_dask
from airflow_provider_runners.backends.dataproc_dask.backend import (
    DataprocDaskBackend,
    cluster_name,
    validate_spec,
)
from airflow_provider_runners.backends.registry import backend_class
from airflow_provider_runners.core.backend import ConnectionConfig, ProvisionRequest, RunnerState
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage
from airflow_provider_runners.core.prices import estimate_cost, runner_pricing
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import MissingExtraError, RunnerSpecError
from tests.fakes.dataproc import FakeDataproc

PROJECT, REGION, ZONE = "acme-data", "europe-west1", "europe-west1-b"
EXTRA = {
    "project_id": PROJECT,
    "region": REGION,
    "zone": ZONE,
    "subnetwork_uri": f"projects/{PROJECT}/regions/{REGION}/subnetworks/private",
    "service_account": f"dask@{PROJECT}.iam.gserviceaccount.com",
    "kms_key_name": f"projects/{PROJECT}/locations/{REGION}/keyRings/r/cryptoKeys/k",
    "image_version": "2.2-debian12",
}
SPEC = {
    "runner_class": "dask_cluster",
    "profile": "standard",
    "environment": "dev",
    "tags": {"tenant": "analytics", "pipeline": "sales-etl"},
    "ttl": "45m",
}
LINEAGE = Lineage("sales", "manual__2026-11-23", "cluster.provision")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDataproc:
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        '{"conn_type": "google_cloud_platform", "extra": {"project": "x"}}',
    )
    monkeypatch.setattr(dataproc_dask, "gcs_object_facts", lambda hook, uri: {"uri": uri, "generation": 7})
    monkeypatch.setattr(DataprocDaskBackend, "teardown_poll_s", 0.0)
    return FakeDataproc(ready_after=2).patch(monkeypatch)


def backend(**extra: Any) -> DataprocDaskBackend:
    return DataprocDaskBackend(
        ConnectionConfig("runners_dp", "runners_dataproc_dask", extra={**EXTRA, **extra})
    )


def request(try_number: int = 1, **spec: Any) -> ProvisionRequest:
    parsed = RunnerSpec.parse({**SPEC, **spec})
    labels = {"tenant": "analytics", "pipeline": "sales-etl"}
    return ProvisionRequest(
        resolve_spec(parsed, "dataproc_dask"),
        LINEAGE,
        LINEAGE.attempt_token(try_number),
        "runners_dp",
        labels,
        expires_at=datetime.fromtimestamp(1_900_000_000, UTC),
    )


def test_create_sends_the_full_cluster_request_and_returns_at_once(fake: FakeDataproc) -> None:
    handle = backend().create(request())
    assert fake.methods() == ["get_autoscaling_policy", "create_autoscaling_policy", "create_cluster"]
    (req,) = fake.calls("create_cluster")
    token = LINEAGE.attempt_token(1)
    assert req.project_id == PROJECT
    assert req.region == REGION
    assert req.request_id == token
    assert len(req.request_id) <= 40
    cluster = req.cluster
    assert cluster.cluster_name == f"rn-{token}" == handle.resource_id
    assert len(cluster.cluster_name) <= 51
    config = cluster.config
    assert config.master_config.num_instances == 1
    assert config.master_config.machine_type_uri == "n2-standard-4"
    assert config.worker_config.num_instances == 2
    assert config.worker_config.machine_type_uri == "n2-standard-4"
    assert config.worker_config.disk_config.boot_disk_size_gb == 100
    assert config.software_config.image_version == "2.2-debian12"
    gce = config.gce_cluster_config
    assert gce.internal_ip_only is True
    assert gce.zone_uri == ZONE
    assert gce.subnetwork_uri == EXTRA["subnetwork_uri"]
    assert gce.service_account == EXTRA["service_account"]
    assert dict(gce.metadata) == {"dask-runtime": "standalone"}
    assert config.encryption_config.gce_pd_kms_key_name == EXTRA["kms_key_name"]
    (action,) = config.initialization_actions
    assert action.executable_file == f"gs://goog-dataproc-initialization-actions-{REGION}/dask/dask.sh"
    assert action.execution_timeout == timedelta(minutes=15)
    assert config.lifecycle_config.auto_delete_ttl == timedelta(minutes=45)
    assert not config.lifecycle_config.idle_delete_ttl  # see the module docstring: Dask is not YARN
    policy = f"projects/{PROJECT}/regions/{REGION}/autoscalingPolicies/runners-standard-2-10"
    assert config.autoscaling_config.policy_uri == policy
    labels = dict(cluster.labels)
    assert labels["managed-by"] == MANAGED_BY
    assert labels["runner-lineage"] == LINEAGE.key
    assert labels["tenant"] == "analytics"
    assert labels["pipeline"] == "sales-etl"
    assert labels["expires-at"] == "1900000000"
    assert labels["runner-env"] == "dev"
    assert labels["airflow-version"].startswith("v3-")  # added by DataprocHook
    (created_policy,) = fake.calls("create_autoscaling_policy")
    assert created_policy.parent == f"projects/{PROJECT}/regions/{REGION}"
    assert created_policy.policy.id == "runners-standard-2-10"
    assert created_policy.policy.worker_config.min_instances == 2
    assert created_policy.policy.worker_config.max_instances == 10
    assert handle.details["nodes"] == 3
    assert handle.tags["managed-by"] == MANAGED_BY
    assert handle.expires_at == datetime.fromtimestamp(1_900_000_000, UTC)  # the request's, as it is


def test_spec_options_override_workers_within_the_profile_bounds(fake: FakeDataproc) -> None:
    backend().create(request(options={"workers": 4, "max_workers": 6}))
    config = fake.calls("create_cluster")[0].cluster.config
    assert config.worker_config.num_instances == 4
    assert fake.calls("create_autoscaling_policy")[0].policy.worker_config.max_instances == 6


def test_autoscaling_policy_is_ensured_idempotently(fake: FakeDataproc) -> None:
    b = backend()
    b.create(request(1))
    b.create(request(2))
    assert len(fake.calls("create_autoscaling_policy")) == 1
    assert len(fake.calls("get_autoscaling_policy")) == 2
    b.create(request(3, options={"max_workers": 5}))  # other bounds: its own policy
    assert [c.policy.id for c in fake.calls("create_autoscaling_policy")] == [
        "runners-standard-2-10",
        "runners-standard-2-5",
    ]
    fixed = backend(autoscaling_policy_id="team-policy")
    fixed.create(request(4))
    fixed.create(request(5, options={"max_workers": 8}))  # same id, new bounds: updated
    (update,) = fake.calls("update_autoscaling_policy")
    assert update.policy.worker_config.max_instances == 8


def test_status_many_answers_every_waiter_with_one_list_call(fake: FakeDataproc) -> None:
    b = backend()
    handles = [b.create(request(n)) for n in range(1, 6)]
    fake.requests.clear()
    first = b.status_many(handles)
    assert fake.methods() == ["list_clusters"]
    (listed,) = fake.calls("list_clusters")
    assert listed.filter == f"labels.managed-by = {MANAGED_BY}"
    assert (listed.project_id, listed.region) == (PROJECT, REGION)
    assert {s.state for s in first.values()} == {RunnerState.PENDING}
    ready = b.status_many(handles)
    assert len(fake.calls("list_clusters")) == 2
    status = ready[handles[0].resource_id]
    assert status.state is RunnerState.READY
    assert (
        status.endpoints["scheduler"] == f"tcp://{handles[0].resource_id}-m.{ZONE}.c.{PROJECT}.internal:8786"
    )
    assert b.batch_key() == f"dataproc_dask:{PROJECT}:{REGION}"


def test_status_many_asks_by_name_for_a_cluster_the_list_does_not_show(fake: FakeDataproc) -> None:
    b = backend()
    handle = b.create(request())
    fake.cluster(handle.resource_id).labels.pop("managed-by")  # type: ignore[union-attr]
    fake.requests.clear()
    assert b.status_many([handle])[handle.resource_id].state is RunnerState.PENDING
    assert fake.methods() == ["list_clusters", "get_cluster"]


def test_scheduler_address_template_from_the_connection(fake: FakeDataproc) -> None:
    b = backend(scheduler_address_template="tcp://10.0.0.9:8786")
    handle = b.create(request())
    b.status(handle)
    assert b.status(handle).endpoints["scheduler"] == "tcp://10.0.0.9:8786"


def test_error_cluster_from_an_earlier_try_is_deleted_and_recreated(fake: FakeDataproc) -> None:
    fake.error_next_creates = 1
    b = backend()
    first = b.create(request(1))
    b.status(first)
    assert b.status(first).state is RunnerState.FAILED
    assert "Initialization action failed" in b.status(first).message
    handle, how = acquire(b, request(2))
    assert how == "replaced"
    assert handle.resource_id == f"rn-{LINEAGE.attempt_token(2)}"
    (delete,) = fake.calls("delete_cluster")
    assert delete.cluster_name == first.resource_id
    assert delete.request_id == f"{LINEAGE.attempt_token(1)}-del"
    assert fake.cluster(first.resource_id) is None  # waited until NotFound
    assert [c.request_id for c in fake.calls("create_cluster")] == [
        LINEAGE.attempt_token(1),
        LINEAGE.attempt_token(2),
    ]
    b.status(handle)
    assert b.status(handle).state is RunnerState.READY


def test_retry_after_a_crash_adopts_the_cluster_with_one_create_call(fake: FakeDataproc) -> None:
    b = backend()
    first, how = acquire(b, request(1))
    assert how == "created"
    again, how = acquire(backend(), request(2))  # a fresh process: only Dataproc knows
    assert how == "adopted"
    assert again.adopted is True
    assert again.resource_id == first.resource_id
    assert again.attempt_token == LINEAGE.attempt_token(1)
    assert again.lineage_key == LINEAGE.key
    assert again.environment == "dev"
    assert again.details["nodes"] == 3
    assert len(fake.calls("create_cluster")) == 1
    finds = [c for c in fake.calls("list_clusters") if "runner-lineage" in c.filter]
    assert finds[-1].filter == f"labels.managed-by = {MANAGED_BY} AND labels.runner-lineage = {LINEAGE.key}"


def test_same_request_replayed_is_not_a_second_cluster(fake: FakeDataproc) -> None:
    b = backend()
    b.create(request(1))
    b.create(request(1))  # same attempt token: Dataproc answers with the first operation
    assert len(fake.entries) == 1


def test_teardown_deletes_waits_and_is_idempotent(fake: FakeDataproc) -> None:
    fake.delete_reads = 3
    b = backend()
    handle = b.create(request())
    result = b.teardown(handle)
    assert result.existed is True
    assert result.details["state_before"] == "CREATING"
    assert result.details["delete_polls"] == 4  # three reads while DELETING, then NotFound
    assert b.status(handle).state is RunnerState.GONE
    again = b.teardown(handle)
    assert again.existed is False
    assert "NotFound" in again.message
    assert b.list_managed() == []


def test_delete_of_a_cluster_that_is_already_gone_is_success(fake: FakeDataproc) -> None:
    b = backend()
    handle = b.create(request())
    fake.entries.clear()  # deleted by its auto_delete_ttl, or by hand
    assert b.teardown(handle).existed is False
    assert b.status_many([handle])[handle.resource_id].state is RunnerState.GONE


def test_describe_gives_evidence_facts_without_secrets(fake: FakeDataproc) -> None:
    b = backend()
    handle = b.create(request())
    b.status(handle)
    b.status(handle)
    facts = b.describe(handle.evolve(details={"vcpus": 12}))
    assert facts["cluster_uuid"] == fake.cluster(handle.resource_id).cluster_uuid  # type: ignore[union-attr]
    assert facts["image_version"] == "2.2.57-debian12"
    assert facts["init_action_object"]["generation"] == 7
    assert facts["init_actions"][0]["uri"].endswith("/dask/dask.sh")
    assert facts["master"]["machine_type"] == facts["workers"]["machine_type"] == "n2-standard-4"
    assert facts["workers"]["count"] == 2
    assert facts["zone"] == ZONE
    assert facts["region"] == REGION
    assert facts["labels"]["runner-lineage"] == LINEAGE.key
    assert facts["create_to_running_s"] is not None
    assert facts["vcpus_total"] == 12
    assert facts["auto_delete_ttl_s"] == 45 * 60


def test_cost_counts_master_and_worker_vcpus_for_the_dataproc_fee(fake: FakeDataproc) -> None:
    resolved = resolve_spec(RunnerSpec.parse(SPEC), "dataproc_dask")
    pricing = runner_pricing(resolved, nodes=3)
    assert pricing.usd_per_hour == pytest.approx(3 * 0.1942)
    assert pricing.vcpus == 12
    assert pricing.billing_vcpu_fee == 0.010
    assert pricing.billing_minimum_s == 60
    cost = estimate_cost(30, pricing.usd_per_hour, resolved.billing, pricing.vcpus)
    assert cost["billed_seconds"] == 60  # 1-minute minimum
    assert cost["usd_per_hour"] == pytest.approx(3 * 0.1942 + 12 * 0.010)
    assert pricing.rate == pytest.approx(cost["usd_per_hour"])
    assert runner_pricing(resolved).vcpus == 4  # other backends: one machine
    # the backend prices what it creates: master + 2 workers
    handle = backend().create(request())
    assert handle.pricing == runner_pricing(resolved, nodes=3, spot_nodes=0)


@pytest.mark.parametrize(
    ("spec", "region", "message"),
    [
        ({"profile": "huge"}, None, "spec.profile: 'huge' is not defined"),
        ({"environment": "local", "profile": "small"}, None, "has no machine_type"),
        ({"options": {"workers": 11}}, None, "spec.options.workers: 11 is out of range"),
        ({"options": {"min_workers": 1}}, None, "spec.options.min_workers: 1 is out of range"),
        ({"options": {"gpus": 1}}, None, "not supported by dataproc_dask"),
        ({}, "Europe West", "region: 'Europe West' is not a GCP region"),
    ],
)
def test_invalid_profile_options_or_region_fail_at_parse_time(
    spec: dict[str, Any], region: str | None, message: str
) -> None:
    with pytest.raises(RunnerSpecError, match=message):
        validate_spec({**SPEC, **spec}, region=region)


def test_valid_spec_passes_parse_time_checks() -> None:
    assert validate_spec(SPEC, region=REGION).profile == "standard"


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"region": "mars"}, "not a GCP region"), ({"zone": "us-east1-b"}, "is not a zone of 'europe-west1'")],
)
def test_invalid_connection_region_or_zone(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(RunnerSpecError, match=message):
        backend(**extra)


def test_cluster_names_are_valid_for_any_try() -> None:
    name = cluster_name(Lineage("d" * 300, "r" * 300, "t" * 300, 99).attempt_token(9999))
    assert len(name) <= 51
    assert name[0].isalpha()
    assert name == name.lower()


def test_missing_google_provider_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.google.cloud.hooks.dataproc", None)
    with pytest.raises(MissingExtraError, match="apache-airflow-providers-google"):
        backend().find(LINEAGE.key)


def test_registered_under_its_conn_type() -> None:
    assert backend_class("runners_dataproc_dask") is DataprocDaskBackend
    from airflow_provider_runners.get_provider_info import get_provider_info
    from airflow_provider_runners.hooks.runner import DataprocDaskRunnerHook

    types = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert types["runners_dataproc_dask"]["hook-class-name"].endswith(DataprocDaskRunnerHook.__name__)
    assert DataprocDaskRunnerHook.conn_type == DataprocDaskBackend.conn_type


def test_module_imports_no_google_code() -> None:
    import subprocess

    code = (
        "import sys, airflow_provider_runners.backends.dataproc_dask.backend as m; "
        "print(sorted(n for n in sys.modules if n.startswith(('google.cloud.', 'airflow.providers.google'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_test_connection_is_one_list_call_of_page_size_one(fake: FakeDataproc) -> None:
    ok, message = backend().check_connection()
    assert ok, message
    assert message == (
        f"dataproc_dask Connection 'runners_dp': Dataproc API reachable: project {PROJECT!r}, "
        f"region {REGION!r}; no managed cluster listed"
    )
    (call,) = fake.calls()
    assert call.page_size == 1
    assert "managed-by" in call.filter
