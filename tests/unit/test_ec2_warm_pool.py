"""The ``ec2`` warm-pool lifecycle (backends/ec2/warm_pool.py) on the moto server with real boto3:
idle pooled hosts are ended, pools are refilled to ``min_size`` within ``max_size``, and claims
stay race-free. The clock is injected (``now=``): no test waits for an idle ttl to pass."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.ec2 import warm_pool
from airflow_provider_runners.backends.ec2.backend import Ec2Backend
from airflow_provider_runners.backends.ec2.pool import IDLE_SINCE_TAG, ClaimTable
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core.backend import ProvisionRequest
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import ConnectionConfigError
from airflow_provider_runners.governance import reaper
from tests.fakes.ec2_env import RUNNER_CONN_ID, Ec2Env, now, start_env, stop_env

POOL_SPEC: dict[str, Any] = {
    "runner_class": "dedicated_host",
    "profile": "Large",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "finance", "pipeline": "erp-extract"},
    "ttl": "90m",
    "options": {"teardown": "pool"},
}
WARM = {
    "erp": {
        "profile": "Large",
        "image": "hardened-base@2026.11",
        "min_size": 2,
        "max_size": 3,
        "idle_ttl": "1h",
    }
}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Env]:
    env = start_env(tmp_path_factory.mktemp("ec2pool"))
    yield env
    stop_env(env)


def _setup(aws: Ec2Env, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Ec2Env:
    aws.server.reset()
    aws.provision_account()
    for key, value in aws.connections(**extra).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.05)
    monkeypatch.setattr(Ec2Backend, "command_poll_s", 0.1)
    return aws


@pytest.fixture
def env(aws: Ec2Env, monkeypatch: pytest.MonkeyPatch) -> Ec2Env:
    return _setup(aws, monkeypatch)


def backend() -> Ec2Backend:
    b = get_backend(RUNNER_CONN_ID)
    assert isinstance(b, Ec2Backend)
    return b


def request(env: Ec2Env, dag: str) -> ProvisionRequest:
    parsed = RunnerSpec.parse(POOL_SPEC)
    lineage = Lineage(dag, "run-1", "host.provision")
    return ProvisionRequest.build(
        resolve_spec(parsed, backend="ec2", catalog_path=env.catalog_path),
        lineage,
        lineage.attempt_token(1),
        RUNNER_CONN_ID,
        {"tenant": "finance", "pipeline": dag},
    )


def pooled_host(env: Ec2Env, dag: str = "seed") -> RunnerHandle:
    b = backend()
    handle = b.create(request(env, dag))
    assert b.teardown(handle).existed  # back in the pool: stopped, idle
    return handle


def state_of(env: Ec2Env, iid: str) -> str:
    found = env.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return str(found["State"]["Name"])


def tags_of(env: Ec2Env, iid: str) -> dict[str, str]:
    found = env.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return {t["Key"]: t["Value"] for t in found.get("Tags", [])}


def test_return_to_the_pool_writes_the_idle_since_tag(env: Ec2Env) -> None:
    before = now()
    handle = pooled_host(env)
    tags = tags_of(env, handle.resource_id)
    assert tags["runner-pool-state"] == "idle"
    assert int(tags[IDLE_SINCE_TAG]) >= int(before.timestamp())


def test_an_expired_pooled_host_is_gone_after_one_reaper_sweep(env: Ec2Env) -> None:
    handle = pooled_host(env)
    later = now() + timedelta(hours=3)  # past the Connection's pool_idle_ttl (2h) and expires-at
    before = reaper.sweep([RUNNER_CONN_ID], use_db=False, now=now())
    assert handle.resource_id not in before.summary()["reaped"]  # not expired yet: kept in the pool
    assert state_of(env, handle.resource_id) == "stopped"
    report = reaper.sweep([RUNNER_CONN_ID], use_db=False, now=later)
    assert report.ok, report.errors
    assert handle.resource_id in report.summary()["reaped"]
    action = next(a for a in report.actions if a.resource_id == handle.resource_id)
    assert "expired" in action.reason
    assert action.result.startswith("terminated")
    assert state_of(env, handle.resource_id) in ("shutting-down", "terminated")
    assert ClaimTable(env.client("dynamodb"), "runner-claims").get(handle.resource_id) is None
    assert not env.managed()
    dry = reaper.sweep([RUNNER_CONN_ID], use_db=False, now=later, dry_run=True)
    assert not dry.actions


def test_dry_run_sweep_reports_an_expired_pooled_host_and_keeps_it(env: Ec2Env) -> None:
    handle = pooled_host(env)
    report = reaper.sweep([RUNNER_CONN_ID], use_db=False, now=now() + timedelta(hours=3), dry_run=True)
    assert handle.resource_id in report.summary()["reaped"]
    assert state_of(env, handle.resource_id) == "stopped"


def test_idle_longer_than_the_pool_idle_ttl_is_terminated(
    aws: Ec2Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _setup(aws, monkeypatch, warm_pools={"erp": {**WARM["erp"], "min_size": 0, "idle_ttl": "10m"}})
    handle = pooled_host(env)
    assert not warm_pool.prune(backend(), now() + timedelta(minutes=5), catalog_path=env.catalog_path)
    actions = warm_pool.prune(backend(), now() + timedelta(minutes=20), catalog_path=env.catalog_path)
    assert [(a.action, a.instance_id, a.pool) for a in actions] == [("terminate", handle.resource_id, "erp")]
    assert "longer than idle_ttl" in actions[0].reason
    assert state_of(env, handle.resource_id) in ("shutting-down", "terminated")


def test_a_pool_below_min_size_is_refilled_within_max_size(
    aws: Ec2Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _setup(aws, monkeypatch, warm_pools=WARM)
    busy = backend().create(request(env, "busy"))  # one host of the pool in use
    b = backend()
    dry = warm_pool.maintain(b, report_only=True, catalog_path=env.catalog_path)
    assert [a.action for a in dry.actions] == ["launch", "launch"]
    assert len(env.managed()) == 1  # report only: nothing launched
    report = warm_pool.maintain(b, catalog_path=env.catalog_path)
    assert not report.errors, report.errors
    launched = report.summary()["launched"]
    assert len(launched) == 2  # min_size 2 idle; 3 hosts in all = max_size
    (row,) = report.pools
    assert (row["pool"], row["idle"], row["in_use"], row["min_size"], row["max_size"]) == ("erp", 2, 1, 2, 3)
    for iid in launched:
        tags = tags_of(env, iid)
        assert state_of(env, iid) == "stopped"
        assert tags["runner-pool-state"] == "idle"
        assert tags["runner-pool"] == busy.details["pool_key"]
        assert IDLE_SINCE_TAG in tags
        assert "runner-lineage" not in tags
        claim = ClaimTable(env.client("dynamodb"), "runner-claims").get(iid)
        assert claim is not None
        assert claim["claim_state"] == "idle"
    again = warm_pool.maintain(backend(), catalog_path=env.catalog_path)
    assert not again.actions  # full: nothing to do
    assert backend().teardown(busy).existed  # back to the pool: 3 idle, max 3, min 2: kept
    assert not warm_pool.maintain(backend(), catalog_path=env.catalog_path).actions
    warm = backend().create(request(env, "next"))
    assert warm.details["acquired"] == "warm"  # the first run of the day is warm
    assert warm.resource_id in [*launched, busy.resource_id]


def test_max_size_caps_the_refill_and_trims_the_oldest_idle(
    aws: Ec2Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _setup(aws, monkeypatch, warm_pools={"erp": {**WARM["erp"], "min_size": 0, "max_size": 1}})
    first = pooled_host(env, "one")
    b = backend()
    second = b.create(request(env, "two"))  # the first is idle and claimed again
    assert second.resource_id == first.resource_id
    third = b.create(request(env, "three"))  # cold
    assert b.teardown(second).existed
    assert b.teardown(third).existed
    actions = warm_pool.prune(backend(), now() + timedelta(minutes=1), catalog_path=env.catalog_path)
    assert [(a.action, a.reason) for a in actions] == [("terminate", "beyond max_size 1")]
    assert len(env.managed()) == 1


def test_two_claimers_still_have_one_winner_while_maintenance_runs(
    aws: Ec2Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _setup(aws, monkeypatch, warm_pools={"erp": {**WARM["erp"], "min_size": 1, "max_size": 1}})
    report = warm_pool.maintain(backend(), catalog_path=env.catalog_path)
    (iid,) = report.summary()["launched"]
    results: dict[str, RunnerHandle] = {}
    barrier = threading.Barrier(2)

    def provision(dag: str) -> None:
        mine = backend()
        req = request(env, dag)
        barrier.wait()
        results[dag] = mine.create(req)

    threads = [threading.Thread(target=provision, args=(dag,)) for dag in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(h.details["acquired"] for h in results.values()) == ["cold", "warm"]
    winner = next(h for h in results.values() if h.details["acquired"] == "warm")
    assert winner.resource_id == iid
    # an in-use host is never pruned, even past its pool's idle ttl
    later = warm_pool.prune(backend(), now() + timedelta(hours=5), catalog_path=env.catalog_path)
    assert iid not in [a.instance_id for a in later]
    assert state_of(env, iid) in ("pending", "running")


@pytest.mark.parametrize(
    ("pools", "match"),
    [
        (["erp"], "must be an object"),
        ({"erp": {"image": "hardened-base@2026.11"}}, r"warm_pools.erp.profile: required"),
        ({"erp": {**WARM["erp"], "min_size": -1}}, r"warm_pools.erp.min_size: -1; allowed"),
        ({"erp": {**WARM["erp"], "min_size": 4}}, "above max_size 3"),
        ({"erp": {**WARM["erp"], "size": 4}}, r"unknown fields \['size'\]"),
        ({"erp": {**WARM["erp"], "idle_ttl": "soon"}}, r"warm_pools.erp.idle_ttl: 'soon'"),
    ],
)
def test_bad_warm_pools_are_clear_errors(pools: Any, match: str) -> None:
    with pytest.raises(ConnectionConfigError, match=match) as err:
        warm_pool.pool_configs("runners_ec2", {"warm_pools": pools})
    assert "Connection 'runners_ec2' extra warm_pools" in str(err.value)


def test_cli_pool_lists_and_maintains_the_pools(
    aws: Ec2Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from airflow_provider_runners.cli import main

    env = _setup(aws, monkeypatch, warm_pools={"erp": {**WARM["erp"], "min_size": 1}})
    args = ["pool", "--conn-id", RUNNER_CONN_ID, "--catalog", env.catalog_path]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "erp" in out
    assert "Large" in out
    assert main([*args, "--maintain", "--report-only"]) == 0
    assert "would launch" in capsys.readouterr().out
    assert env.managed() == []
    assert main([*args, "--maintain", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index('{\n  "pools"') :])  # after the log lines
    assert [a["action"] for a in listed["actions"]] == ["launch"]
    assert (listed["pools"][0]["idle"], listed["pools"][0]["min_size"]) == (1, 1)
    assert main(["pool", "--conn-id", "runners_default"]) == 1
    assert "warm pools are ec2 only" in capsys.readouterr().err


def test_the_runners_page_shows_the_warm_pools(aws: Ec2Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_runners.plugins import runners_ui
    from airflow_provider_runners.plugins.pool_view import warm_pools

    env = _setup(aws, monkeypatch, warm_pools={"erp": {**WARM["erp"], "min_size": 3}})
    monkeypatch.setenv("AIRFLOW__RUNNERS__CATALOG_PATH", env.catalog_path)
    pooled_host(env)
    rows = [r for r in warm_pools() if r.get("conn_id") == RUNNER_CONN_ID]
    assert [(r["pool"], r["idle"], r["in_use"], r["min_size"]) for r in rows] == [("erp", 1, 0, 3)]
    page = runners_ui.render_page([], [], pools=rows)
    assert "<h2>Warm pools</h2>" in page
    assert '<tr class="bad"' in page  # below its minimum
    assert (
        "<td>erp</td><td>Large</td><td>hardened-base@2026.11</td><td>1</td><td>0</td><td>3</td><td>3</td>"
        in page
    )
    assert "Warm pools" not in runners_ui.render_page(None, [], pools=None)  # no Connection access


def test_pools_from_the_catalog_and_the_connection_entry_wins(
    aws: Ec2Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import yaml

    env = _setup(aws, monkeypatch, warm_pools={"erp": {**WARM["erp"], "min_size": 0}})
    catalog = yaml.safe_load(Path(env.catalog_path).read_text())
    catalog["warm_pools"] = {
        "erp": WARM["erp"],
        "big": {"profile": "XLarge", "image": "hardened-base@2026.11"},
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    rows = warm_pool.pools(backend(), catalog_path=str(path))
    assert [(r["pool"], r["min_size"]) for r in rows] == [("big", 0), ("erp", 0)]  # the Connection's erp
    catalog["warm_pools"] = {"big": {"profile": "XLarge"}}
    path.write_text(yaml.safe_dump(catalog))
    with pytest.raises(ConnectionConfigError, match=r"catalog warm_pools.big.image: required"):
        warm_pool.maintain(backend(), catalog_path=str(path))


def test_the_operator_runs_a_pass_and_refuses_other_backends(
    aws: Ec2Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_runners.operators.pool import WarmPoolMaintenanceOperator

    env = _setup(aws, monkeypatch, warm_pools={"erp": {**WARM["erp"], "min_size": 1}})
    op = WarmPoolMaintenanceOperator(
        task_id="maintain", conn_id=RUNNER_CONN_ID, catalog_path=env.catalog_path, report_only="True"
    )  # type: ignore[arg-type]  # as the template renders it
    preview = op.execute({})  # type: ignore[arg-type]
    assert preview["report_only"] is True
    assert [a["action"] for a in preview["actions"]] == ["launch"]
    assert env.managed() == []
    op.report_only = False
    assert len(op.execute({})["launched"]) == 1  # type: ignore[arg-type]
    other = WarmPoolMaintenanceOperator(task_id="other", conn_id="runners_default")
    with pytest.raises(ConnectionConfigError, match="warm pools need conn_type 'runners_ec2'"):
        other.execute({})  # type: ignore[arg-type]
