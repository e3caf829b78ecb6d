"""The ``ec2`` backend through real Airflow ``dag.test()`` runs, against moto in server mode.

``runner(..., conn_id=<runners_ec2 Connection from AIRFLOW_CONN_*>)`` + ``RunnerCommandOperator``:
provision (deferred readiness in the in-line triggerer), a command over SSM Run Command, teardown,
evidence. AWS is moto over HTTP with real boto3; the SSM agent is the stand-in in
tests/fakes/aws.py (moto has none): the command really runs, in a local bash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.ec2.backend import Ec2Backend
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core.backend import ProvisionRequest
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from tests.conftest import AIRFLOW_HOME
from tests.fakes.ec2_env import PARAM_VALUE, RUNNER_CONN_ID, SECRET_VALUE, Ec2Env, start_env, stop_env
from tests.integration.conftest import DAGS, EVIDENCE, chain_for, ti_states, xcoms

pytestmark = pytest.mark.integration
SPEC: dict[str, Any] = {
    "runner_class": "dedicated_host",
    "profile": "Large",
    "image": "hardened-base@2026.11",
    "driver_bundles": ["hana-jdbc@2.19.16"],
    "tags": {"tenant": "finance", "pipeline": "erp-extract"},
    "ttl": "2h",
}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Env]:
    env = start_env(tmp_path_factory.mktemp("ec2-int"))
    yield env
    stop_env(env)


@pytest.fixture
def env(aws: Ec2Env, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ec2Env]:
    aws.server.reset()
    aws.provision_account()
    for key, value in aws.connections().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RUNNERS_EC2_TEST_CATALOG", aws.catalog_path)
    monkeypatch.setenv("RUNNERS_EC2_TEST_CONN_ID", RUNNER_CONN_ID)
    monkeypatch.setattr(Ec2Backend, "poll_interval", 0.05)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.05)
    monkeypatch.setattr(Ec2Backend, "command_poll_s", 0.1)
    SharedStatusPoller._pollers.clear()
    yield aws
    running = [i["InstanceId"] for i in aws.managed(("pending", "running", "stopping"))]
    assert running == [], f"hosts left running: {running}"
    assert aws.agent.running() == 0


def get_dag(env: Ec2Env, dag_id: str) -> Any:
    """The DAG from tests/dags/ec2_test_dags.py, parsed now that the catalog names moto's AMIs."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "ec2_test_dags.py"))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def values(dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
    return {(task, key): value for task, key, value in xcoms(dag_id, run_id)}


def test_provision_command_teardown_with_evidence_and_no_secret_anywhere(
    env: Ec2Env, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = get_dag(env, "ec2_test_extract")
    dr = dag.test()
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    assert set(states.values()) == {"success"}
    got = values("ec2_test_extract", dr.run_id)
    handle = got[("host.provision", "return_value")]
    iid = handle["resource_id"]
    assert handle["backend"] == "ec2"
    assert handle["endpoints"]["private_ip"].startswith("10.20.1.")
    facts = got[("host.provision", "runner_facts")]
    assert facts["acquisition"] == "created"
    assert facts["acquired"] == "cold"
    assert facts["instance_type"] == "r5.2xlarge"
    assert facts["ami_id"] == env.ids["ami"]
    assert facts["image"] == {"ref": "hardened-base@2026.11", "digest": "sha256:" + "9c" * 32}
    assert facts["driver_bundles"]["hana-jdbc@2.19.16"]
    assert facts["network_profile"] == {"name": "private", "kind": "private"}
    assert facts["iam_instance_profile"].endswith("/runner-host")
    command = got[("host.extract", "runner_facts")]
    assert command["exit_code"] == 0
    assert command["ssm_status"] == "Success"
    teardown = got[("host.teardown", "return_value")]
    assert [t["resource_id"] for t in teardown] == [iid]
    assert teardown[0]["mode"] == "terminate"
    assert teardown[0]["log_flush"]["flushed"] is True
    assert (
        env.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"][
            "Name"
        ]
        == "terminated"
    )
    report = chain_for("ec2_test_extract", dr.run_id)
    assert [e["event"] for e in report.entries] == ["provision", "work", "teardown"]
    provision_cost = report.entries[0]["cost"]
    assert provision_cost["usd_per_hour"] == 0.504
    lifetime = report.entries[2]["cost"]
    assert lifetime["basis"] == "lifetime"
    assert lifetime["billed_seconds"] >= 60  # EC2's per-second billing has a 60 s minimum
    assert lifetime["usd"] == pytest.approx(lifetime["billed_seconds"] / 3600 * 0.504, abs=1e-6)
    # the command really ran on the "host", with secrets fetched there
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert "rows=42" in output
    assert f"pw={len(SECRET_VALUE)} tok={len(PARAM_VALUE)}" in output
    assert "hana=2.19.16" in output
    haystacks = {
        "xcom": json.dumps([list(v) for v in xcoms("ec2_test_extract", dr.run_id)], default=str),
        "task output": output,
        "SendCommand scripts": "\n".join(env.agent.scripts),
    }
    ec2 = env.client("ec2")
    raw = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"].get("Value", "")
    import base64

    haystacks["user-data"] = base64.b64decode(raw).decode()
    for root in (AIRFLOW_HOME / "logs", EVIDENCE):
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                haystacks[str(path)] = path.read_text(errors="replace")
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(RenderedTaskInstanceFields.run_id == dr.run_id)
        ).all()
        haystacks["rendered fields"] = json.dumps([r.rendered_fields for r in rendered], default=str)
    for where, text in haystacks.items():
        assert SECRET_VALUE not in text, f"secret value leaked into {where}"
        assert PARAM_VALUE not in text, f"parameter value leaked into {where}"


