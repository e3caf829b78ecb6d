"""Budget arithmetic, what the guard counts, budgets in the catalog, and prices of live runners.
(Over budget with real runners and the DynamoDB registry: tests/integration/test_budget.py.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from airflow_provider_runners.cli import main
from airflow_provider_runners.core.backend import Backend, ConnectionConfig, RunnerStatus, TeardownResult
from airflow_provider_runners.core.catalog import DEFAULT_CATALOG, Budgets, load_catalog
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.core.prices import handle_rate, runner_rate
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import CatalogError, ProvisionError
from airflow_provider_runners.governance.budget import check_budgets, live_spend
from airflow_provider_runners.governance.runner_index import PENDING_GRACE_S, RunnerRecord
from airflow_provider_runners.governance.runner_index.sqlite import SqliteRegistry

NOW = datetime.now(UTC)


def handle(rid: str, lineage: str, tenant: str = "qa", **details: Any) -> RunnerHandle:
    return RunnerHandle(
        backend="fleet",
        runner_class="dedicated_host",
        resource_id=rid,
        conn_id="runners_fleet",
        lineage_key=lineage,
        attempt_token=lineage + "-t1",
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        environment="dev",
        profile="Large",
        tags={"managed-by": MANAGED_BY, "tenant": tenant, "pipeline": "etl"},
        details=details,
    )


class FleetBackend(Backend):
    name = "fleet"
    conn_type = "runners_fleet"
    hook_name = "fleet"
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dedicated_host"})

    def __init__(self, live: list[RunnerHandle]) -> None:
        super().__init__(ConnectionConfig(conn_id="runners_fleet", conn_type="runners_fleet"))
        self.live, self.fail = live, False  # per instance: no state shared between tests

    def create(self, request: Any) -> RunnerHandle:  # pragma: no cover - never reached in these tests
        raise AssertionError("the guard must not create anything")

    def find(self, lineage_key: str) -> RunnerHandle | None:  # pragma: no cover
        return None

    def status(self, handle: RunnerHandle) -> RunnerStatus:  # pragma: no cover
        raise NotImplementedError

    def teardown(self, handle: RunnerHandle) -> TeardownResult:  # pragma: no cover
        raise NotImplementedError

    def describe(self, handle: RunnerHandle) -> dict[str, Any]:  # pragma: no cover
        return {}

    def list_managed(self) -> list[RunnerHandle]:
        if self.fail:
            raise TimeoutError("DescribeInstances timed out")
        return list(self.live)


def record(key: str, **changes: Any) -> RunnerRecord:
    now = time.time()
    data: dict[str, Any] = {
        "key": key,
        "backend": "ec2",
        "conn_id": "runners_ec2",
        "status": "running",
        "resource_id": f"i-{key}",
        "tenant": "qa",
        "pipeline": "etl",
        "usd_per_hour": 0.68,
        "registered_at": now,
        "expires_at": now + 3600,
    }
    data.update(changes)
    return RunnerRecord(**data)


@pytest.fixture
def backend() -> FleetBackend:
    return FleetBackend(
        [
            handle("i-a", "rl-a", usd_per_hour=0.504),  # r5.2xlarge, priced by its details
            handle("i-b", "rl-b"),  # no pricing details: the catalog's r5.2xlarge on-demand
            handle("i-mine", "rl-mine", usd_per_hour=0.504),  # the requesting lineage's earlier try
        ]
    )


def test_live_spend_counts_each_runner_once_from_the_best_source(
    backend: FleetBackend, tmp_path: Path
) -> None:
    registry = SqliteRegistry(tmp_path / "r.sqlite")
    now = time.time()
    registry.put(record("rl-ec2"))  # another backend: counted from the registry
    registry.put(record("rl-a", backend="fleet", conn_id="runners_fleet", resource_id="i-a"))  # listed too
    registry.put(
        record("rl-gone", backend="fleet", conn_id="runners_fleet", resource_id="i-gone")
    )  # unlisted
    registry.put(record("rl-res", status="pending", resource_id="", usd_per_hour=0.2))  # fresh reservation
    registry.put(record("rl-old", status="pending", resource_id="", registered_at=now - PENDING_GRACE_S - 1))
    registry.put(record("rl-ended", status="ended"))
    spend = live_spend(backend, registry, exclude_lineage="rl-mine", now=now)
    by_id = {s.resource_id: (s.usd_per_hour, s.source) for s in spend}
    assert by_id == {
        "i-a": (0.504, "backend"),
        "i-b": (0.504, "backend"),
        "i-rl-ec2": (0.68, "registry"),
        "(reserved rl-res)": (0.2, "reservation"),
    }


def test_budget_checks_add_the_new_runner_and_name_what_they_counted(
    backend: FleetBackend, tmp_path: Path
) -> None:
    spend = live_spend(backend, SqliteRegistry(tmp_path / "r.sqlite"), exclude_lineage="rl-mine")
    budgets = Budgets(tenant={"qa": 1.5}, pipeline={"etl": 1.0, "other": 0.1})
    tenant, pipeline = check_budgets(budgets, "qa", "etl", 0.504, spend)
    assert (tenant.scope, tenant.name, tenant.limit) == ("tenant", "qa", 1.5)
    assert tenant.live_usd_per_hour == pytest.approx(1.008)
    assert tenant.total == pytest.approx(1.512)
    assert not tenant.fits
    assert pipeline.limit == 1.0
    assert not pipeline.fits
    assert tenant.counted == ("i-a $0.5040/h", "i-b $0.5040/h")
    assert (
        "tenant 'qa' budget $1.5000/h: live runners $1.0080/h (i-a $0.5040/h, i-b $0.5040/h)"
        in tenant.describe()
    )
    (ok,) = check_budgets(Budgets(tenant={"qa": 1.512}), "qa", None, 0.504, spend)
    assert ok.fits  # exactly at the limit fits
    assert check_budgets(budgets, "someone-else", "unbudgeted", 5.0, spend) == []


def test_a_backend_that_cannot_list_means_the_budget_cannot_be_checked(
    backend: FleetBackend, tmp_path: Path
) -> None:
    backend.fail = True
    with pytest.raises(
        ProvisionError,
        match=r"cannot check the budget: .* \(DescribeInstances timed out\); nothing was created",
    ):
        live_spend(backend, SqliteRegistry(tmp_path / "r.sqlite"))


def test_new_runner_rate_includes_nodes_and_the_dataproc_fee() -> None:
    spec = RunnerSpec.parse(
        {"runner_class": "dask_cluster", "profile": "standard", "environment": "dev", "tags": {"tenant": "t"}}
    )
    resolved = load_catalog(DEFAULT_CATALOG).resolve(spec, backend="dataproc_dask")
    # master + 2 workers of n2-standard-4 ($0.1942/h, 4 vCPUs) + $0.010 per vCPU-hour
    assert runner_rate(resolved, nodes=3) == pytest.approx(3 * 0.1942 + 3 * 4 * 0.010)
    spot = load_catalog(DEFAULT_CATALOG).resolve(
        spec.model_copy(update={"spot": True}), backend="dataproc_dask"
    )
    assert runner_rate(spot, nodes=1) == pytest.approx(0.0470 + 0.04)


def test_handle_rate_from_details_or_the_catalog() -> None:
    assert handle_rate(
        handle("i-1", "rl-1", usd_per_hour=0.5, vcpus=8, billing_vcpu_fee=0.01)
    ) == pytest.approx(0.58)
    assert handle_rate(handle("i-2", "rl-2")) == pytest.approx(0.504)  # dev Large = r5.2xlarge
    assert handle_rate(handle("i-3", "rl-3", spot=True)) == pytest.approx(0.151)
    unknown = handle("i-4", "rl-4").model_copy(update={"profile": "Gigantic"})
    assert handle_rate(unknown) is None


def test_catalog_budgets_are_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(DEFAULT_CATALOG.read_text())
    data["environments"]["dev"]["budgets"] = {"tenant": {"analytics": 10.0}, "pipeline": {"sales-etl": 2.5}}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(data))
    assert main(["catalog", "validate", str(good)]) == 0
    budgets = load_catalog(good).environments["dev"].budgets
    assert budgets.limits_for("analytics", "sales-etl") == [
        ("tenant", "analytics", 10.0),
        ("pipeline", "sales-etl", 2.5),
    ]
    data["environments"]["dev"]["budgets"] = {"tenant": {"Team A": -1.0}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["catalog", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "environments.dev.budgets.tenant" in out
    assert "'Team A' is not a tenant/pipeline tag value" in out
    data["environments"]["dev"]["budgets"] = {"tenants": {"a": 1.0}}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match="budgets.tenants"):
        load_catalog(bad)


def test_dataproc_runner_is_priced_as_master_plus_workers() -> None:
    from airflow_provider_runners.backends.dataproc_dask.backend import DataprocDaskBackend

    backend = DataprocDaskBackend(
        ConnectionConfig(
            conn_id="dp",
            conn_type="runners_dataproc_dask",
            extra={"project_id": "p", "region": "europe-west1"},
        )
    )
    spec = RunnerSpec.parse(
        {
            "runner_class": "dask_cluster",
            "profile": "standard",
            "environment": "dev",
            "tags": {"tenant": "t"},
            "options": {"workers": 4},
        }
    )
    resolved = load_catalog(DEFAULT_CATALOG).resolve(spec, backend="dataproc_dask")
    assert backend.billed_nodes(resolved) == 5
    assert runner_rate(resolved, backend.billed_nodes(resolved)) == pytest.approx(5 * (0.1942 + 4 * 0.010))
