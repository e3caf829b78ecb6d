from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_runners.core.catalog import (
    DEFAULT_CATALOG,
    Catalog,
    configured_catalog_path,
    load_catalog,
    resolve_spec,
)
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import CatalogError, RunnerSpecError

BASE = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "team-a"}}


def spec(**changes: Any) -> RunnerSpec:
    return RunnerSpec.parse({**BASE, **changes})


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG)


@pytest.fixture
def default_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CATALOG.read_text())


def write(tmp_path: Path, data: Any, name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def resolve_error(catalog: Catalog, **changes: Any) -> str:
    with pytest.raises(RunnerSpecError) as info:
        catalog.resolve(spec(**changes))
    return str(info.value)


# -- the shipped catalog ---------------------------------------------------------------------
def test_default_catalog_loads_with_its_environments(catalog: Catalog) -> None:
    assert catalog.default_environment == "local"
    assert set(catalog.environments) == {"local", "dev", "prod"}
    assert "2026.8" in catalog.images["dask-runtime"]
    assert catalog.billing["dataproc_dask"].per_vcpu_hour_fee == pytest.approx(0.010)


def test_default_catalog_is_the_configured_one_without_config() -> None:
    assert configured_catalog_path() == DEFAULT_CATALOG


def test_default_spec_resolves_in_the_default_environment(catalog: Catalog) -> None:
    resolved = catalog.resolve(spec(), backend="local_dask")
    assert resolved.environment == "local"
    assert resolved.profile.workers == 2
    assert resolved.profile.threads_per_worker == 1
    assert resolved.network_profile_name == "loopback"
    assert resolved.network_profile is not None
    assert resolved.network_profile.kind == "local"
    assert resolved.hourly_rate == 0.0
    assert resolved.billing.minimum_seconds == 0


def test_full_spec_resolves_every_name(catalog: Catalog) -> None:
    resolved = catalog.resolve(
        spec(
            environment="dev",
            profile="standard",
            network_profile="vpn",
            image="dask-runtime@2026.8",
            driver_bundles=["hana-jdbc@2.19.16"],
        ),
        backend="dataproc_dask",
    )
    assert resolved.environment == "dev"
    assert resolved.profile.machine_type == "n2-standard-4"
    assert resolved.network_profile is not None
    assert resolved.network_profile.kind == "vpn"
    assert (resolved.image_name, resolved.image_version) == ("dask-runtime", "2026.8")
    assert resolved.image is not None
    assert resolved.image.digest.startswith("sha256:")
    assert set(resolved.driver_bundles) == {"hana-jdbc@2.19.16"}
    assert resolved.billing.per_vcpu_hour_fee == pytest.approx(0.010)
    assert resolved.hourly_rate == pytest.approx(0.1942)


def test_unknown_backend_gets_the_default_billing_rule(catalog: Catalog) -> None:
    resolved = catalog.resolve(spec(), backend="no_such_backend")
    assert resolved.billing.minimum_seconds == 60
    assert resolved.billing.per_vcpu_hour_fee == 0.0


# -- hourly rate -----------------------------------------------------------------------------
def test_hourly_rate_uses_spot_price_when_spec_asks_for_spot(catalog: Catalog) -> None:
    on_demand = catalog.resolve(spec(environment="dev", profile="standard"))
    spot = catalog.resolve(spec(environment="dev", profile="standard", spot=True))
    assert on_demand.hourly_rate == pytest.approx(0.1942)
    assert spot.hourly_rate == pytest.approx(0.0470)


def test_hourly_rate_falls_back_to_on_demand_without_a_spot_price(catalog: Catalog) -> None:
    resolved = catalog.resolve(
        spec(
            runner_class="dedicated_host",
            profile="Custom",
            environment="dev",
            approval_ref="CHG-1",
            spot=True,
        )
    )
    assert resolved.hourly_rate == pytest.approx(3.3345)


def test_environment_prices_override_top_level_prices(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["environments"]["dev"]["prices"] = {"n2-standard-4": {"on_demand": 9.0, "spot": 1.0}}
    catalog = load_catalog(write(tmp_path, default_data))
    assert catalog.resolve(spec(environment="dev", profile="standard")).hourly_rate == 9.0
    assert catalog.resolve(spec(environment="prod", profile="standard")).hourly_rate == pytest.approx(0.1942)


def test_profile_without_a_price_costs_nothing(catalog: Catalog) -> None:
    resolved = catalog.resolve(spec(runner_class="pod", profile="small", environment="dev"))
    assert resolved.price is None
    assert resolved.hourly_rate == 0.0


# -- governance errors: field, value, allowed values -------------------------------------------
def test_unknown_environment(catalog: Catalog) -> None:
    message = resolve_error(catalog, environment="staging")
    assert message.startswith("spec.environment:")
    assert "'staging'" in message
    assert "allowed: ['dev', 'local', 'prod']" in message


def test_unknown_profile_lists_profiles_of_that_class_and_environment(catalog: Catalog) -> None:
    message = resolve_error(catalog, profile="huge")
    assert message.startswith("spec.profile:")
    assert "'huge'" in message
    assert "'dask_cluster'" in message
    assert "'local'" in message
    assert "allowed: ['large', 'medium', 'small']" in message


def test_profile_of_another_runner_class_is_not_allowed(catalog: Catalog) -> None:
    message = resolve_error(catalog, profile="Large")
    assert "spec.profile" in message
    assert "allowed: ['large', 'medium', 'small']" in message


def test_unknown_network_profile(catalog: Catalog) -> None:
    message = resolve_error(catalog, network_profile="vpn")
    assert message.startswith("spec.network_profile:")
    assert "'vpn'" in message
    assert "allowed: ['loopback', 'private']" in message


def test_unknown_image(catalog: Catalog) -> None:
    message = resolve_error(catalog, image="ubuntu@22.04")
    assert message.startswith("spec.image:")
    assert "'ubuntu@22.04'" in message
    assert "dask-runtime@2026.8" in message
    assert "hardened-base@2026.11" in message


def test_unknown_image_error_does_not_advertise_unapproved_images(catalog: Catalog) -> None:
    message = resolve_error(catalog, image="ubuntu@22.04")
    assert "dask-runtime@2025.1" not in message


@pytest.mark.parametrize("image", ["dask-runtime@2025.1", "dask-runtime@1999.1"])
def test_unapproved_or_unknown_image_version_lists_the_approved_versions(
    catalog: Catalog, image: str
) -> None:
    message = resolve_error(catalog, image=image)
    assert message.startswith("spec.image:")
    assert repr(image) in message
    assert "not an approved image" in message
    assert "approved: ['dask-runtime@2026.8']" in message


def test_image_not_approved_for_the_runner_class(catalog: Catalog) -> None:
    message = resolve_error(catalog, image="hardened-base@2026.11")
    assert message.startswith("spec.image:")
    assert "'hardened-base@2026.11'" in message
    assert "runner_class 'dask_cluster'" in message
    assert "approved for: ['dedicated_host', 'pod']" in message


def test_same_image_resolves_for_an_approved_runner_class(catalog: Catalog) -> None:
    resolved = catalog.resolve(
        spec(runner_class="dedicated_host", profile="Large", image="hardened-base@2026.11")
    )
    assert resolved.image_name == "hardened-base"


@pytest.mark.parametrize("ref", ["hana-jdbc@1.0", "db2-jdbc@11.5"])
def test_unpinned_driver_bundle(catalog: Catalog, ref: str) -> None:
    message = resolve_error(catalog, driver_bundles=[ref])
    assert message.startswith("spec.driver_bundles:")
    assert repr(ref) in message
    assert "allowed: ['hana-jdbc@2.19.16', 'oracle-odbc@21.13']" in message


def test_custom_profile_requires_an_approval_ref(catalog: Catalog) -> None:
    message = resolve_error(catalog, runner_class="dedicated_host", profile="Custom")
    assert message.startswith("spec.approval_ref:")
    assert "'Custom'" in message
    assert "(got None)" in message
    resolved = catalog.resolve(spec(runner_class="dedicated_host", profile="Custom", approval_ref="CHG-1234"))
    assert resolved.spec.approval_ref == "CHG-1234"


def test_resolution_errors_are_not_catalog_errors(catalog: Catalog) -> None:
    with pytest.raises(RunnerSpecError) as info:
        catalog.resolve(spec(environment="staging"))
    assert not isinstance(info.value, CatalogError)


# -- malformed catalogs ----------------------------------------------------------------------
def test_bad_image_digest(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["images"]["dask-runtime"]["2026.8"]["digest"] = "sha256:abc"
    path = write(tmp_path, default_data)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    assert "catalog.images.dask-runtime.2026.8.digest" in message
    assert "'sha256:abc'" in message
    assert "64 hex digits" in message


def test_bad_driver_bundle_checksum(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["driver_bundles"]["hana-jdbc"]["2.19.16"]["sha256"] = "XYZ"
    with pytest.raises(CatalogError, match=r"catalog\.driver_bundles\.hana-jdbc\.2\.19\.16\.sha256"):
        load_catalog(write(tmp_path, default_data))


def test_missing_default_environment(tmp_path: Path, default_data: dict[str, Any]) -> None:
    del default_data["default_environment"]
    with pytest.raises(CatalogError, match="catalog.default_environment: field required"):
        load_catalog(write(tmp_path, default_data))


def test_default_environment_must_be_defined(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["default_environment"] = "staging"
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, default_data))
    message = str(info.value)
    assert "default_environment 'staging' is not defined" in message
    assert "defined: ['dev', 'local', 'prod']" in message


def test_default_network_profile_must_be_defined(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["environments"]["dev"]["default_network_profile"] = "nowhere"
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, default_data))
    message = str(info.value)
    assert "catalog.environments.dev" in message
    assert "default_network_profile 'nowhere' is not defined" in message


def test_min_workers_greater_than_max_workers(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["environments"]["dev"]["profiles"]["dask_cluster"]["standard"]["min_workers"] = 20
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, default_data))
    message = str(info.value)
    assert "catalog.environments.dev.profiles.dask_cluster.standard" in message
    assert "min_workers (20) is greater than max_workers (10)" in message


def test_unknown_runner_class_in_profiles(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["environments"]["dev"]["profiles"]["vm"] = {"small": {}}
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, default_data))
    assert "catalog.environments.dev.profiles.vm" in str(info.value)
    assert "dask_cluster" in str(info.value)


