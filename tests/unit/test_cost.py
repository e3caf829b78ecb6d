from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_runners.core.catalog import DEFAULT_CATALOG, BillingRule, load_catalog, resolve_spec
from airflow_provider_runners.core.handles import HANDLE_XCOM_KEY, RunnerHandle, RunnerPricing
from airflow_provider_runners.core.prices import estimate_cost, handle_rate, runner_pricing, runner_rate
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.evidence.callbacks import EvidenceCallback

EC2 = BillingRule(minimum_seconds=60)
DATAPROC = BillingRule(minimum_seconds=60, per_vcpu_hour_fee=0.010)


def test_short_runner_is_billed_the_minimum() -> None:
    cost = estimate_cost(10, 0.504, EC2)
    assert cost["seconds"] == 10
    assert cost["billed_seconds"] == 60
    assert cost["usd"] == pytest.approx(60 / 3600 * 0.504)
    assert cost["usd"] == pytest.approx(0.0084)


def test_runner_longer_than_the_minimum_is_billed_per_second() -> None:
    cost = estimate_cost(90.5, 0.504, EC2)
    assert cost["billed_seconds"] == 90.5
    assert cost["usd"] == pytest.approx(90.5 / 3600 * 0.504, abs=1e-6)


def test_no_minimum() -> None:
    cost = estimate_cost(10, 3.6, BillingRule(minimum_seconds=0))
    assert cost["billed_seconds"] == 10
    assert cost["usd"] == pytest.approx(0.01)


def test_default_rule_has_a_60_second_minimum_and_no_fee() -> None:
    assert estimate_cost(10, 3.6) == estimate_cost(
        10, 3.6, BillingRule(minimum_seconds=60, per_vcpu_hour_fee=0)
    )
    assert estimate_cost(10, 3.6)["usd"] == pytest.approx(0.06)


def test_dataproc_adds_a_fee_per_vcpu_hour() -> None:
    # 2 x n2-standard-4 workers + 1 master = 12 vCPUs for one hour at $0.1942 compute.
    cost = estimate_cost(3600, 0.1942, DATAPROC, vcpus=12)
    assert cost["usd_per_hour"] == pytest.approx(0.1942 + 12 * 0.010)
    assert cost["usd"] == pytest.approx(0.3142)
    without_fee = estimate_cost(3600, 0.1942, DATAPROC, vcpus=0)
    assert cost["usd"] - without_fee["usd"] == pytest.approx(0.12)


def test_dataproc_fee_also_has_the_minimum() -> None:
    cost = estimate_cost(1, 0.0, DATAPROC, vcpus=4)
    assert cost["billed_seconds"] == 60
    assert cost["usd"] == pytest.approx(60 / 3600 * 0.04, abs=1e-6)


@pytest.mark.parametrize("seconds", [0, 10, 3600, 86400])
def test_zero_rate_costs_nothing(seconds: float) -> None:
    cost = estimate_cost(seconds, 0.0, EC2, vcpus=8)
    assert cost["usd"] == 0.0
    assert cost["usd_per_hour"] == 0.0
    assert cost["billed_seconds"] == max(seconds, 60)


def test_negative_duration_is_clamped() -> None:
    cost = estimate_cost(-30, 1.0, BillingRule(minimum_seconds=0))
    assert cost["seconds"] == 0
    assert cost["usd"] == 0.0


def test_estimate_from_catalog_rate_and_billing() -> None:
    spec = RunnerSpec.parse(
        {"runner_class": "dask_cluster", "profile": "standard", "environment": "dev", "tags": {"tenant": "t"}}
    )
    resolved = load_catalog(DEFAULT_CATALOG).resolve(spec, backend="dataproc_dask")
    cost = estimate_cost(1800, resolved.hourly_rate, resolved.billing, vcpus=resolved.profile.vcpus or 0)
    assert cost["usd"] == pytest.approx(0.5 * (0.1942 + 4 * 0.010))


# -- cost in evidence entries ----------------------------------------------------------------
def _record(
    event: str, handle: RunnerHandle, started: datetime, monkeypatch: pytest.MonkeyPatch, tmp: Path
) -> Any:
    monkeypatch.setenv("AIRFLOW__RUNNERS__EVIDENCE_PATH", "file://" + str(tmp))
    xcoms = {("provision", HANDLE_XCOM_KEY): handle.to_xcom()}
    ti = SimpleNamespace(
        dag_id="etl",
        run_id="manual__1",
        task_id=event,
        map_index=-1,
        try_number=1,
        start_date=started,
        xcom_pull=lambda task_ids, key, **_: xcoms.get((task_ids, key)),
    )
    return EvidenceCallback(event, "success", provision_task_id="provision").record({"ti": ti})


