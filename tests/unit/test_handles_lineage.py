from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage, label_value
from airflow_provider_runners.core.specs import LABEL_RE

#: Dataproc request_id: at most 40 characters of letters, digits, '_' and '-'.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
CREATED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def handle_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "backend": "local_dask",
        "runner_class": "dask_cluster",
        "resource_id": "ld-rl29f4fd56d59b06d1dc1a224bf5-t1",
        "conn_id": "runners_default",
        "lineage_key": "rl29f4fd56d59b06d1dc1a224bf5",
        "attempt_token": "rl29f4fd56d59b06d1dc1a224bf5-t1",
        "created_at": CREATED,
        "expires_at": CREATED + timedelta(hours=2),
        "environment": "local",
        "profile": "small",
        "tags": {"managed-by": MANAGED_BY, "tenant": "team-a"},
        "endpoints": {"scheduler": "tcp://127.0.0.1:8786"},
        "details": {"pid": 4242, "host": "worker-1", "usd_per_hour": 0.5, "spot": False, "note": None},
    }
    data.update(changes)
    return data


def make_handle(**changes: Any) -> RunnerHandle:
    return RunnerHandle(**handle_data(**changes))


# -- RunnerHandle: XCom round trip -----------------------------------------------------------
def test_to_xcom_is_plain_json() -> None:
    value = make_handle().to_xcom()
    assert json.loads(json.dumps(value)) == value
    assert value["created_at"].startswith("2026-05-01T12:00:00")
    assert value["details"]["pid"] == 4242


def test_round_trip_through_xcom_dict() -> None:
    handle = make_handle()
    back = RunnerHandle.from_xcom(handle.to_xcom())
    assert back == handle
    assert back.created_at == CREATED
    assert back.created_at.tzinfo is not None


def test_round_trip_through_json_text() -> None:
    handle = make_handle(adopted=True)
    back = RunnerHandle.from_xcom(json.dumps(handle.to_xcom()))
    assert back == handle
    assert back.adopted is True
    assert back.expires_at - back.created_at == timedelta(hours=2)


def test_from_xcom_returns_a_handle_as_is_and_rejects_other_types() -> None:
    handle = make_handle()
    assert RunnerHandle.from_xcom(handle) is handle
    with pytest.raises(TypeError, match="expected a RunnerHandle, a mapping or JSON text, got int"):
        RunnerHandle.from_xcom(42)  # type: ignore[arg-type]


def test_from_xcom_validates() -> None:
    data = make_handle().to_xcom()
    del data["resource_id"]
    with pytest.raises(ValueError, match="resource_id"):
        RunnerHandle.from_xcom(data)
    with pytest.raises(ValueError, match="runner_class"):
        RunnerHandle.from_xcom({**make_handle().to_xcom(), "runner_class": "vm"})


# -- RunnerHandle: never carries a secret ----------------------------------------------------
@pytest.mark.parametrize("field", ["endpoints", "details", "tags"])
@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_passwd",
        "client_secret",
        "api_key",
        "apiKey",
        "auth_token",
        "private_key",
        "credentials",
    ],
)
def test_secret_looking_keys_are_rejected(field: str, key: str) -> None:
    with pytest.raises(ValueError, match=f"key {key!r} looks like a secret"):
        make_handle(**{field: {key: "x"}})


@pytest.mark.parametrize("field", ["endpoints", "details", "tags"])
@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://etl:hunter2@db:5432/warehouse",
        "https://user:s3cr3t@example.com/api",
        "redis://:pw@cache:6379",
    ],
)
def test_uris_with_a_password_are_rejected(field: str, uri: str) -> None:
    with pytest.raises(ValueError, match="is a URI with a password"):
        make_handle(**{field: {"target": uri}})


@pytest.mark.parametrize(
    "uri",
    ["tcp://127.0.0.1:8786", "http://127.0.0.1:8787/status", "https://user@example.com/x", "s3://bucket/key"],
)
def test_uris_without_a_password_are_accepted(uri: str) -> None:
    handle = make_handle(endpoints={"target": uri})
    assert handle.endpoints["target"] == uri


