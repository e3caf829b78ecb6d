"""The runner registry: the same contract on the local SQLite file and on DynamoDB (moto server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_runners.governance.runner_index import (
    NullRegistry,
    RunnerRecord,
    RunnerRegistry,
    open_registry,
)
from airflow_provider_runners.governance.runner_index.dynamodb import TTL_RETENTION_S, DynamoDBRegistry
from airflow_provider_runners.governance.runner_index.sqlite import SqliteRegistry
from tests.moto_aws import AWS_CONN_ID, moto_server


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


_tables = iter(range(10_000))


@pytest.fixture(params=["sqlite", "dynamodb"])
def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "sqlite":

        def make(namespace: str = "default") -> RunnerRegistry:
            return SqliteRegistry(tmp_path / "registry.sqlite", namespace)

    else:
        request.getfixturevalue("moto_endpoint")
        table = f"runners-registry-{next(_tables)}"

        def make(namespace: str = "default") -> RunnerRegistry:
            registry = DynamoDBRegistry(table, namespace, aws_conn_id=AWS_CONN_ID)
            registry.ensure_table()
            return registry

    return make


def record(key: str = "rl" + "1" * 26, **changes: object) -> RunnerRecord:
    now = time.time()
    base = RunnerRecord(
        key=key,
        backend="ec2",
        conn_id="runners_ec2",
        status="running",
        resource_id="i-0abc",
        holder=key + "-t1",
        dag_id="etl",
        run_id="manual__2026-01-01T00:00:00+00:00",
        task_id="cluster.provision",
        map_index=3,
        tenant="qa",
        pipeline="sales-etl",
        usd_per_hour=0.68,
        registered_at=now,
        last_heartbeat=now,
        expires_at=now + 3600,
    )
    return base.evolve(**changes)


def test_put_get_and_list_round_trip(make_registry) -> None:  # type: ignore[no-untyped-def]
    registry = make_registry()
    rec = record()
    registry.put(rec)
    assert registry.get(rec.key) == rec
    assert registry.get("rl-missing") is None
    other = record("rl" + "2" * 26, usd_per_hour=0.2, registered_at=rec.registered_at + 1)
    registry.put(other)
    assert [r.key for r in registry.records()] == [rec.key, other.key]
    assert registry.live() == [rec, other]


def test_namespaces_are_separate(make_registry) -> None:  # type: ignore[no-untyped-def]
    a, b = make_registry("team-a"), make_registry("team-b")
    a.put(record())
    assert b.records() == []
    assert len(a.records()) == 1


def test_conditional_transition_only_from_the_expected_status_and_holder(make_registry) -> None:  # type: ignore[no-untyped-def]
    registry = make_registry()
    rec = record()
    registry.put(rec)
    assert registry.transition(rec.key, "draining", expect_status=("idle",)) is False
    assert registry.transition(rec.key, "draining", expect_holder="someone-else") is False
    assert registry.get(rec.key) == rec  # refused writes change nothing
    assert registry.transition(rec.key, "draining", expect_status=("running",), expect_holder=rec.holder)
    assert registry.get(rec.key).status == "draining"
    assert registry.transition("rl-missing", "ended") is False  # never creates a record


def test_exactly_one_claimer_wins(make_registry) -> None:  # type: ignore[no-untyped-def]
    registry = make_registry()
    rec = record(status="idle", holder="")
    registry.put(rec)
    results: list[bool] = []

    def claim(holder: str) -> None:
        results.append(make_registry().claim(rec.key, holder))

    threads = [threading.Thread(target=claim, args=(f"try-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    winner = registry.get(rec.key)
    assert winner.status == "running"
    assert winner.holder.startswith("try-")


def test_heartbeat_and_end(make_registry) -> None:  # type: ignore[no-untyped-def]
    registry = make_registry()
    rec = record(last_heartbeat=100.0)
    registry.put(rec)
    assert registry.heartbeat(rec.key, now=200.0)
    assert registry.get(rec.key).last_heartbeat == 200.0
    assert registry.end(rec.key, "teardown")
    ended = registry.get(rec.key)
    assert (ended.status, ended.ended_reason) == ("ended", "teardown")
    assert registry.live() == []
    assert registry.heartbeat(rec.key) is False  # an ended runner is never revived
    assert registry.end(rec.key, "again") is False


def test_expired_records_are_not_live_and_are_purged(make_registry) -> None:  # type: ignore[no-untyped-def]
    registry = make_registry()
    now = time.time()
    registry.put(record("rl-old", expires_at=now - 2 * 86400))
    registry.put(record("rl-ended", status="ended", last_heartbeat=now - 2 * 86400))
    registry.put(record("rl-live"))
    assert [r.key for r in registry.live()] == ["rl-live"]
    assert registry.purge(older_than_s=86400) == 2
    assert [r.key for r in registry.records()] == ["rl-live"]


def test_invalid_status_is_refused(make_registry) -> None:  # type: ignore[no-untyped-def]
    registry = make_registry()
    registry.put(record())
    with pytest.raises(ValueError, match="status 'exploded' is not one of"):
        registry.transition(record().key, "exploded")


def test_dynamodb_table_has_seed_001_shape_and_ttl(moto_endpoint: str) -> None:
    registry = DynamoDBRegistry("runners-shape", aws_conn_id=AWS_CONN_ID)
    registry.ensure_table()
    registry.ensure_table()  # idempotent
    table = registry.client.describe_table(TableName="runners-shape")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "namespace": "HASH",
        "runner_key": "RANGE",
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = registry.client.describe_time_to_live(TableName="runners-shape")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "ttl_epoch"
    rec = record()
    registry.put(rec)
    item = registry.client.get_item(TableName="runners-shape", Key=registry._key(rec.key))["Item"]
    assert int(item["ttl_epoch"]["N"]) == int(rec.expires_at) + TTL_RETENTION_S


def test_open_registry_from_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{tmp_path}/r.sqlite")
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY_NAMESPACE", "burst")
    registry = open_registry()
    assert isinstance(registry, SqliteRegistry)
    assert (registry.path, registry.namespace) == (tmp_path / "r.sqlite", "burst")
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", "dynamodb://my-table")
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY_CONN_ID", "aws_prod")
    dynamo = open_registry()
    assert isinstance(dynamo, DynamoDBRegistry)
    assert (dynamo.table_name, dynamo.aws_conn_id) == ("my-table", "aws_prod")
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", "none")
    assert isinstance(open_registry(), NullRegistry)
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", "redis://x")
    with pytest.raises(ValueError, match="'redis://x' is not a registry URL; allowed:"):
        open_registry()


def test_default_registry_lives_in_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW__RUNNERS__REGISTRY", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    registry = open_registry()
    assert isinstance(registry, SqliteRegistry)
    assert registry.path == tmp_path / "runners" / "registry.sqlite"
