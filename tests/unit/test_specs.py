from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest

from airflow_provider_runners.core.specs import MAX_TTL, MIN_TTL, RunnerSpec, RunnerTags, split_ref
from airflow_provider_runners.exceptions import RunnerError, RunnerSpecError

BASE = {"runner_class": "dask_cluster", "profile": "small", "tags": {"tenant": "team-a"}}


def spec(**changes: object) -> RunnerSpec:
    return RunnerSpec.parse({**BASE, **changes})


def spec_error(**changes: object) -> str:
    with pytest.raises(RunnerSpecError) as info:
        spec(**changes)
    return str(info.value)


# -- accepted input ---------------------------------------------------------------------------
def test_parse_accepts_a_plain_mapping_and_fills_defaults() -> None:
    parsed = spec()
    assert parsed.runner_class == "dask_cluster"
    assert parsed.profile == "small"
    assert parsed.tags == RunnerTags(tenant="team-a")
    assert parsed.ttl == timedelta(hours=2)
    assert parsed.idle_timeout is None
    assert parsed.driver_bundles == ()
    assert parsed.spot is False


def test_parse_accepts_any_mapping_and_returns_a_spec_unchanged() -> None:
    parsed = RunnerSpec.parse(MappingProxyType(dict(BASE)))
    assert isinstance(parsed, RunnerSpec)
    assert RunnerSpec.parse(parsed) is parsed


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(minutes=90)),
        (" 45 min ", timedelta(minutes=45)),
        ("600", timedelta(seconds=600)),
        (600, timedelta(seconds=600)),
        (7200, timedelta(hours=2)),
        (timedelta(minutes=7), timedelta(minutes=7)),
    ],
)
def test_durations_accept_seconds_and_unit_strings(given: object, expected: timedelta) -> None:
    assert spec(ttl=given).ttl == expected
    assert spec(idle_timeout=given).idle_timeout == expected


def test_spec_is_frozen() -> None:
    parsed = spec()
    with pytest.raises(ValueError, match="frozen"):
        parsed.profile = "large"  # type: ignore[misc]


# -- errors name the field path, the value and what is allowed ---------------------------------
def test_errors_are_runner_spec_errors_and_value_errors() -> None:
    with pytest.raises(RunnerSpecError) as info:
        spec(runner_class="vm")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RunnerError)


def test_bad_tenant_tag_names_nested_field_value_and_rule() -> None:
    message = spec_error(tags={"tenant": "Team A"})
    assert "spec.tags.tenant" in message
    assert "'Team A'" in message
    assert "label-safe" in message
    assert "a-z, 0-9, '-', '_'" in message


def test_unknown_runner_class_lists_the_allowed_classes() -> None:
    message = spec_error(runner_class="vm")
    assert "spec.runner_class" in message
    assert "'vm'" in message
    for allowed in ("dask_cluster", "dedicated_host", "pod", "bench"):
        assert allowed in message


def test_missing_fields_are_all_reported() -> None:
    with pytest.raises(RunnerSpecError) as info:
        RunnerSpec.parse({"profile": "small"})
    message = str(info.value)
    assert "spec.runner_class: field required" in message
    assert "spec.tags: field required" in message


def test_unknown_field_is_rejected_by_name() -> None:
    message = spec_error(worker_count=3)
    assert "spec.worker_count" in message
    assert "(got 3)" in message


def test_non_mapping_is_rejected_with_its_type() -> None:
    with pytest.raises(RunnerSpecError, match="expected a RunnerSpec or a mapping, got list"):
        RunnerSpec.parse(["dask_cluster"])  # type: ignore[arg-type]


def test_unparseable_duration_names_field_and_value() -> None:
    message = spec_error(ttl="soon")
    assert "spec.ttl" in message
    assert "'soon'" in message


# -- ttl range -------------------------------------------------------------------------------
@pytest.mark.parametrize("ttl", [MIN_TTL, MAX_TTL, "5s", "14d"])
def test_ttl_bounds_are_inclusive(ttl: object) -> None:
    assert MIN_TTL <= spec(ttl=ttl).ttl <= MAX_TTL