def test_work_failure_fails_the_task_and_still_returns_the_host_to_the_pool(env: Ec2Env) -> None:
    dag = get_dag(env, "ec2_test_fail")
    dr = dag.test()
    states = ti_states(dr)
    assert states["host.extract"] == "failed"
    assert states["host.provision"] == "success"
    assert states["host.teardown"] == "success"
    got = values("ec2_test_fail", dr.run_id)
    assert got[("host.extract", "runner_facts")]["exit_code"] == 4
    iid = got[("host.provision", "runner_handle")]["resource_id"]
    inst = env.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert inst["State"]["Name"] == "stopped"
    assert tags["runner-pool-state"] == "idle"
    assert "runner-lineage" not in tags
    report = chain_for("ec2_test_fail", dr.run_id)
    assert [(e["event"], e["outcome"]) for e in report.entries] == [
        ("provision", "success"),
        ("work", "failed"),
        ("teardown", "success"),
    ]
    # the next run that asks for the same pool reuses the stopped host: a warm hit
    again = get_dag(env, "ec2_test_warm")
    dr2 = again.test()
    assert str(dr2.state) == "success", ti_states(dr2)
    facts = values("ec2_test_warm", dr2.run_id)[("host.provision", "runner_facts")]
    assert facts["acquired"] == "warm"
    assert facts["instance_id"] == iid


def test_command_timeout_cancels_the_remote_command(env: Ec2Env) -> None:
    dag = get_dag(env, "ec2_test_timeout")
    dr = dag.test()
    states = ti_states(dr)
    assert states["host.extract"] == "failed"
    assert states["host.teardown"] == "success"
    facts = values("ec2_test_timeout", dr.run_id)[("host.extract", "runner_facts")]
    assert facts["timed_out"] is True
    assert facts["ssm_status"] == "Cancelled"


def test_bad_spec_is_a_parse_time_error_and_launches_nothing(env: Ec2Env) -> None:
    from airflow_provider_runners.operators.provision import ProvisionRunnerOperator

    for spec, match in (
        ({**SPEC, "profile": "Custom"}, "spec.approval_ref"),
        ({**SPEC, "image": "hardened-base@2025.1"}, "is not an approved image"),
        ({**SPEC, "profile": "Huge"}, "spec.profile: 'Huge' is not defined"),
    ):
        with pytest.raises(RunnerSpecError, match=match):
            ProvisionRunnerOperator(
                task_id="p", spec=spec, conn_id=RUNNER_CONN_ID, catalog_path=env.catalog_path
            )
    assert env.server.counts()["ec2:RunInstances"] == 0


def test_provision_crash_then_retry_leaves_one_instance_and_teardown_twice_is_ok(env: Ec2Env) -> None:
    dr = get_dag(env, "ec2_test_crash_retry").test()
    states = ti_states(dr)
    assert str(dr.state) == "success", states
    got = values("ec2_test_crash_retry", dr.run_id)
    assert got[("provision", "runner_facts")]["acquisition"] == "adopted"  # try 2 adopted try 1's host
    iid = got[("provision", "return_value")]["resource_id"]
    everything = env.managed(("pending", "running", "stopping", "stopped", "shutting-down", "terminated"))
    assert [i["InstanceId"] for i in everything] == [iid]  # one instance for two tries
    assert env.server.counts()["ec2:RunInstances"] == 1
    assert got[("teardown", "return_value")][0]["existed"] is True
    second = got[("teardown_again", "return_value")][0]
    assert second["existed"] is False
    assert "already gone" in second["message"]


def test_over_budget_launches_nothing_on_ec2(
    env: Ec2Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live finance host ($0.504/h) + another Large ($0.504/h) > the $0.80/h tenant budget:
    the provision fails before RunInstances, and the evidence records the refusal."""
    import yaml

    from airflow_provider_runners.exceptions import BudgetExceededError

    catalog = yaml.safe_load(Path(env.catalog_path).read_text())
    catalog["environments"]["aws"]["budgets"] = {"tenant": {"finance": 0.80}}
    budget_catalog = tmp_path / "budget-catalog.yaml"
    budget_catalog.write_text(yaml.safe_dump(catalog, sort_keys=False))
    monkeypatch.setenv("RUNNERS_EC2_TEST_CATALOG", str(budget_catalog))
    monkeypatch.setenv("AIRFLOW__RUNNERS__REGISTRY", f"sqlite:///{tmp_path / 'registry.sqlite'}")
    backend = get_backend(RUNNER_CONN_ID)
    spec = RunnerSpec.parse(SPEC)
    lineage = Lineage("other_dag", "run-1", "host.provision")
    labels = {**lineage.labels(), "tenant": "finance", "pipeline": "other", "profile": "large"}
    other = backend.create(
        ProvisionRequest(
            resolve_spec(spec, "ec2", catalog_path=str(budget_catalog)),
            lineage,
            lineage.attempt_token(1),
            RUNNER_CONN_ID,
            labels,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    try:
        assert env.server.counts()["ec2:RunInstances"] == 1
        dag = get_dag(env, "ec2_test_extract")
        dr = dag.test()
        states = ti_states(dr)
        assert states["host.provision"] == "failed", states
        assert env.server.counts()["ec2:RunInstances"] == 1  # nothing else was launched
        assert [i["InstanceId"] for i in env.managed(("pending", "running"))] == [other.resource_id]
        report = chain_for("ec2_test_extract", dr.run_id)
        provision = next(e for e in report.entries if e["event"] == "provision")
        assert provision["error"]["type"] == BudgetExceededError.__name__
        assert "$0.8000/h" in provision["error"]["message"]
        assert other.resource_id in provision["error"]["message"]
        assert provision["cost"]["usd"] == 0.0
    finally:
        backend.teardown(other)
