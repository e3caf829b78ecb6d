"""Spec → EC2 launch plan for the ``ec2`` backend: catalog resolution checks, pool key, user-data.

Everything here is pure (no AWS call), so it runs at DAG parse time too (:func:`validate_spec`).

==========================  ===================================================================
spec field                  EC2 (from the catalog, environment ``dev``/``prod``, or extras)
==========================  ===================================================================
profile                     ``machine_type`` → instance type; ``disk_gib`` + ``options.ebs_volume_type``
                            (gp3) → encrypted EBS root volume; ``Custom`` needs ``approval_ref``
network_profile             ``subnet_id`` / ``security_group_ids`` from the Connection extra
                            ``network_profiles.<name>`` or the catalog profile's ``options``;
                            a public IP only when the profile has ``public_egress: true``
image ``name@version``      ``options.amis.<region>`` → the approved AMI; the catalog digest is
                            recorded (and an AMI tagged ``runner-image-digest`` must match it)
driver_bundles              pinned ``sha256`` (+ ``uri``: fetched and verified before commands)
(Connection / profile)      ``instance_profile`` → IAM instance profile (SSM agent, secrets)
options.teardown            ``terminate`` (default) or ``pool`` (warm pool; not with spot)
==========================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.backends.ec2 import idle as _ec2_idle, pool as _ec2_pool
from airflow_provider_runners.exceptions import RunnerSpecError

if TYPE_CHECKING:
    from airflow_provider_runners.core.catalog import ResolvedSpec
    from airflow_provider_runners.core.specs import RunnerSpec

OPTION_KEYS = frozenset({"teardown"})
TEARDOWN_MODES = ("terminate", "pool")
USER_DATA = """#cloud-config
# airflow-provider-runners backstops (nothing else, nothing secret): on every boot, shut down at
# the instance's expires-at tag, and start the idle watcher (ends the host after its idle-timeout
# tag without commands); InstanceInitiatedShutdownBehavior=terminate then ends the host.
bootcmd:
  - [sh, -c, 'T=$(curl -s -m 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token); E=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $T" http://169.254.169.254/latest/meta-data/tags/instance/expires-at); N=$(date +%s); if [ -n "$E" ]; then M=$(( (E - N + 59) / 60 )); else M={ttl_minutes}; fi; [ "$M" -ge 1 ] || M=1; shutdown -h +$M']
"""


@dataclass(frozen=True)
class LaunchPlan:
    """What a resolved spec means on EC2 in one region (validated: no launch without it)."""

    instance_type: str
    disk_gib: int
    volume_type: str
    ami_id: str
    image_ref: str
    image_digest: str
    network_profile: str
    subnet_id: str
    security_group_ids: tuple[str, ...]
    public_egress: bool
    instance_profile: str
    teardown: str
    pool_key: str
    bundles: dict[str, dict[str, Any]]


def plan_for(resolved: ResolvedSpec, region: str, extra: Mapping[str, Any] | None = None) -> LaunchPlan:
    """Resolve a spec to a launch plan; RunnerSpecError naming the field, nothing is created."""
    extra = extra or {}
    spec, profile = resolved.spec, resolved.profile
    unknown = set(spec.options) - OPTION_KEYS
    if unknown:
        raise RunnerSpecError(
            f"spec.options: {sorted(unknown)} not supported by ec2; allowed: {sorted(OPTION_KEYS)}"
        )
    if not profile.machine_type:
        raise RunnerSpecError(
            f"spec.profile: {spec.profile!r} in {resolved.environment!r} has no machine_type (instance "
            "type); ec2 needs a cloud dedicated_host profile (Large, XLarge, Custom in 'dev' or 'prod')"
        )
    teardown = spec.options.get("teardown", profile.options.get("teardown", "terminate"))
    if teardown not in TEARDOWN_MODES:
        raise RunnerSpecError(
            f"spec.options.teardown: {teardown!r} is not allowed; allowed: {list(TEARDOWN_MODES)}"
        )
    if teardown == "pool" and spec.spot:
        raise RunnerSpecError(
            "spec.options.teardown: 'pool' cannot be used with spot=True (spot hosts cannot be stopped and reused); use 'terminate'"
        )
    if resolved.image is None or resolved.image_name is None:
        raise RunnerSpecError(
            "spec.image: ec2 needs an approved image 'name@version' (the catalog maps it to an AMI)"
        )
    image_ref = f"{resolved.image_name}@{resolved.image_version}"
    amis = resolved.image.options.get("amis") or {}
    ami = amis.get(region)
    if not ami:
        raise RunnerSpecError(
            f"spec.image: {image_ref!r} has no approved AMI for region {region!r}; approved in: {sorted(amis)}"
        )
    net_name = resolved.network_profile_name or ""
    network = resolved.network_profile
    net_opts = {
        **(network.options if network else {}),
        **(extra.get("network_profiles") or {}).get(net_name, {}),
    }
    subnet = net_opts.get("subnet_id")
    groups = net_opts.get("security_group_ids") or []
    if not subnet or not groups:
        raise RunnerSpecError(
            f"spec.network_profile: {net_name!r} has no subnet_id/security_group_ids for ec2; set them in the "
            "catalog's network profile options or the Connection extra network_profiles"
        )
    instance_profile = extra.get("instance_profile") or profile.options.get("instance_profile")
    if not instance_profile:
        raise RunnerSpecError(
            "instance_profile: not set (Connection extra instance_profile or profile options); hosts need "
            "one for the SSM agent and for reading secrets"
        )
    bundles = {ref: {"sha256": b.sha256, "uri": b.uri} for ref, b in resolved.driver_bundles.items()}
    key = _ec2_pool.pool_key(
        resolved.environment, spec.profile, profile.machine_type, image_ref, ami, net_name, instance_profile
    )
    return LaunchPlan(
        instance_type=profile.machine_type,
        disk_gib=profile.disk_gib or 100,
        volume_type=str(profile.options.get("ebs_volume_type", "gp3")),
        ami_id=ami,
        image_ref=image_ref,
        image_digest=resolved.image.digest,
        network_profile=net_name,
        subnet_id=str(subnet),
        security_group_ids=tuple(groups),
        public_egress=bool(network.public_egress) if network else False,
        instance_profile=str(instance_profile),
        teardown=str(teardown),
        pool_key=key,
        bundles=bundles,
    )


def validate_spec(
    spec: RunnerSpec | Mapping[str, Any], region: str | None = None, catalog_path: str | None = None
) -> RunnerSpec:
    """Parse-time check of a spec meant for ``ec2`` (profile, options, image → AMI in ``region``)."""
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.specs import RunnerSpec

    parsed = RunnerSpec.parse(spec)
    resolved = resolve_spec(parsed, backend="ec2", catalog_path=catalog_path)
    try:
        plan_for(
            resolved,
            region or "",
            {
                "instance_profile": "-",
                "network_profiles": {
                    resolved.network_profile_name or "": {"subnet_id": "-", "security_group_ids": ["-"]}
                },
            },
        )
    except RunnerSpecError as exc:
        if region is not None or "has no approved AMI" not in str(exc):
            raise
    return parsed


def user_data(ttl: timedelta) -> str:
    """The whole user-data: the shutdown timer backstop and the idle watcher, which does nothing
    unless the host's ``idle-timeout`` tag sets one (base64 is done by boto3)."""
    timer = USER_DATA.replace("{ttl_minutes}", str(max(1, int(ttl.total_seconds() // 60))))
    return timer + _ec2_idle.WRITE_FILES
