"""The ``ec2`` backend against moto in server mode (127.0.0.1, random port) with real boto3.

The SSM agent is the stand-in in tests/fakes/aws.py (moto 5.2 has none): commands run in a local
bash, agent registration follows moto's instance state. Everything else is moto's EC2, DynamoDB,
IAM, Secrets Manager, SSM Parameter Store and S3 over HTTP.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runners.backends.ec2 import backend as ec2_module
from airflow_provider_runners.backends.ec2.backend import Ec2Backend
from airflow_provider_runners.backends.ec2.pool import ClaimTable
from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core.backend import CommandRequest, ProvisionRequest, RunnerState
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.core.lineage import Lineage
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import RunnerSpecError
from tests.fakes.ec2_env import PARAM_VALUE, RUNNER_CONN_ID, SECRET_VALUE, Ec2Env, start_env, stop_env

SPEC: dict[str, Any] = {
    "runner_class": "dedicated_host",
    "profile": "Large",
    "image": "hardened-base@2026.11",
    "tags": {"tenant": "finance", "pipeline": "erp-extract"},
    "ttl": "90m",
    "driver_bundles": ["hana-jdbc@2.19.16"],
}
POOL_SPEC = {**SPEC, "options": {"teardown": "pool"}}
RUN_TAGS = {"managed-by", "runner-lineage", "tenant", "pipeline", "profile", "expires-at"}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Env]:
    env = start_env(tmp_path_factory.mktemp("ec2"))
    yield env
    stop_env(env)


@pytest.fixture
def env(aws: Ec2Env, monkeypatch: pytest.MonkeyPatch) -> Ec2Env:
    aws.server.reset()
    aws.agent.never_online.clear()
    aws.agent.online_after_s = 0.0
    aws.provision_account()
    for key, value in aws.connections().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(Ec2Backend, "teardown_poll_s", 0.05)
    monkeypatch.setattr(Ec2Backend, "command_poll_s", 0.1)
    return aws


def backend() -> Ec2Backend:
    b = get_backend(RUNNER_CONN_ID)
    assert isinstance(b, Ec2Backend)
    return b


def request(
    env: Ec2Env, spec: dict[str, Any] = SPEC, dag: str = "erp", try_number: int = 1
) -> ProvisionRequest:
    parsed = RunnerSpec.parse(spec)
    lineage = Lineage(dag, "run-1", "host.provision")
    labels = {"tenant": parsed.tags.tenant, "pipeline": parsed.tags.pipeline or dag}
    return ProvisionRequest.build(
        resolve_spec(parsed, backend="ec2", catalog_path=env.catalog_path),
        lineage,
        lineage.attempt_token(try_number),
        RUNNER_CONN_ID,
        labels,
    )


def wait_ready(b: Ec2Backend, handle: RunnerHandle, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (status := b.status(handle)).state is not RunnerState.READY:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def instance(env: Ec2Env, iid: str) -> dict[str, Any]:
    found: dict[str, Any] = env.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0][
        "Instances"
    ][0]
    return found


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


# -- cold start -------------------------------------------------------------------------------
def test_cold_start_launches_a_tagged_host_with_its_backstop(env: Ec2Env) -> None:
    b, req = backend(), request(env)
    handle = b.create(req)
    inst = instance(env, handle.resource_id)
    tags = tags_of(inst)
    assert set(tags) >= RUN_TAGS
    assert tags["runner-lineage"] == req.lineage.key
    assert tags["tenant"] == "finance"
    assert tags["pipeline"] == "erp-extract"
    assert tags["profile"] == "large"
    assert abs(int(tags["expires-at"]) - (time.time() + 90 * 60)) < 60
    assert tags["runner-attempt"] == req.attempt_token
    assert "runner-pool" not in tags
    assert inst["InstanceType"] == "r5.2xlarge"
    assert inst["ImageId"] == env.ids["ami"]
    assert inst["SubnetId"] == env.ids["private"]
    assert not inst.get("PublicIpAddress")
    assert inst["IamInstanceProfile"]["Arn"].endswith("/runner-host")
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    ec2 = env.client("ec2")
    behaviour = ec2.describe_instance_attribute(
        InstanceId=handle.resource_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    raw = ec2.describe_instance_attribute(InstanceId=handle.resource_id, Attribute="userData")["UserData"][
        "Value"
    ]
    user_data = base64.b64decode(raw).decode()
    assert "shutdown -h +$M" in user_data
    assert "M=90;" in user_data
    assert "expires-at" in user_data
    assert SECRET_VALUE not in user_data
    assert "secret" not in user_data.lower().replace("nothing secret", "")
    volumes = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [handle.resource_id]}]
    )["Volumes"]
    assert volumes
    assert all(set(tags_of(v)) >= RUN_TAGS for v in volumes)
    assert any(v["Size"] == 50 and v["VolumeType"] == "gp3" and v["Encrypted"] for v in volumes)
    assert handle.details["acquired"] == "cold"
    assert handle.details["image_digest"].startswith("sha256:9c9c")
    calls = env.server.counts()
    assert calls["ec2:RunInstances"] == 1
    assert calls["ec2:DescribeImages"] == 1
    wait_ready(b, handle)
    facts = b.describe(handle)
    assert facts["instance_type"] == "r5.2xlarge"
    assert facts["availability_zone"].startswith("us-east-1")
    assert facts["ami_id"] == env.ids["ami"]
    assert facts["image_digest"] == handle.details["image_digest"]
    assert facts["driver_bundles"] == {
        "hana-jdbc@2.19.16": json.loads(str(handle.details["driver_bundles"]))["hana-jdbc@2.19.16"]["sha256"]
    }
    assert facts["network_profile"] == "private"
    assert facts["iam_instance_profile"].endswith("/runner-host")
    assert facts["acquired"] == "cold"
    assert facts["market"] == "on-demand"
    result = b.teardown(handle)
    assert result.existed
    assert result.details["mode"] == "terminate"
    assert result.details["log_flush"]["flushed"]
    assert instance(env, handle.resource_id)["State"]["Name"] == "terminated"


def test_public_egress_only_where_the_network_profile_allows(env: Ec2Env) -> None:
    b = backend()
    handle = b.create(request(env, {**SPEC, "network_profile": "public"}))
    inst = instance(env, handle.resource_id)
    assert inst["SubnetId"] == env.ids["public"]
    assert handle.details["public_egress"] is True
    private = b.create(request(env, dag="other"))
    assert private.details["public_egress"] is False


def test_spot_is_requested_and_priced_from_the_catalog(env: Ec2Env) -> None:
    req = request(env, {**SPEC, "spot": True})
    assert req.resolved.hourly_rate == 0.151  # the catalog's spot price, not on-demand 0.504
    handle = backend().create(req)
    assert instance(env, handle.resource_id).get("InstanceLifecycle") == "spot"
    with pytest.raises(RunnerSpecError, match="spot"):
        backend().create(request(env, {**POOL_SPEC, "spot": True}, dag="pool-spot"))


# -- idempotency --------------------------------------------------------------------------------
def test_provision_crash_then_retry_adopts_the_one_instance(env: Ec2Env) -> None:
    b = backend()
    first, how = acquire(b, request(env, try_number=1))  # try 1 dies right after this
    assert how == "created"
    second, how = acquire(backend(), request(env, try_number=2))
    assert how == "adopted"
    assert second.resource_id == first.resource_id
    # a replay of the very same try (same ClientToken): moto ignores the token, find() does not
    third, how = acquire(backend(), request(env, try_number=1))
    assert how == "adopted"
    assert third.resource_id == first.resource_id
    lineage = request(env).lineage.key
    live = [i for i in env.managed() if tags_of(i).get("runner-lineage") == lineage]
    assert [i["InstanceId"] for i in live] == [first.resource_id]
    assert env.server.counts()["ec2:RunInstances"] == 1


def test_a_broken_host_is_replaced_on_retry(env: Ec2Env) -> None:
    b = backend()
    first, _ = acquire(b, request(env, try_number=1))
    env.client("ec2").stop_instances(InstanceIds=[first.resource_id])  # e.g. stopped by hand
    assert b.status(first).state is RunnerState.FAILED
    second, how = acquire(backend(), request(env, try_number=2))
    assert how == "replaced"
    assert second.resource_id != first.resource_id
    assert instance(env, first.resource_id)["State"]["Name"] == "terminated"


# -- warm pool ----------------------------------------------------------------------------------
def test_warm_hit_reuses_a_pooled_host_of_the_same_profile_and_image(env: Ec2Env) -> None:
    b = backend()
    cold = b.create(request(env, POOL_SPEC, dag="a"))
    assert cold.details["acquired"] == "cold"
    wait_ready(b, cold)
    back = b.teardown(cold)
    assert back.existed
    assert back.details["mode"] == "pool"
    pooled = instance(env, cold.resource_id)
    tags = tags_of(pooled)
    assert pooled["State"]["Name"] == "stopped"
    assert tags["runner-pool-state"] == "idle"
    assert "runner-lineage" not in tags
    assert "tenant" not in tags
    assert "runner-attempt" not in tags
    assert int(tags["expires-at"]) > time.time() + 3600  # the pool's idle ttl, read by the reaper
    claim = ClaimTable(env.client("dynamodb"), "runner-claims").get(cold.resource_id)
    assert claim is not None
    assert claim["claim_state"] == "idle"
    assert b.find(request(env, POOL_SPEC, dag="a").lineage.key) is None  # no longer that run's
    before = time.monotonic()
    req = request(env, POOL_SPEC, dag="b")
    warm = backend().create(req)
    assert warm.resource_id == cold.resource_id
    assert warm.details["acquired"] == "warm"
    calls = env.server.counts(since=before)
    assert calls["ec2:RunInstances"] == 0
    assert calls["ec2:StartInstances"] == 1
    assert calls["dynamodb:UpdateItem"] == 1
    tags = tags_of(instance(env, warm.resource_id))
    assert tags["runner-lineage"] == req.lineage.key
    assert tags["runner-pool-state"] == "in-use"
    wait_ready(b, warm)
    assert b.teardown(warm).existed


def test_warm_pool_skips_other_images(env: Ec2Env) -> None:
    b = backend()
    h = b.create(request(env, {**POOL_SPEC, "driver_bundles": []}, dag="a"))
    b.teardown(h)
    other = b.create(request(env, {**POOL_SPEC, "profile": "XLarge"}, dag="b"))
    assert other.resource_id != h.resource_id
    assert other.details["acquired"] == "cold"


def test_two_concurrent_claims_have_one_winner_and_the_loser_cold_starts(env: Ec2Env) -> None:
    b = backend()
    pooled = b.create(request(env, POOL_SPEC, dag="seed"))
    b.teardown(pooled)
    results: dict[str, RunnerHandle] = {}
    barrier = threading.Barrier(2)

    def provision(dag: str) -> None:
        mine = backend()
        req = request(env, POOL_SPEC, dag=dag)
        barrier.wait()
        results[dag] = mine.create(req)

    threads = [threading.Thread(target=provision, args=(dag,)) for dag in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acquired = sorted(h.details["acquired"] for h in results.values())
    assert acquired == ["cold", "warm"]
    winner = next(h for h in results.values() if h.details["acquired"] == "warm")
    loser = next(h for h in results.values() if h.details["acquired"] == "cold")
    assert winner.resource_id == pooled.resource_id != loser.resource_id
    claim = ClaimTable(env.client("dynamodb"), "runner-claims").get(pooled.resource_id)
    assert claim is not None
    assert claim["claimed_by"] == winner.attempt_token


def test_claim_table_is_race_free(env: Ec2Env) -> None:
    backend().claims()  # creates the table
    table = ClaimTable(env.client("dynamodb"), "runner-claims")
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def claim(n: int) -> None:
        mine = ClaimTable(env.client("dynamodb"), "runner-claims")
        barrier.wait()
        if mine.claim("i-0123456789abcdef0", "rp1", f"tok-{n}", f"rl{n}", 600, int(time.time()) + 3600):
            wins.append(f"tok-{n}")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert table.claim("i-0123456789abcdef0", "rp1", wins[0], "rl", 600, 0)  # same try: a replay wins
    assert not table.release("i-0123456789abcdef0", "rp1", "tok-other", 0)  # only the holder releases
    assert table.release("i-0123456789abcdef0", "rp1", wins[0], 0)
    # a claim older than the lease whose host was never re-tagged is stale and can be taken over
    assert table.claim("i-0123456789abcdef0", "rp1", "tok-a", "rl", 600, 0)
    assert not table.claim("i-0123456789abcdef0", "rp1", "tok-b", "rl", 600, 0)
    assert table.claim("i-0123456789abcdef0", "rp1", "tok-b", "rl", -5, 0)


# -- teardown -----------------------------------------------------------------------------------
def test_teardown_twice_is_ok_and_never_touches_a_host_another_run_claimed(env: Ec2Env) -> None:
    b = backend()
    h = b.create(request(env))
    assert b.teardown(h).existed
    again = b.teardown(h)
    assert not again.existed
    assert "already gone" in again.message
    pooled = b.create(request(env, POOL_SPEC, dag="p1"))
    assert b.teardown(pooled).existed
    taken = backend().create(request(env, POOL_SPEC, dag="p2"))
    assert taken.resource_id == pooled.resource_id
    late = b.teardown(pooled)  # the first run's teardown, retried late
    assert not late.existed
    assert "pool" in late.message
    assert instance(env, pooled.resource_id)["State"]["Name"] in ("pending", "running")
    gone = RunnerHandle(**{**h.model_dump(), "resource_id": "i-0fffffffffffffff0"})
    assert not b.teardown(gone).existed


# -- readiness ----------------------------------------------------------------------------------
def test_ready_means_running_checks_ok_and_ssm_online(env: Ec2Env) -> None:
    b = backend()
    h = b.create(request(env))
    env.agent.never_online.add(h.resource_id)
    status = b.status(h)
    assert status.state is RunnerState.PENDING
    assert "SSM agent" in status.message
    env.agent.never_online.clear()
    wait_ready(b, h)
    ready = b.status(h)
    assert ready.endpoints["private_ip"].startswith("10.20.1.")
    env.client("ec2").terminate_instances(InstanceIds=[h.resource_id])
    assert b.status(h).state is RunnerState.GONE


def test_status_many_batches_per_region(env: Ec2Env) -> None:
    """Above 100 waiters a poll reads the managed hosts by tag, 1000 per call (issue 18): the
    calls per poll follow the managed hosts / 1000, not the waiters / 100."""
    from airflow_provider_runners.core.lineage import MANAGED_BY

    ec2 = env.client("ec2")
    reservation = ec2.run_instances(
        ImageId=env.ids["ami"],
        MinCount=150,
        MaxCount=150,
        InstanceType="t3.micro",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "managed-by", "Value": MANAGED_BY}]}
        ],
    )
    ids = [i["InstanceId"] for i in reservation["Instances"]]
    template = backend().create(request(env))
    handles = [RunnerHandle(**{**template.model_dump(), "resource_id": iid}) for iid in ids]
    before = time.monotonic()
    statuses = backend().status_many(handles)
    calls = env.server.counts(since=before)
    assert calls["ec2:DescribeInstances"] == 1  # 151 managed hosts: one page of up to 1000
    assert calls["ec2:DescribeInstanceStatus"] == 1  # the region's running hosts, one page
    assert calls["ssm:DescribeInstanceInformation"] == 3  # 150 healthy hosts, 50 per call
    assert sum(s.state is RunnerState.READY for s in statuses.values()) == 150

    # an id the tag query did not return (gone, or its tags removed) is then looked up by id
    handles.append(RunnerHandle(**{**template.model_dump(), "resource_id": "i-0eeeeeeeeeeeeeee0"}))
    before = time.monotonic()
    statuses = backend().status_many(handles)
    assert env.server.counts(since=before)["ec2:DescribeInstances"] == 2
    assert statuses["i-0eeeeeeeeeeeeeee0"].state is RunnerState.GONE
    assert sum(s.state is RunnerState.READY for s in statuses.values()) == 150


def test_status_many_of_few_hosts_asks_by_id(env: Ec2Env) -> None:
    b = backend()
    handles = [b.create(request(env, dag=dag)) for dag in ("erp", "crm")]
    before = time.monotonic()
    statuses = b.status_many(handles)
    calls = env.server.counts(since=before)
    assert calls["ec2:DescribeInstances"] == 1
    assert calls["ec2:DescribeInstanceStatus"] <= 1
    assert set(statuses) == {h.resource_id for h in handles}


def test_throttling_is_retried_with_backoff(env: Ec2Env) -> None:
    b = backend()
    h = b.create(request(env))
    env.server.throttle["DescribeInstances"] = 3
    before = time.monotonic()
    status = b.status(h)
    assert status.state in (RunnerState.PENDING, RunnerState.READY)
    assert env.server.throttled["DescribeInstances"] == 3
    assert env.server.counts(since=before)["ec2:DescribeInstances"] == 4  # 3 throttled + 1 answered


def test_throttling_beyond_botocore_retries_backs_off_in_the_poller_and_the_wait_ends(
    env: Ec2Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from airflow_provider_runners.triggers.poller import SharedStatusPoller
    from airflow_provider_runners.triggers.readiness import RunnerReadyTrigger

    for key, value in env.connections(max_attempts=2).items():
        monkeypatch.setenv(key, value)
    h = backend().create(request(env))
    SharedStatusPoller._pollers.clear()
    env.server.throttle["DescribeInstances"] = 5  # > 2 attempts: status_many itself fails twice
    deadline = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    trigger = RunnerReadyTrigger(RUNNER_CONN_ID, h.to_xcom(), deadline, poll_interval=0.05)

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    payload = asyncio.run(first_event())
    assert payload["status"] == "ready", payload
    assert env.server.throttled["DescribeInstances"] == 5
    assert env.server.counts()["ec2:DescribeInstances"] >= 6  # 5 throttled, then answered


# -- governance: nothing launched -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({**SPEC, "profile": "Huge"}, r"spec.profile: 'Huge' is not defined.*allowed: \['Custom', 'Large'"),
        (
            {**SPEC, "image": "hardened-base@2025.1"},
            r"spec.image: 'hardened-base@2025.1' is not an approved image",
        ),
        ({**SPEC, "profile": "Custom"}, r"spec.approval_ref: profile 'Custom' requires"),
        ({**SPEC, "image": "hardened-base@2027.1"}, r"no approved AMI for region 'us-east-1'"),
        ({**SPEC, "image": "hardened-base@2026.12"}, r"tagged runner-image-digest=sha256:0a0a.*refusing"),
        ({**SPEC, "options": {"teardown": "keep"}}, r"spec.options.teardown: 'keep' is not allowed"),
        ({**SPEC, "options": {"ami": "ami-1"}}, r"spec.options: \['ami'\] not supported by ec2"),
    ],
)
def test_bad_specs_are_clear_errors_and_launch_nothing(env: Ec2Env, spec: dict[str, Any], match: str) -> None:
    with pytest.raises(RunnerSpecError, match=match):
        backend().create(request(env, spec))
    assert env.server.counts()["ec2:RunInstances"] == 0
    assert env.managed() == []


def test_parse_time_validation(env: Ec2Env) -> None:
    ok = {**SPEC, "profile": "Custom", "approval_ref": "GOV-1234"}
    assert (
        ec2_module.validate_spec(ok, region="us-east-1", catalog_path=env.catalog_path).approval_ref
        == "GOV-1234"
    )
    with pytest.raises(RunnerSpecError, match="no approved AMI for region 'eu-central-1'"):
        ec2_module.validate_spec(SPEC, region="eu-central-1", catalog_path=env.catalog_path)
    with pytest.raises(RunnerSpecError, match="has no machine_type"):
        ec2_module.validate_spec({**SPEC, "environment": "local", "image": None}, catalog_path=None)


def test_missing_network_or_instance_profile_is_a_clear_error(
    env: Ec2Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.connections(network_profiles={}, instance_profile=None).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RunnerSpecError, match="network_profile: 'private' has no subnet_id"):
        backend().create(request(env))
    assert env.server.counts()["ec2:RunInstances"] == 0


# -- commands -----------------------------------------------------------------------------------
def _run(
    b: Ec2Backend,
    h: RunnerHandle,
    command: str,
    timeout: float = 30,
    cancel: threading.Event | None = None,
    **kw: Any,
) -> tuple[Any, list[str]]:
    lines: list[str] = []
    req = CommandRequest(command=command, name=f"{h.attempt_token}-cmd", timeout=timeout, **kw)
    return b.run_command(h, req, lines.append, cancel or threading.Event()), lines


def test_run_command_streams_output_and_maps_the_exit_code(env: Ec2Env) -> None:
    b = backend()
    h = b.create(request(env))
    wait_ready(b, h)
    result, lines = _run(
        b,
        h,
        'echo "user=$ERP_USER"; echo "pw chars=${#DB_PASSWORD} token chars=${#API_TOKEN}"; '
        'ls "$RUNNER_DRIVERS_DIR/hana-jdbc/2.19.16"; echo oops >&2; exit 3',
        env={"ERP_USER": "etl"},
        secret_env={"DB_PASSWORD": "aws-sm:prod/erp#password", "API_TOKEN": "ssm:/etl/api-token"},
    )
    assert result.exit_code == 3
    assert not result.timed_out
    assert lines == [
        "user=etl",
        f"pw chars={len(SECRET_VALUE)} token chars={len(PARAM_VALUE)}",
        "ngdbc-2.19.16.jar",
        "oops",
    ]
    assert result.details["ssm_status"] == "Failed"
    script = env.agent.scripts[-1]
    assert "--secret-id prod/erp" in script
    assert "--name /etl/api-token" in script
    assert SECRET_VALUE not in script
    assert PARAM_VALUE not in script
    ok, lines = _run(b, h, "echo fine")
    assert ok.exit_code == 0
    assert lines == ["fine"]


def test_a_missing_secret_fails_the_command_without_running_it(env: Ec2Env) -> None:
    b = backend()
    h = b.create(request(env, {**SPEC, "driver_bundles": []}))
    result, lines = _run(b, h, "echo should-not-run", secret_env={"X": "aws-sm:does/not-exist"})
    assert result.exit_code == 97
    assert "should-not-run" not in lines
    assert lines[-1] == "runner: could not read the secret reference for X"  # after the CLI's own error


def test_timeout_and_cancel_stop_the_remote_command(env: Ec2Env) -> None:
    b = backend()
    h = b.create(request(env, {**SPEC, "driver_bundles": []}))
    started = time.monotonic()
    result, lines = _run(b, h, "echo started; sleep 30; echo never", timeout=1.0)
    assert result.timed_out
    assert result.exit_code is None
    assert time.monotonic() - started < 10
    # stopped before "echo never"; bash may report its killed child ("Terminated")
    assert lines[0] == "started", lines
    assert "never" not in lines, lines
    assert result.details["ssm_status"] == "Cancelled"
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result, _ = _run(b, h, "sleep 30", cancel=cancel)
    assert result.cancelled
    assert not result.timed_out
    assert env.agent.running() == 0


def test_list_managed_sees_live_hosts_only(env: Ec2Env) -> None:
    b = backend()
    live = b.create(request(env, dag="x"))
    dead = b.create(request(env, dag="y"))
    b.teardown(dead)
    assert [h.resource_id for h in b.list_managed()] == [live.resource_id]


def test_warm_running_host_gets_its_timer_rearmed(env: Ec2Env, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.connections(pool_return="running").items():
        monkeypatch.setenv(key, value)
    b = backend()
    h = b.create(request(env, POOL_SPEC, dag="a"))
    wait_ready(b, h)
    assert b.teardown(h).details["mode"] == "pool"
    assert instance(env, h.resource_id)["State"]["Name"] == "running"
    warm = backend().create(request(env, {**POOL_SPEC, "ttl": "30m"}, dag="b"))
    assert warm.resource_id == h.resource_id
    deadline = time.monotonic() + 5
    while not any(call.startswith(("-h +29", "-h +30")) for call in env.agent.shutdown_calls()):
        assert time.monotonic() < deadline, env.agent.shutdown_calls()
        time.sleep(0.05)
    assert "-h +120" in env.agent.shutdown_calls()  # the pool's idle ttl while it waited


def test_secret_ref_kinds_are_aws_only() -> None:
    assert Ec2Backend.secret_ref_kinds == frozenset({"aws-sm", "ssm"})
    assert Ec2Backend.supports_commands


def test_user_data_holds_only_the_timer() -> None:
    from datetime import timedelta

    text = ec2_module.user_data(timedelta(hours=2))
    assert text.startswith("#cloud-config")
    assert "M=120;" in text
    assert "shutdown -h +$M" in text
    assert Path(ec2_module.__file__).read_text().count("\n") < 600
