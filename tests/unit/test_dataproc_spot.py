"""Dataproc spot: secondary workers as SPOT / preemptible from the catalog next to on-demand
master and primaries, priced as provisioned, and evidence read back from the created cluster.
Dataproc is faked at the transport only (tests/fakes/dataproc.py)."""

from __future__ import annotations

import pytest

from airflow_provider_runners.backends.dataproc_dask.options import validate_spec
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.prices import handle_rate, runner_pricing, runner_rate
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError
from tests.fakes.dataproc import FakeDataproc
from tests.unit.test_dataproc_backend import SPEC, backend, fake, request

__all__ = ["fake"]  # the fixture
ON_DEMAND, SPOT, FEE = 0.1942, 0.0470, 0.010
SPOT_SPEC = {**SPEC, "spot": True, "options": {"secondary_workers": 3}}


def test_spot_secondaries_are_requested_and_primaries_stay_on_demand(fake: FakeDataproc) -> None:
    b = backend()
    handle = b.create(request(**SPOT_SPEC))
    sent = fake.calls("create_cluster")[0].cluster.config
    assert sent.secondary_worker_config.num_instances == 3
    assert sent.secondary_worker_config.preemptibility.name == "SPOT"  # from the catalog profile
    assert sent.secondary_worker_config.machine_type_uri == "n2-standard-4"
    assert sent.worker_config.num_instances == 2
    assert sent.worker_config.preemptibility.name == "PREEMPTIBILITY_UNSPECIFIED"  # on-demand
    policy = fake.calls("create_autoscaling_policy")[0].policy
    assert (policy.secondary_worker_config.min_instances, policy.secondary_worker_config.max_instances) == (
        3,
        3,
    )
    assert policy.id.endswith("-s3")
    assert handle.details["nodes"] == 6
    assert handle.details["spot_nodes"] == 3
    assert handle.details["secondary_preemptibility"] == "SPOT"


def test_without_secondaries_nothing_is_spot(fake: FakeDataproc) -> None:
    handle = backend().create(request())
    sent = fake.calls("create_cluster")[0].cluster.config
    assert sent.secondary_worker_config.num_instances == 0
    assert handle.details["spot_nodes"] == 0
    assert handle.details["nodes"] == 3


def test_priced_as_provisioned_spot_secondaries_on_demand_primaries(fake: FakeDataproc) -> None:
    resolved = resolve_spec(RunnerSpec.parse(SPOT_SPEC), "dataproc_dask")
    b = backend()
    assert (b.billed_nodes(resolved), b.spot_nodes(resolved)) == (6, 3)
    pricing = runner_pricing(resolved, nodes=6, spot_nodes=3)
    assert pricing.usd_per_hour == pytest.approx(3 * ON_DEMAND + 3 * SPOT)  # not 6 x spot
    assert pricing.vcpus == 24
    assert pricing.spot is True
    budget = runner_rate(resolved, 6, b.spot_nodes(resolved))
    assert budget == pytest.approx(3 * ON_DEMAND + 3 * SPOT + 24 * FEE)
    # a handle rebuilt from the cluster (reaper, budget's live runners) is priced the same way
    handle = b.create(request(**SPOT_SPEC))
    (listed,) = [h for h in b.list_managed() if h.resource_id == handle.resource_id]
    assert listed.details["spot_nodes"] == 3
    bare = RunnerHandle(**{**listed.model_dump(), "profile": "standard", "environment": "dev"})
    assert handle_rate(bare) == pytest.approx(3 * ON_DEMAND + 3 * SPOT + 24 * FEE)


def test_evidence_reads_back_what_was_provisioned(fake: FakeDataproc) -> None:
    b = backend()
    handle = b.create(request(**SPOT_SPEC))
    cluster = fake.cluster(handle.resource_id)
    assert cluster is not None
    # what Dataproc made may differ from what was asked (e.g. fewer secondaries, another model)
    cluster.config.secondary_worker_config.num_instances = 2
    cluster.config.secondary_worker_config.preemptibility = "PREEMPTIBLE"
    b.status(handle)
    b.status(handle)
    facts = b.describe(handle)
    assert facts["secondary_workers"]["count"] == 2
    assert facts["secondary_workers"]["preemptibility"] == "PREEMPTIBLE"
    assert facts["secondary_workers"]["instances"] == 3  # the VMs the fake named at create
    assert facts["market"] == {"master": "on-demand", "primary_workers": "on-demand"}
    assert "spot $/h" in facts["cost_basis"]
    (listed,) = [h for h in b.list_managed() if h.resource_id == handle.resource_id]
    assert (listed.details["secondary_workers"], listed.details["secondary_preemptibility"]) == (
        2,
        "PREEMPTIBLE",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"spot": True}, "spec.spot: Dataproc runs the master and primary workers on-demand"),
        ({"options": {"secondary_workers": 21}}, "spec.options.secondary_workers: 21 is out of range"),
        ({"options": {"secondary_workers": -1}}, "spec.options.secondary_workers: -1 is out of range"),
    ],
)
def test_bad_spot_specs_fail_at_parse_time(spec: dict[str, object], message: str) -> None:
    with pytest.raises(RunnerSpecError, match=message):
        validate_spec({**SPEC, **spec})