def _handle(created: datetime, **details: Any) -> RunnerHandle:
    return RunnerHandle(
        backend="ec2",
        runner_class="dedicated_host",
        resource_id="i-0123",
        conn_id="runners_ec2",
        lineage_key="rl" + "0" * 26,
        attempt_token="rl" + "0" * 26 + "-t1",
        created_at=created,
        expires_at=created + timedelta(hours=2),
        environment="dev",
        profile="Large",
        details=details,
    )


def test_teardown_entry_costs_the_lifetime_with_the_handle_billing_rule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    handle = _handle(now - timedelta(hours=1), usd_per_hour=3.6, billing_minimum_s=60)
    entry = _record("teardown", handle, now - timedelta(seconds=5), monkeypatch, tmp_path)
    assert entry["cost"]["basis"] == "lifetime"
    assert entry["cost"]["usd"] == pytest.approx(3.6, abs=0.01)


def test_provision_entry_costs_the_ttl_ceiling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    handle = _handle(now, usd_per_hour=0.5, vcpus=8, billing_minimum_s=60, billing_vcpu_fee=0.010)
    entry = _record("provision", handle, now, monkeypatch, tmp_path)
    assert entry["cost"]["basis"] == "ttl ceiling"
    assert entry["cost"]["usd"] == pytest.approx(2 * (0.5 + 8 * 0.010))


def test_work_window_cost_has_no_billing_minimum(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    handle = _handle(now - timedelta(minutes=5), usd_per_hour=3.6, billing_minimum_s=0)
    entry = _record("work", handle, now - timedelta(seconds=10), monkeypatch, tmp_path)
    assert entry["cost"]["basis"] == "work window"
    assert entry["cost"]["billed_seconds"] == pytest.approx(10, abs=2)
    assert entry["cost"]["usd"] == pytest.approx(0.01, abs=0.002)


@pytest.mark.parametrize(
    ("profile", "details", "expected"),
    [
        ("large", {}, 0.504),  # a tag holds the label form of "Large": still the r5.2xlarge price
        ("unknown", {"instance_type": "r5.8xlarge"}, 2.016),  # priced from what the cloud reports
        ("unknown", {}, None),
    ],
)
def test_rate_of_a_runner_listed_from_its_tags(profile: str, details: dict[str, Any], expected: Any) -> None:
    from airflow_provider_runners.core.prices import handle_rate

    now = datetime.now(UTC)
    handle = RunnerHandle(
        backend="ec2",
        runner_class="dedicated_host",
        resource_id="i-0abc",
        conn_id="c",
        lineage_key="rl" + "0" * 26,
        attempt_token="t",
        created_at=now,
        expires_at=now + timedelta(hours=1),
        environment="dev",
        profile=profile,
        details=details,
    )
    rate = handle_rate(handle, load_catalog(DEFAULT_CATALOG))
    assert rate == (pytest.approx(expected) if expected is not None else None)


def test_typed_pricing_and_the_details_of_an_older_handle_cost_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A handle priced by its backend (``pricing``) and one an older release left in XCom with
    the same numbers in ``details`` give the same rate and the same evidence cost."""
    created = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    numbers = {"usd_per_hour": 0.5, "vcpus": 8.0, "billing_minimum_s": 60, "billing_vcpu_fee": 0.010}
    legacy = _handle(created, **numbers)
    typed = _handle(created).evolve(pricing=RunnerPricing(**numbers))
    assert legacy.pricing is None
    assert legacy.priced == typed.priced == typed.pricing
    assert handle_rate(typed) == handle_rate(legacy) == pytest.approx(0.5 + 8 * 0.010)
    assert RunnerHandle.from_xcom(typed.to_xcom()) == typed  # travels through XCom
    costs = [_record("provision", h, created, monkeypatch, tmp_path)["cost"] for h in (legacy, typed)]
    assert costs[0] == costs[1]
    assert costs[1]["usd"] == pytest.approx(2 * (0.5 + 8 * 0.010))


def test_runner_pricing_counts_every_node_and_the_budget_rate_is_its_rate() -> None:
    resolved = resolve_spec(
        RunnerSpec.parse(
            {
                "runner_class": "dask_cluster",
                "profile": "standard",
                "environment": "dev",
                "tags": {"tenant": "qa"},
            }
        ),
        "dataproc_dask",
    )
    one, three = runner_pricing(resolved), runner_pricing(resolved, nodes=3)
    assert resolved.profile.effective_vcpus == 4
    assert (one.nodes, one.vcpus, three.nodes, three.vcpus) == (1, 4, 3, 12)
    assert three.usd_per_hour == pytest.approx(3 * one.usd_per_hour)
    assert (
        runner_rate(resolved, 3)
        == three.rate
        == pytest.approx(three.usd_per_hour + 12 * three.billing_vcpu_fee)
    )