def test_attempt_token_key_is_allowed() -> None:
    assert make_handle(details={"attempt_token": "rl00-t1"}).details["attempt_token"] == "rl00-t1"


def test_from_xcom_rejects_a_tampered_payload_with_a_secret() -> None:
    data = make_handle().to_xcom()
    data["details"]["password"] = "hunter2"
    with pytest.raises(ValueError, match="looks like a secret"):
        RunnerHandle.from_xcom(data)


def test_evolve_cannot_smuggle_a_secret_in() -> None:
    with pytest.raises(ValueError, match="URI with a password"):
        make_handle().evolve(endpoints={"db": "postgresql://u:pw@h/db"})


# -- RunnerHandle.evolve ---------------------------------------------------------------------
def test_evolve_merges_endpoints_and_details_and_replaces_other_fields() -> None:
    handle = make_handle()
    evolved = handle.evolve(
        endpoints={"dashboard": "http://127.0.0.1:8787/status"},
        details={"pid": 99, "workers": 4},
        adopted=True,
    )
    assert evolved.endpoints == {
        "scheduler": "tcp://127.0.0.1:8786",
        "dashboard": "http://127.0.0.1:8787/status",
    }
    assert evolved.details == {**handle.details, "pid": 99, "workers": 4}
    assert evolved.adopted is True
    # The original is unchanged (handles are frozen values).
    assert handle.adopted is False
    assert "dashboard" not in handle.endpoints
    assert handle.details["pid"] == 4242


def test_evolve_validates_other_fields() -> None:
    with pytest.raises(ValueError, match="resource_id"):
        make_handle().evolve(resource_id="")


# -- Lineage key -----------------------------------------------------------------------------
LINEAGE = Lineage("etl_daily", "scheduled__2026-01-01T00:00:00+00:00", "provision")


def test_lineage_key_is_stable_across_releases() -> None:
    # The key is written on cloud resources: changing it would orphan every live runner.
    assert LINEAGE.key == "rl29f4fd56d59b06d1dc1a224bf5"
    assert Lineage(LINEAGE.dag_id, LINEAGE.run_id, LINEAGE.task_id, 3).key == "rlfb7891690ab80a3baf14c8300c"


def test_lineage_key_shape() -> None:
    key = LINEAGE.key
    assert len(key) == 28
    assert re.fullmatch(r"rl[0-9a-f]{26}", key)
    assert LABEL_RE.match(key)
    assert Lineage(LINEAGE.dag_id, LINEAGE.run_id, LINEAGE.task_id).key == key


@pytest.mark.parametrize(
    "other",
    [
        Lineage("etl_hourly", LINEAGE.run_id, LINEAGE.task_id),
        Lineage(LINEAGE.dag_id, "manual__2026-01-01T00:00:00+00:00", LINEAGE.task_id),
        Lineage(LINEAGE.dag_id, LINEAGE.run_id, "teardown"),
        Lineage(LINEAGE.dag_id, LINEAGE.run_id, LINEAGE.task_id, 0),
    ],
)
def test_lineage_key_differs_per_task_instance(other: Lineage) -> None:
    assert other.key != LINEAGE.key


def test_lineage_from_context() -> None:
    ti = SimpleNamespace(dag_id="etl_daily", run_id=LINEAGE.run_id, task_id="provision", map_index=-1)
    assert Lineage.from_context({"ti": ti}) == LINEAGE
    mapped = SimpleNamespace(dag_id="etl_daily", run_id=LINEAGE.run_id, task_id="work", map_index=2)
    # Another task's lineage in the same run: the provision task, unmapped.
    assert Lineage.from_context({"ti": mapped}, task_id="provision") == LINEAGE
    assert Lineage.from_context({"ti": mapped}).map_index == 2