@pytest.mark.parametrize("ttl", ["4s", "1s", 0, "15d", "14.01d"])
def test_ttl_out_of_range_names_the_allowed_range(ttl: object) -> None:
    message = spec_error(ttl=ttl)
    assert "spec.ttl" in message
    assert "out of range" in message
    assert "allowed: 5s to 14d" in message
    assert f"(got {ttl!r})" in message


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (
            "-5m",
            "spec.ttl: must be a positive duration; use 30m, 2h, 1d (a number with s, m, h or d) or seconds (got '-5m')",
        ),
        (
            "5 minutes",
            "spec.ttl: not a duration; use 30m, 2h, 1d (a number with s, m, h or d) or seconds (got '5 minutes')",
        ),
        ("30x", "spec.ttl: not a duration; use 30m, 2h, 1d"),
    ],
)
def test_a_malformed_duration_says_how_to_write_one(ttl: str, expected: str) -> None:
    message = spec_error(ttl=ttl)
    assert expected in message
    assert "identifier" not in message  # not pydantic's "day identifier" wording


def test_iso_durations_still_parse() -> None:
    assert spec(ttl="PT30M").ttl.total_seconds() == 1800


@pytest.mark.parametrize("idle", [0, "0s", -5])
def test_idle_timeout_must_be_positive(idle: object) -> None:
    message = spec_error(idle_timeout=idle)
    assert "spec.idle_timeout" in message
    assert "must be positive" in message


# -- label-safe tags -------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["a", "team-a", "team_a", "t0", "0team", "a" * 63])
def test_label_safe_tag_values_are_accepted(value: str) -> None:
    tags = spec(tags={"tenant": value, "pipeline": value, "cost_center": value, "extra": {value: value}}).tags
    assert tags.tenant == tags.pipeline == tags.cost_center == value
    assert tags.extra == {value: value}


@pytest.mark.parametrize(
    "value", ["", "Team", "team a", "-team", "team-", "_team", "team_", "tëam", "team.a", "a" * 64]
)
@pytest.mark.parametrize("field", ["tenant", "pipeline", "cost_center"])
def test_non_label_safe_tag_values_are_rejected(field: str, value: str) -> None:
    tags = {"tenant": "team-a", field: value}
    message = spec_error(tags=tags)
    assert f"spec.tags.{field}" in message
    assert repr(value) in message


@pytest.mark.parametrize(("key", "value"), [("Env", "prod"), ("env", "Prod"), ("env", ""), ("e nv", "p")])
def test_extra_tags_check_both_key_and_value(key: str, value: str) -> None:
    message = spec_error(tags={"tenant": "team-a", "extra": {key: value}})
    assert "spec.tags.extra" in message
    assert "not label-safe" in message
    assert f"{key}={value}" in message


def test_tags_reject_unknown_fields() -> None:
    message = spec_error(tags={"tenant": "team-a", "owner": "bob"})
    assert "spec.tags.owner" in message


# -- name@version references -----------------------------------------------------------------
def test_image_and_driver_bundle_refs_are_kept_as_given() -> None:
    parsed = spec(image="dask-runtime@2026.8", driver_bundles=["hana-jdbc@2.19.16", "oracle-odbc@21.13"])
    assert parsed.image == "dask-runtime@2026.8"
    assert parsed.driver_bundles == ("hana-jdbc@2.19.16", "oracle-odbc@21.13")


@pytest.mark.parametrize("ref", ["dask-runtime", "dask-runtime@", "@2026.8", ""])
def test_image_ref_must_be_name_at_version(ref: str) -> None:
    message = spec_error(image=ref)
    assert "spec.image" in message
    assert repr(ref) in message
    assert "expected 'name@version'" in message


def test_driver_bundle_ref_must_be_name_at_version() -> None:
    message = spec_error(driver_bundles=["hana-jdbc@2.19.16", "oracle-odbc"])
    assert "spec.driver_bundles" in message
    assert "'oracle-odbc'" in message
    assert "expected 'name@version'" in message


def test_split_ref() -> None:
    assert split_ref("dask-runtime@2026.8", "image") == ("dask-runtime", "2026.8")
    with pytest.raises(ValueError, match="not a driver bundle reference"):
        split_ref("nope", "driver bundle")