def test_unknown_key_is_rejected(tmp_path: Path, default_data: dict[str, Any]) -> None:
    default_data["environments"]["local"]["profiles"]["dask_cluster"]["small"]["wrokers"] = 3
    with pytest.raises(
        CatalogError, match=r"catalog\.environments\.local\.profiles\.dask_cluster\.small\.wrokers"
    ):
        load_catalog(write(tmp_path, default_data))


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_catalog_must_be_a_mapping(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in str(info.value)
    assert "expected a mapping at the top level" in str(info.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nenvironments: {local: [\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert "is not valid YAML" in str(info.value)
    assert "line 3" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in str(info.value)
    assert "cannot be read" in str(info.value)
    assert "No such file" in str(info.value)


def test_catalog_errors_are_runner_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(RunnerSpecError):
        load_catalog(tmp_path / "nope.yaml")


def test_edited_catalog_is_reloaded(tmp_path: Path, default_data: dict[str, Any]) -> None:
    path = write(tmp_path, default_data)
    first = load_catalog(path)
    assert load_catalog(path) is first  # cached while unchanged
    edited = copy.deepcopy(default_data)
    edited["default_environment"] = "dev"
    path.write_text(yaml.safe_dump(edited))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_catalog(path).default_environment == "dev"


# -- configuration through the environment ---------------------------------------------------
def test_catalog_path_from_environment(
    tmp_path: Path, default_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    default_data["environments"]["local"]["profiles"]["dask_cluster"]["tiny"] = {"workers": 1}
    path = write(tmp_path, default_data)
    monkeypatch.setenv("AIRFLOW__RUNNERS__CATALOG_PATH", str(path))
    assert configured_catalog_path() == path
    resolved = resolve_spec(spec(profile="tiny"))
    assert resolved.profile.workers == 1
    # The shipped catalog has no such profile: proof the file from the environment was used.
    with pytest.raises(RunnerSpecError, match="'tiny'"):
        resolve_spec(spec(profile="tiny"), catalog_path=str(DEFAULT_CATALOG))


def test_broken_catalog_path_from_environment_raises_catalog_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__RUNNERS__CATALOG_PATH", str(tmp_path / "missing.yaml"))
    with pytest.raises(CatalogError, match="missing.yaml"):
        resolve_spec(spec())


def test_environment_from_environment_variable(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__RUNNERS__ENVIRONMENT", "dev")
    resolved = catalog.resolve(spec(profile="standard"))
    assert resolved.environment == "dev"
    assert resolved.network_profile_name == "private"
    # An explicit environment in the spec wins over the configured one.
    assert catalog.resolve(spec(environment="local")).environment == "local"


def test_configured_environment_must_exist(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__RUNNERS__ENVIRONMENT", "staging")
    with pytest.raises(RunnerSpecError, match=r"spec.environment: 'staging' is not defined"):
        catalog.resolve(spec())