def test_labels_are_label_safe_and_carry_the_key() -> None:
    labels = Lineage("My DAG (prod)", "r", "Provision.Step").labels()
    assert labels["runner-lineage"] == Lineage("My DAG (prod)", "r", "Provision.Step").key
    assert labels["managed-by"] == MANAGED_BY
    for value in labels.values():
        assert LABEL_RE.match(value), value


# -- attempt token ---------------------------------------------------------------------------
def test_attempt_token_differs_per_try() -> None:
    tokens = [LINEAGE.attempt_token(n) for n in range(1, 50)]
    assert len(set(tokens)) == len(tokens)
    assert all(token.startswith(LINEAGE.key) for token in tokens)


@pytest.mark.parametrize("try_number", [0, 1, 2, 10, 999, 10**6, 10**9 - 1, 10**9])
def test_attempt_token_is_a_valid_dataproc_request_id(try_number: int) -> None:
    token = LINEAGE.attempt_token(try_number)
    assert len(token) <= 40
    assert REQUEST_ID_RE.match(token), token


@settings(max_examples=200, deadline=None)
@given(
    dag_id=st.text(min_size=1, max_size=250),
    run_id=st.text(min_size=1, max_size=250),
    task_id=st.text(min_size=1, max_size=250),
    map_index=st.integers(min_value=-1, max_value=100_000),
    try_number=st.integers(min_value=0, max_value=10**9),
)
def test_attempt_token_is_valid_for_any_task_instance(
    dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int
) -> None:
    lineage = Lineage(dag_id, run_id, task_id, map_index)
    assert len(lineage.key) == 28
    assert REQUEST_ID_RE.match(lineage.attempt_token(try_number))


# -- label_value -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("etl_daily", "etl_daily"),
        ("My DAG (prod)", "my-dag-prod"),
        ("Provision.Step/2", "provision-step-2"),
        ("__init__", "init"),
        ("Ünïcødé", "n-c-d"),
        ("!!!", "x"),
        ("", "x"),
    ],
)
def test_label_value_squashes_odd_text(text: str, expected: str) -> None:
    assert label_value(text) == expected
    assert LABEL_RE.match(label_value(text))


def test_label_value_of_long_text_is_short_and_still_distinct() -> None:
    prefix = "a-very-long-dag-id-" * 5
    first, second = label_value(prefix + "one"), label_value(prefix + "two")
    for value in (first, second):
        assert len(value) <= 63
        assert LABEL_RE.match(value), value
    assert first != second
    assert label_value(prefix + "one") == first


def test_label_value_keeps_text_of_exactly_63_chars() -> None:
    assert label_value("a" * 63) == "a" * 63
    assert len(label_value("a" * 64)) <= 63


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_label_value_is_always_label_safe(text: str) -> None:
    value = label_value(text)
    assert 1 <= len(value) <= 63
    assert LABEL_RE.match(value), value


def test_provision_request_computes_expires_at_once_and_its_tag_wins() -> None:
    """``build`` = now + spec.ttl; ``resource_labels()`` carries that instant as ``expires-at``
    (whole seconds) even when the task's labels hold another one."""
    from airflow_provider_runners.core.backend import ProvisionRequest
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.specs import RunnerSpec

    spec = RunnerSpec.parse(
        {"runner_class": "dask_cluster", "profile": "small", "ttl": "90m", "tags": {"tenant": "qa"}}
    )
    lineage = Lineage("dag", "run-1", "provision")
    request = ProvisionRequest.build(
        resolve_spec(spec, "local_dask"), lineage, "t1", "c", {"tenant": "qa", "expires-at": "1"}, now=CREATED
    )
    assert request.expires_at == CREATED + timedelta(minutes=90)
    labels = request.resource_labels()
    assert labels["expires-at"] == str(int((CREATED + timedelta(minutes=90)).timestamp()))
    assert (labels["tenant"], labels["managed-by"], labels["runner-lineage"]) == (
        "qa",
        MANAGED_BY,
        lineage.key,
    )
