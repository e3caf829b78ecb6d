"""``ec2``: a dedicated EC2 host per runner, from a warm pool or a cold start (conn type ``runners_ec2``).

AWS calls go through the Amazon provider's ``AwsBaseHook`` (the Connection named by
``aws_conn_id``: keys, role, ``endpoint_url``), boto3 underneath, in botocore's *standard*
retry mode (RequestLimitExceeded and 5xx retried with capped exponential backoff and jitter).

What a spec resolves to (profile → instance type and EBS, network profile → subnet and
security groups, image → approved AMI + digest, driver bundles, IAM instance profile) is in
:mod:`~airflow_provider_runners.backends.ec2.plan`.

**Resources created**

=========================  =========================================================================
what                       where / how to find it
=========================  =========================================================================
an EC2 instance            tags managed-by, runner-lineage, tenant, pipeline, profile, expires-at,
                           runner-attempt, runner-env, runner-image, runner-teardown, and (pool)
                           runner-pool, runner-pool-state; ``InstanceInitiatedShutdownBehavior=
                           terminate``; IMDSv2 with instance tags; user-data = shutdown timer + idle watcher
its EBS root volume        same tags (TagSpecifications), ``DeleteOnTermination``
a claim item (pool only)   DynamoDB table ``claim_table`` (see ``_ec2_pool``), one item per host
SSM commands               ``AWS-RunShellScript`` invocations, Comment = the command name
=========================  =========================================================================

**Warm pool** (spec ``options.teardown: pool``): create first claims a stopped or idle
running host of the same pool key (environment, profile, instance type, image, AMI, network
profile, instance profile) with a DynamoDB conditional write, re-tags it and starts it; a
miss cold-starts with ``ClientToken`` = the attempt token. Teardown stops it, re-tags it
``idle`` (lineage removed, expires-at = now + ``pool_idle_ttl``) and releases the claim.
``teardown: terminate`` (default) terminates. Spot hosts always terminate.

**Backstop.** ``InstanceInitiatedShutdownBehavior=terminate`` plus user-data that, on every
boot, schedules ``shutdown -h`` at the ``expires-at`` tag (read from IMDS; the launch ttl if
that fails). A warm *running* host gets its timer re-armed by an SSM command when claimed.

**Connection extras**: ``region_name`` (required), ``aws_conn_id`` (``aws_default``),
``network_profiles`` ({name: {subnet_id, security_group_ids}}), ``instance_profile``,
``claim_table``, ``create_claim_table`` (bool), ``pool_idle_ttl`` ("24h"), ``pool_return``
(``stop`` | ``running``), ``claim_lease_s`` (600), ``max_attempts`` (botocore retries, 8),
``flush_logs_command`` ("sync"), ``drivers_dir`` ("/opt/runner/drivers").

**Manual cleanup** (see docs/ec2.md)::

    aws ec2 describe-instances --filters Name=tag:managed-by,Values=airflow-provider-runners \\
        --query 'Reservations[].Instances[].[InstanceId,State.Name,Tags]'
    aws ec2 terminate-instances --instance-ids i-...
    aws dynamodb delete-item --table-name airflow-runners-ec2-claims --key '{"instance_id":{"S":"i-..."}}'
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from airflow_provider_runners.backends.ec2 import (
    describe as _ec2_describe,
    idle as _ec2_idle,
    pool as _ec2_pool,
    probe as _ec2_probe,
    ssm as _ec2_ssm,
)
from airflow_provider_runners.backends.ec2.errors import EC2_ERRORS, error_code as _code
from airflow_provider_runners.backends.ec2.options import CONN_FIELDS, PLACEHOLDERS, Ec2Options
from airflow_provider_runners.backends.ec2.plan import LaunchPlan, plan_for, user_data, validate_spec
from airflow_provider_runners.core.backend import (
    Backend,
    CommandRequest,
    CommandResult,
    ConnectionConfig,
    ConnField,
    OutputSink,
    ProvisionRequest,
    RunnerState,
    RunnerStatus,
    TeardownResult,
)
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY
from airflow_provider_runners.core.specs import parse_duration
from airflow_provider_runners.exceptions import (
    ConnectionConfigError,
    MissingExtraError,
    ProvisionError,
    RunnerSpecError,
)

if TYPE_CHECKING:
    import threading


__all__ = ["Ec2Backend", "LaunchPlan", "plan_for", "user_data", "validate_spec"]
log = logging.getLogger(__name__)
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
#: Tags a pooled host loses when it goes back to the pool (it belongs to no run any more).
RUN_TAGS = ("runner-lineage", "dag-id", "task-id", "tenant", "pipeline", "runner-attempt", "cost-center")


def _tags(instance: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


class Ec2Backend(_ec2_idle.EndsIdleHosts, _ec2_probe.Ec2Probe, Backend):
    """Dedicated EC2 hosts. Resources, extras and cleanup: see the module docstring and docs/ec2.md."""

    name = "ec2"
    conn_type = "runners_ec2"
    hook_name = "Runners: EC2 dedicated host"
    placeholders: ClassVar[Mapping[str, str]] = PLACEHOLDERS
    conn_fields: ClassVar[Mapping[str, ConnField]] = CONN_FIELDS
    runner_classes: ClassVar[frozenset[str]] = frozenset({"dedicated_host"})
    options_model: ClassVar[type[BaseModel] | None] = Ec2Options
    error_map = EC2_ERRORS  # errors.py: throttling/5xx transient, *.NotFound gone, auth/4xx permanent
    poll_interval = 15.0
    secret_ref_kinds: ClassVar[frozenset[str]] = frozenset({"aws-sm", "ssm"})
    teardown_poll_s: ClassVar[float] = 5.0
    teardown_timeout_s: ClassVar[float] = 15 * 60.0
    command_poll_s: ClassVar[float] = 2.0

    def __init__(self, config: ConnectionConfig) -> None:
        super().__init__(config)
        extra = config.extra
        self.region: str = extra.get("region_name") or extra.get("region") or ""
        if not self.region:
            raise ConnectionConfigError(
                f"Connection {config.conn_id!r} extra region_name: required (e.g. 'eu-west-1')"
            )
        self.aws_conn_id: str = extra.get("aws_conn_id") or "aws_default"
        self.claim_table_name: str = extra.get("claim_table") or _ec2_pool.DEFAULT_TABLE
        self.create_claim_table = bool(extra.get("create_claim_table", False))
        idle = parse_duration(extra.get("pool_idle_ttl", "24h"))
        self.pool_idle_ttl: timedelta = (
            idle if isinstance(idle, timedelta) else timedelta(seconds=float(idle))
        )
        self.pool_return: str = extra.get("pool_return", "stop")
        if self.pool_return not in ("stop", "running"):
            raise ConnectionConfigError(
                f"Connection {config.conn_id!r} extra pool_return: {self.pool_return!r}; allowed: ['running', 'stop']"
            )
        self.claim_lease_s = float(extra.get("claim_lease_s", 600))
        self.max_attempts = int(extra.get("max_attempts", 8))
        self.flush_logs_command: str = extra.get("flush_logs_command", "sync")
        self.drivers_dir: str = extra.get("drivers_dir", "/opt/runner/drivers")
        self._clients: dict[str, Any] = {}
        self._claims: _ec2_pool.ClaimTable | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client from the Amazon provider's AwsBaseHook, cached per backend instance."""
        if service not in self._clients:
            try:
                from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
                from botocore.config import Config
            except ImportError as exc:
                raise MissingExtraError("apache-airflow-providers-amazon", "amazon", self.name) from exc
            config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts})
            hook = AwsBaseHook(
                aws_conn_id=self.aws_conn_id, client_type=service, region_name=self.region, config=config
            )
            self._clients[service] = hook.get_client_type(region_name=self.region)
        return self._clients[service]

    def claims(self) -> _ec2_pool.ClaimTable:
        if self._claims is None:
            self._claims = _ec2_pool.ClaimTable(self.client("dynamodb"), self.claim_table_name)
            if self.create_claim_table:
                self._claims.ensure()
        return self._claims

    def batch_key(self) -> str:
        return f"{self.name}:{self.aws_conn_id}:{self.region}"

    def _describe(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _ec2_describe.describe(self.client("ec2"), filters)

    def _instances(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Instances by id (backends/ec2/describe.py: by tag, 1000 per call, for many)."""
        return _ec2_describe.instances(self.client("ec2"), ids)

    # -- create --------------------------------------------------------------------------------
    def create(self, request: ProvisionRequest) -> RunnerHandle:
        plan = plan_for(request.resolved, self.region, self.config.extra)
        spec = request.resolved.spec
        now = datetime.now(UTC)
        expires_at = request.expires_at
        tags = {
            **request.resource_labels(),
            "runner-attempt": request.attempt_token,
            "runner-image": plan.image_ref,
            "runner-teardown": plan.teardown,
        }
        if plan.teardown == "pool":
            tags.update({"runner-pool": plan.pool_key, "runner-pool-state": "in-use"})
        instance, warm = None, False
        if plan.teardown == "pool":
            instance = self._claim_warm(request, plan, tags, expires_at)
            warm = instance is not None
        if instance is None:
            instance = self._launch(request, plan, tags, spec.ttl)
        handle = self._handle(
            instance, tags, now, expires_at, warm=warm, plan=plan, runner_class=spec.runner_class
        )
        return handle.evolve(pricing=request.pricing())

    def _check_ami(self, plan: LaunchPlan) -> dict[str, Any]:
        images = self.client("ec2").describe_images(ImageIds=[plan.ami_id]).get("Images", [])
        if not images or images[0].get("State") != "available":
            raise RunnerSpecError(
                f"spec.image: AMI {plan.ami_id} for {plan.image_ref!r} is not available in {self.region}"
            )
        tagged = _tags(images[0]).get("runner-image-digest")
        if tagged and tagged != plan.image_digest:
            raise RunnerSpecError(
                f"spec.image: AMI {plan.ami_id} is tagged runner-image-digest={tagged}, but the catalog pins "
                f"{plan.image_ref!r} to {plan.image_digest}; refusing to launch an unapproved image"
            )
        return images[0]

    def _launch(
        self, request: ProvisionRequest, plan: LaunchPlan, tags: dict[str, str], ttl: timedelta
    ) -> dict[str, Any]:
        image = self._check_ami(plan)
        tag_list = [
            {"Key": k, "Value": v} for k, v in {**tags, "Name": f"runner-{request.lineage.key}"}.items()
        ]
        kwargs: dict[str, Any] = {
            "ImageId": plan.ami_id,
            "InstanceType": plan.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": request.attempt_token,  # real EC2 dedups a replay; find() covers moto
            "NetworkInterfaces": [
                {
                    "DeviceIndex": 0,
                    "SubnetId": plan.subnet_id,
                    "Groups": list(plan.security_group_ids),
                    "AssociatePublicIpAddress": plan.public_egress,
                    "DeleteOnTermination": True,
                }
            ],
            "IamInstanceProfile": {"Arn": plan.instance_profile}
            if plan.instance_profile.startswith("arn:")
            else {"Name": plan.instance_profile},
            "BlockDeviceMappings": [
                {
                    "DeviceName": image.get("RootDeviceName") or "/dev/xvda",
                    "Ebs": {
                        "VolumeSize": plan.disk_gib,
                        "VolumeType": plan.volume_type,
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
            "UserData": user_data(ttl),
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        if request.resolved.spec.spot:
            kwargs["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        instance: dict[str, Any] = self.client("ec2").run_instances(**kwargs)["Instances"][0]
        log.info(
            "launched %s (%s, %s) for %s",
            instance["InstanceId"],
            plan.instance_type,
            plan.ami_id,
            request.lineage.key,
        )
        return instance

    def _claim_warm(
        self, request: ProvisionRequest, plan: LaunchPlan, tags: dict[str, str], expires_at: datetime
    ) -> dict[str, Any] | None:
        candidates = self._describe(
            [
                {"Name": "tag:managed-by", "Values": [MANAGED_BY]},
                {"Name": "tag:runner-pool", "Values": [plan.pool_key]},
                {"Name": "tag:runner-pool-state", "Values": ["idle"]},
                {"Name": "instance-state-name", "Values": ["running", "stopped"]},
            ]
        )
        random.shuffle(candidates)  # spread concurrent claimants over the pool
        candidates.sort(key=lambda i: i["State"]["Name"] != "running")  # idle running hosts first
        claims = self.claims()
        expires = int(expires_at.timestamp()) + 86_400
        for inst in candidates:
            iid = inst["InstanceId"]
            if not claims.claim(
                iid, plan.pool_key, request.attempt_token, request.lineage.key, self.claim_lease_s, expires
            ):
                continue
            log.info("warm pool: claimed %s (%s) for %s", iid, inst["State"]["Name"], request.lineage.key)
            ec2 = self.client("ec2")
            volumes = [m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m]
            ec2.create_tags(Resources=[iid, *volumes], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            if inst["State"]["Name"] == "stopped":
                try:
                    ec2.start_instances(InstanceIds=[iid])  # the boot timer reads the new expires-at tag
                except Exception as exc:  # noqa: BLE001 - e.g. InsufficientInstanceCapacity: try the next
                    log.warning("warm pool: %s did not start (%s); releasing it", iid, _code(exc) or exc)
                    ec2.create_tags(Resources=[iid], Tags=[{"Key": "runner-pool-state", "Value": "idle"}])
                    claims.release(iid, plan.pool_key, request.attempt_token, expires)
                    continue
                inst = {**inst, "State": {"Name": "pending"}}
            else:
                minutes = max(1, int((expires_at - datetime.now(UTC)).total_seconds() // 60))
                _ec2_ssm.send(
                    self.client("ssm"), iid, f"shutdown -h +{minutes}", "runner: re-arm the ttl timer", 60
                )
            return inst
        return None

    def _handle(
        self,
        inst: Mapping[str, Any],
        tags: Mapping[str, str],
        created: datetime,
        expires: datetime,
        warm: bool,
        plan: LaunchPlan | None = None,
        runner_class: str = "dedicated_host",
    ) -> RunnerHandle:
        details: dict[str, Any] = {
            "region": self.region,
            "instance_type": inst.get("InstanceType") or (plan.instance_type if plan else None),
            "ami_id": inst.get("ImageId") or (plan.ami_id if plan else None),
            "image": tags.get("runner-image"),
            "teardown_mode": tags.get("runner-teardown", "terminate"),
            "pool_key": tags.get("runner-pool"),
            "acquired": "warm" if warm else "cold",
            "launched_at": created.isoformat(),
        }
        if plan is not None:
            details.update(
                image_digest=plan.image_digest,
                network_profile=plan.network_profile,
                subnet_id=plan.subnet_id,
                public_egress=plan.public_egress,
                instance_profile=plan.instance_profile,
                ebs=f"{plan.disk_gib} GiB {plan.volume_type} encrypted",
                driver_bundles=json.dumps(plan.bundles, sort_keys=True),
            )
        return RunnerHandle(
            backend=self.name,
            runner_class=runner_class,
            resource_id=inst["InstanceId"],
            conn_id=self.conn_id,
            lineage_key=tags.get("runner-lineage", ""),
            attempt_token=tags.get("runner-attempt", ""),
            created_at=created,
            expires_at=expires,
            environment=tags.get("runner-env", "unknown"),
            profile=tags.get("profile", "unknown"),
            tags={k: v for k, v in tags.items() if not k.startswith("aws:")},
            details=details,
        )

    # -- find / status -------------------------------------------------------------------------
    def find(self, lineage_key: str) -> RunnerHandle | None:
        found = self._describe(
            [
                {"Name": "tag:managed-by", "Values": [MANAGED_BY]},
                {"Name": "tag:runner-lineage", "Values": [lineage_key]},
                {"Name": "instance-state-name", "Values": LIVE_STATES},
            ]
        )
        if not found:
            return None
        found.sort(key=lambda i: i["LaunchTime"])
        return self._from_instance(found[-1])

    def _from_instance(self, inst: Mapping[str, Any]) -> RunnerHandle:
        tags = _tags(inst)
        launched = inst["LaunchTime"]
        launched = launched if launched.tzinfo else launched.replace(tzinfo=UTC)
        expires = tags.get("expires-at")
        expires_at = datetime.fromtimestamp(int(expires), UTC) if expires else launched + timedelta(hours=2)
        return self._handle(inst, tags, launched, expires_at, warm=False)

    def status(self, handle: RunnerHandle) -> RunnerStatus:
        return self.status_many([handle])[handle.resource_id]

    def status_many(self, handles: Iterable[RunnerHandle]) -> dict[str, RunnerStatus]:
        """One DescribeInstances (+ DescribeInstanceStatus for running, + DescribeInstanceInformation
        for status-ok hosts) per poll up to 100 waiting hosts of this account/region; above that,
        ⌈managed hosts / 1000⌉ DescribeInstances and ⌈running hosts / 1000⌉ DescribeInstanceStatus."""
        ids = [h.resource_id for h in handles]
        if not ids:
            return {}
        instances = self._instances(ids)
        running = [i for i, inst in instances.items() if inst["State"]["Name"] == "running"]
        checks = _ec2_describe.status_checks(self.client("ec2"), running)
        healthy = [i for i in running if checks.get(i) == ("ok", "ok")]
        pings = _ec2_ssm.online(self.client("ssm"), healthy) if healthy else {}
        return {rid: self._status_of(instances.get(rid), checks.get(rid), pings.get(rid)) for rid in ids}

    def _status_of(
        self, inst: Mapping[str, Any] | None, checks: tuple[str, str] | None, ping: str | None
    ) -> RunnerStatus:
        if inst is None:
            return RunnerStatus(RunnerState.GONE, "instance not found")
        state = inst["State"]["Name"]
        if state in ("shutting-down", "terminated"):
            reason = inst.get("StateReason", {}).get("Message", "")
            return RunnerStatus(RunnerState.GONE, f"{state} {reason}".strip())
        if state in ("stopping", "stopped"):
            return RunnerStatus(RunnerState.FAILED, f"{state} (not started by this runner)")
        if state == "pending":
            return RunnerStatus(RunnerState.PENDING, "pending")
        if checks is not None and "impaired" in checks:
            return RunnerStatus(RunnerState.FAILED, f"status checks instance={checks[0]} system={checks[1]}")
        if checks != ("ok", "ok"):  # not reported yet, initializing, insufficient-data
            return RunnerStatus(RunnerState.PENDING, f"running, status checks {checks or 'not reported yet'}")
        if ping != "Online":
            return RunnerStatus(
                RunnerState.PENDING, f"running, checks ok, SSM agent {ping or 'not registered yet'}"
            )
        endpoints = {"private_ip": inst.get("PrivateIpAddress", ""), "instance_id": inst["InstanceId"]}
        if inst.get("PublicIpAddress"):
            endpoints["public_ip"] = inst["PublicIpAddress"]
        return RunnerStatus(
            RunnerState.READY,
            "running, status checks ok, SSM agent online",
            endpoints=endpoints,
            details={
                "availability_zone": inst.get("Placement", {}).get("AvailabilityZone"),
                "ready_at": datetime.now(UTC).isoformat(),
            },
        )

    # -- teardown ------------------------------------------------------------------------------
    def teardown(self, handle: RunnerHandle) -> TeardownResult:
        """Flush logs, then terminate or return to the pool (stop, re-tag, release). Idempotent."""
        iid = handle.resource_id
        inst = self._instances([iid]).get(iid)
        if inst is None or inst["State"]["Name"] in ("shutting-down", "terminated"):
            return TeardownResult(
                existed=False, message=f"already gone ({inst['State']['Name'] if inst else 'not found'})"
            )
        tags = _tags(inst)
        if tags.get("runner-attempt") != handle.attempt_token:
            # Back in the pool (a second teardown), perhaps claimed by another run since: not ours.
            return TeardownResult(
                existed=False,
                message=f"already returned to the pool (now {tags.get('runner-pool-state', '?')})",
            )
        started = time.monotonic()
        before = inst["State"]["Name"]
        details: dict[str, Any] = {
            "state_before": before,
            "teardown_started_at": datetime.now(UTC).isoformat(),
        }
        if before == "running" and self.flush_logs_command:
            details["log_flush"] = _ec2_ssm.flush_logs(self.client("ssm"), iid, self.flush_logs_command)
        mode = tags.get("runner-teardown", "terminate")
        if inst.get("InstanceLifecycle") == "spot":
            mode = "terminate"
        ec2 = self.client("ec2")
        if mode == "pool":
            if before == "pending":  # EC2 refuses to stop a pending instance
                self._wait(iid, {"running", "stopped"}, "start")
            if self.pool_return == "stop" and before != "stopped":
                ec2.stop_instances(InstanceIds=[iid])
                self._wait(iid, {"stopped"}, "stop")
            self._return_to_pool(inst, tags)
            message = f"returned to pool {tags.get('runner-pool')} ({'stopped' if self.pool_return == 'stop' else 'running idle'})"
        else:
            try:
                ec2.terminate_instances(InstanceIds=[iid])
            except Exception as exc:
                if _code(exc) != "InvalidInstanceID.NotFound":
                    raise
            self._wait(iid, {"terminated"}, "terminate")
            if tags.get("runner-pool"):
                self.claims().forget(iid)
            message = f"terminated (was {before})"
        details.update(
            mode=mode,
            teardown_s=round(time.monotonic() - started, 3),
            teardown_at=datetime.now(UTC).isoformat(),
        )
        return TeardownResult(existed=True, message=message, details=details)

    def _return_to_pool(self, inst: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        iid = inst["InstanceId"]
        ec2 = self.client("ec2")
        volumes = [m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m]
        pool_expires = int((datetime.now(UTC) + self.pool_idle_ttl).timestamp())
        if self.pool_return == "running":  # stays up: re-arm its timer at the pool expiry
            _ec2_ssm.send(
                self.client("ssm"),
                iid,
                f"shutdown -h +{max(1, int(self.pool_idle_ttl.total_seconds() // 60))}",
                "runner: pool ttl",
                60,
            )
        ec2.create_tags(Resources=[iid, *volumes], Tags=_ec2_pool.idle_tags(pool_expires))
        ec2.delete_tags(Resources=[iid, *volumes], Tags=[{"Key": k} for k in RUN_TAGS if k in tags])
        self.claims().release(
            iid, tags.get("runner-pool", ""), tags.get("runner-attempt", ""), pool_expires + 86_400
        )

    def _wait(self, iid: str, states: set[str], what: str) -> None:
        deadline = time.monotonic() + self.teardown_timeout_s
        while True:
            inst = self._instances([iid]).get(iid)
            state = inst["State"]["Name"] if inst else "terminated"
            if state in states or (inst is None and "terminated" in states):
                return
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"instance {iid} still {state} after {what}; its shutdown timer will end it"
                )
            time.sleep(self.teardown_poll_s)

    # -- evidence / inventory -------------------------------------------------------------------
    def describe(self, handle: RunnerHandle) -> dict[str, Any]:
        inst = self._instances([handle.resource_id]).get(handle.resource_id)
        d = handle.details
        facts: dict[str, Any] = {
            "instance_id": handle.resource_id,
            "region": self.region,
            "acquired": d.get("acquired"),
            "image": d.get("image"),
            "image_digest": d.get("image_digest"),
            "network_profile": d.get("network_profile"),
            "public_egress": d.get("public_egress"),
            "ebs": d.get("ebs"),
            "teardown_mode": d.get("teardown_mode"),
            "driver_bundles": {
                ref: b.get("sha256") for ref, b in json.loads(str(d.get("driver_bundles") or "{}")).items()
            },
            "launched_at": d.get("launched_at"),
            "ready_at": d.get("ready_at"),
            "cost_basis": "catalog $/h (spot or on-demand) x seconds, 60 s minimum (EC2 Linux per-second billing)",
        }
        if inst is None:
            return {**facts, "state": "NOT_FOUND"}
        iam = inst.get("IamInstanceProfile", {}).get("Arn")
        facts.update(
            state=inst["State"]["Name"],
            instance_type=inst.get("InstanceType"),
            availability_zone=inst.get("Placement", {}).get("AvailabilityZone"),
            ami_id=inst.get("ImageId"),
            iam_instance_profile=iam,
            subnet_id=inst.get("SubnetId"),
            security_groups=[g["GroupId"] for g in inst.get("SecurityGroups", [])]
            or [g["GroupId"] for n in inst.get("NetworkInterfaces", [])[:1] for g in n.get("Groups", [])],
            private_ip=inst.get("PrivateIpAddress"),
            public_ip=inst.get("PublicIpAddress"),
            market="spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand",
            instance_launch_time=inst["LaunchTime"].isoformat()
            if isinstance(inst.get("LaunchTime"), datetime)
            else None,
        )
        return facts

    def list_managed(self) -> list[RunnerHandle]:
        found = self._describe(
            [
                {"Name": "tag:managed-by", "Values": [MANAGED_BY]},
                {"Name": "instance-state-name", "Values": LIVE_STATES},
            ]
        )
        return [self._from_instance(inst) for inst in found]

    # -- commands ------------------------------------------------------------------------------
    def run_command(
        self, handle: RunnerHandle, request: CommandRequest, output: OutputSink, cancel: threading.Event
    ) -> CommandResult:
        bundles = json.loads(str(handle.details.get("driver_bundles") or "{}"))
        script = _ec2_ssm.build_script(request, self.region, bundles, self.drivers_dir)
        return _ec2_ssm.run(
            self.client("ssm"), handle.resource_id, request, script, output, cancel, self.command_poll_s
        )
