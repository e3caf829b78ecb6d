"""The ``ec2`` backend's warm-pool lifecycle: end idle pooled hosts, keep each pool at its size.

A pooled host that went back to the pool is *stopped*: its on-boot shutdown timer cannot end
it, and only a claim (a run) starts it again. This module is what ends it (docs/ec2.md, "Warm
pool lifecycle"). One :func:`maintain` pass over a ``runners_ec2`` Connection:

1. **prune** (:func:`prune`, also run by the reaper's sweep): every idle pooled host (tag
   ``runner-pool-state=idle``) is terminated when it is past its ``expires-at`` tag, or idle
   longer than its pool's ``idle_ttl`` (since its ``runner-pool-idle-since`` tag, written when it
   went back to the pool), or beyond its pool's ``max_size``. Before terminating, the pass takes
   the host's claim with the same DynamoDB conditional write a run uses
   (:class:`~airflow_provider_runners.backends.ec2.pool.ClaimTable`), so a host a run is claiming
   at the same moment is never terminated under it; its claim item is then deleted;
2. **refill** (:func:`refill`): a configured pool with fewer idle hosts than ``min_size`` gets
   new ones (pre-warm: launch as a run would, wait until running, stop, tag ``idle``, write its
   claim item), never more hosts in the pool than ``max_size``.

Pools are configured per profile + image in the Connection extra ``warm_pools`` (or the
catalog's top-level ``warm_pools``, same shape, for every ``runners_ec2`` Connection)::

    {"warm_pools": {"erp-large": {"profile": "Pooled", "image": "hardened-base@2026.11",
                                  "min_size": 1, "max_size": 3, "idle_ttl": "2h",
                                  "network_profile": "private", "environment": "aws"}}}

``min_size`` (0), ``max_size`` (none), ``idle_ttl`` (the Connection's ``pool_idle_ttl``),
``network_profile`` and ``environment`` (catalog defaults) are optional. A host of a pool that
is not configured is pruned with the Connection's ``pool_idle_ttl``.

**Resources created**: pre-warmed EC2 instances with the same tags as a run's pooled host
(``managed-by``, ``runner-pool``, ``runner-pool-state``, ``runner-pool-idle-since``,
``expires-at``, ``runner-image``, ``profile``, ``runner-env``) and their claim items.
**Manual cleanup**: ``aws ec2 describe-instances --filters Name=tag:runner-pool-state,Values=idle``,
then ``aws ec2 terminate-instances`` and ``aws dynamodb delete-item`` (see the backend module).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.backends.ec2 import pool as _ec2_pool
from airflow_provider_runners.core.backend import ProvisionRequest
from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage
from airflow_provider_runners.core.specs import DURATION_HINT, parse_duration
from airflow_provider_runners.exceptions import ConnectionConfigError

if TYPE_CHECKING:
    from airflow_provider_runners.backends.ec2.backend import Ec2Backend

log = logging.getLogger(__name__)
POOL_FIELDS = frozenset(
    {"profile", "image", "min_size", "max_size", "idle_ttl", "network_profile", "environment"}
)
IDLE_SINCE = _ec2_pool.IDLE_SINCE_TAG
LIVE = ["pending", "running", "stopping", "stopped"]


@dataclass(frozen=True)
class PoolConfig:
    """One configured warm pool: hosts of one profile + image kept between these sizes."""

    name: str
    profile: str
    image: str
    min_size: int = 0
    max_size: int | None = None
    idle_ttl: timedelta | None = None
    network_profile: str | None = None
    environment: str | None = None


@dataclass
class PoolHost:
    """A pooled instance as its tags describe it."""

    instance_id: str
    state: str
    pool_key: str
    pool_state: str
    idle_since: datetime | None
    expires_at: datetime | None
    profile: str = ""
    image: str = ""


@dataclass
class PoolAction:
    """What a maintenance pass did (or would do) to one pool."""

    pool: str
    action: str  # "terminate", "launch", "skip"
    reason: str
    instance_id: str = ""
    result: str = ""


@dataclass
class PoolReport:
    conn_id: str
    report_only: bool
    now: str
    pools: list[dict[str, Any]] = field(default_factory=list)
    actions: list[PoolAction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "report_only": self.report_only,
            "now": self.now,
            "pools": self.pools,
            "terminated": [a.instance_id for a in self.actions if a.action == "terminate"],
            "launched": [a.instance_id for a in self.actions if a.action == "launch"],
            "actions": [asdict(a) for a in self.actions],
            "errors": self.errors,
        }


def _duration(value: Any, where: str) -> timedelta:
    parsed = parse_duration(value)
    if isinstance(parsed, timedelta):
        return parsed
    if isinstance(parsed, int | float) and not isinstance(parsed, bool) and parsed > 0:
        return timedelta(seconds=float(parsed))
    raise ConnectionConfigError(f"{where}: {value!r} is not a duration; {DURATION_HINT}")


def pool_configs(
    conn_id: str,
    extra: Mapping[str, Any],
    catalog_pools: Mapping[str, Any] | None = None,
    where: str | None = None,
) -> list[PoolConfig]:
    """The ``warm_pools`` of the catalog and of a Connection extra (its entry of the same name
    wins), validated: errors name the Connection (or the catalog), field and value."""
    raw = extra.get("warm_pools") or {}
    where = where or f"Connection {conn_id!r} extra warm_pools"
    if not isinstance(raw, Mapping):
        raise ConnectionConfigError(
            f"{where}: must be an object {{name: {{profile, image, ...}}}}, got {raw!r}"
        )
    if catalog_pools:
        catalog = pool_configs(
            conn_id, {"warm_pools": catalog_pools}, where="catalog warm_pools"
        )  # errors named as the catalog's
        own = pool_configs(conn_id, extra)
        return sorted({c.name: c for c in [*catalog, *own]}.values(), key=lambda c: c.name)
    configs = []
    for name, entry in sorted(raw.items()):
        at = f"{where}.{name}"
        if not isinstance(entry, Mapping):
            raise ConnectionConfigError(f"{at}: must be an object, got {entry!r}")
        unknown = set(entry) - POOL_FIELDS
        if unknown:
            raise ConnectionConfigError(
                f"{at}: unknown fields {sorted(unknown)}; allowed: {sorted(POOL_FIELDS)}"
            )
        for required in ("profile", "image"):
            if not entry.get(required):
                raise ConnectionConfigError(f"{at}.{required}: required")
        sizes: dict[str, int | None] = {}
        for key in ("min_size", "max_size"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConnectionConfigError(f"{at}.{key}: {value!r}; allowed: an integer >= 0")
            sizes[key] = value
        min_size, max_size = sizes["min_size"] or 0, sizes["max_size"]
        if max_size is not None and min_size > max_size:
            raise ConnectionConfigError(f"{at}.min_size: {min_size} is above max_size {max_size}")
        ttl = _duration(entry["idle_ttl"], f"{at}.idle_ttl") if entry.get("idle_ttl") is not None else None
        configs.append(
            PoolConfig(
                name=str(name),
                profile=str(entry["profile"]),
                image=str(entry["image"]),
                min_size=min_size,
                max_size=max_size,
                idle_ttl=ttl,
                network_profile=entry.get("network_profile"),
                environment=entry.get("environment"),
            )
        )
    return configs


def _configs(backend: Ec2Backend, catalog_path: str | None) -> list[PoolConfig]:
    from airflow_provider_runners.core.catalog import load_catalog

    return pool_configs(backend.conn_id, backend.config.extra, load_catalog(catalog_path).warm_pools)


def _spec(config: PoolConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "runner_class": "dedicated_host",
        "profile": config.profile,
        "image": config.image,
        "tags": {"tenant": "warm-pool", "pipeline": f"warm-pool-{config.name}"[:63]},
        "options": {"teardown": "pool"},
    }
    if config.network_profile:
        spec["network_profile"] = config.network_profile
    if config.environment:
        spec["environment"] = config.environment
    return spec


def _resolve(backend: Ec2Backend, config: PoolConfig, catalog_path: str | None) -> tuple[Any, Any]:
    from airflow_provider_runners.backends.ec2.plan import plan_for
    from airflow_provider_runners.core.catalog import resolve_spec
    from airflow_provider_runners.core.specs import RunnerSpec

    resolved = resolve_spec(RunnerSpec.parse(_spec(config)), backend="ec2", catalog_path=catalog_path)
    return resolved, plan_for(resolved, backend.region, backend.config.extra)


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC) if value else None
    except ValueError:
        return None


def pool_hosts(backend: Ec2Backend) -> list[PoolHost]:
    """Every live pooled host of this Connection's account and region (one paginated describe)."""
    found = backend._describe(
        [
            {"Name": "tag:managed-by", "Values": [MANAGED_BY]},
            {"Name": "tag-key", "Values": ["runner-pool"]},
            {"Name": "instance-state-name", "Values": LIVE},
        ]
    )
    hosts = []
    for inst in found:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        hosts.append(
            PoolHost(
                instance_id=inst["InstanceId"],
                state=inst["State"]["Name"],
                pool_key=tags.get("runner-pool", ""),
                pool_state=tags.get("runner-pool-state", ""),
                idle_since=_epoch(tags.get(IDLE_SINCE)),
                expires_at=_epoch(tags.get("expires-at")),
                profile=tags.get("profile", ""),
                image=tags.get("runner-image", ""),
            )
        )
    return hosts


def _keyed(
    backend: Ec2Backend, configs: list[PoolConfig], catalog_path: str | None, errors: list[str]
) -> dict[str, tuple[PoolConfig, Any, Any]]:
    keyed = {}
    for config in configs:
        try:
            resolved, plan = _resolve(backend, config, catalog_path)
        except Exception as exc:  # noqa: BLE001 - one bad pool does not stop the others
            errors.append(f"warm_pools.{config.name}: {exc}")
            continue
        keyed[plan.pool_key] = (config, resolved, plan)
    return keyed


def _idle(host: PoolHost) -> bool:
    return host.pool_state == "idle" and host.state in ("running", "stopped")


def _why_prune(host: PoolHost, ttl: timedelta, now: datetime) -> str | None:
    if host.expires_at is not None and host.expires_at <= now:
        return f"expired at {host.expires_at.isoformat()}"
    if host.idle_since is not None and now - host.idle_since > ttl:
        return f"idle since {host.idle_since.isoformat()}, longer than idle_ttl {ttl}"
    return None


def terminate_idle(backend: Ec2Backend, host: PoolHost, reason: str, pool: str) -> PoolAction:
    """Take the host's claim (so no run gets it meanwhile), terminate it, delete its claim."""
    claims = backend.claims()
    token = f"pool-maintenance-{host.instance_id}"
    keep_item = int(datetime.now(UTC).timestamp()) + 86_400  # the item's TTL if we stop short
    if not claims.claim(
        host.instance_id, host.pool_key, token, "pool-maintenance", backend.claim_lease_s, keep_item
    ):
        return PoolAction(pool, "skip", f"{reason}; claimed by a run meanwhile", host.instance_id, "kept")
    inst = backend._instances([host.instance_id]).get(host.instance_id)
    tags = {t["Key"]: t["Value"] for t in (inst or {}).get("Tags", [])}
    if inst is not None and tags.get("runner-pool-state") != "idle":  # taken before our claim landed
        claims.release(host.instance_id, host.pool_key, token, keep_item)
        return PoolAction(pool, "skip", f"{reason}; in use again", host.instance_id, "kept")
    if inst is not None:
        backend.client("ec2").terminate_instances(InstanceIds=[host.instance_id])
    claims.forget(host.instance_id)
    log.info("warm pool %s: terminated %s (%s)", pool, host.instance_id, reason)
    return PoolAction(pool, "terminate", reason, host.instance_id, f"terminated (was {host.state})")


def prune(
    backend: Ec2Backend,
    now: datetime | None = None,
    report_only: bool = False,
    catalog_path: str | None = None,
    errors: list[str] | None = None,
) -> list[PoolAction]:
    """Terminate idle pooled hosts past expiry, idle longer than their pool's ttl, or beyond its
    ``max_size`` (oldest idle first). ``report_only``: say what would be done, do nothing."""
    now = now or datetime.now(UTC)
    errors = errors if errors is not None else []
    keyed = _keyed(backend, _configs(backend, catalog_path), catalog_path, errors)
    hosts = pool_hosts(backend)
    doomed: dict[str, tuple[PoolHost, str, str]] = {}
    for host in filter(_idle, hosts):
        config = keyed.get(host.pool_key, (None,))[0]
        ttl = (config.idle_ttl if config else None) or backend.pool_idle_ttl
        reason = _why_prune(host, ttl, now)
        if reason:
            doomed[host.instance_id] = (host, reason, config.name if config else host.pool_key)
    for key, (config, _resolved, _plan) in keyed.items():
        if config.max_size is None:
            continue
        mine = [h for h in hosts if h.pool_key == key and h.instance_id not in doomed]
        spare = sorted(filter(_idle, mine), key=lambda h: h.idle_since or now)
        for host in spare[: max(0, len(mine) - config.max_size)]:
            doomed[host.instance_id] = (host, f"beyond max_size {config.max_size}", config.name)
    actions = []
    for host, reason, pool in doomed.values():
        if report_only:
            actions.append(PoolAction(pool, "terminate", reason, host.instance_id, "report only"))
            continue
        try:
            actions.append(terminate_idle(backend, host, reason, pool))
        except Exception as exc:  # noqa: BLE001 - report it, prune the others
            errors.append(f"{host.instance_id}: {type(exc).__name__}: {exc}")
    return actions


def refill(
    backend: Ec2Backend,
    now: datetime | None = None,
    report_only: bool = False,
    catalog_path: str | None = None,
    errors: list[str] | None = None,
) -> list[PoolAction]:
    """Pre-warm configured pools below ``min_size`` idle hosts, never above ``max_size`` hosts."""
    now = now or datetime.now(UTC)
    errors = errors if errors is not None else []
    keyed = _keyed(backend, _configs(backend, catalog_path), catalog_path, errors)
    hosts = pool_hosts(backend)
    actions = []
    for key, (config, resolved, plan) in keyed.items():
        mine = [h for h in hosts if h.pool_key == key]
        want = config.min_size - len([h for h in mine if _idle(h)])
        room = want if config.max_size is None else config.max_size - len(mine)
        for slot in range(max(0, min(want, room))):
            if report_only:
                actions.append(
                    PoolAction(config.name, "launch", f"below min_size {config.min_size}", "", "report only")
                )
                continue
            try:
                iid = prewarm(backend, config, resolved, plan, now, slot)
            except Exception as exc:  # noqa: BLE001 - report it, fill the other pools
                errors.append(f"warm_pools.{config.name}: pre-warm failed: {type(exc).__name__}: {exc}")
                break
            actions.append(
                PoolAction(config.name, "launch", f"below min_size {config.min_size}", iid, "stopped idle")
            )
    return actions


def prewarm(
    backend: Ec2Backend, config: PoolConfig, resolved: Any, plan: Any, now: datetime, slot: int
) -> str:
    """Launch one host for ``config`` like a run's cold start, wait until it runs, stop it and
    put it in the pool (tags + claim item). Returns its instance id."""
    ttl = config.idle_ttl or backend.pool_idle_ttl
    lineage = Lineage("warm-pool", f"{config.name}-{int(now.timestamp())}", "prewarm", slot)
    request = ProvisionRequest(  # expires when its pool idle ttl says, not the spec's ttl
        resolved, lineage, lineage.attempt_token(1), backend.conn_id, {"tenant": "warm-pool"}, now + ttl
    )
    tags = {
        **request.resource_labels(),
        "runner-attempt": request.attempt_token,
        "runner-image": plan.image_ref,
        "runner-teardown": "pool",
        "runner-pool": plan.pool_key,
        "runner-pool-state": "in-use",  # not claimable until it is stopped and idle
    }
    inst = backend._launch(request, plan, tags, ttl)
    iid = str(inst["InstanceId"])
    backend._wait(iid, {"running"}, "pre-warm launch")
    backend.client("ec2").stop_instances(InstanceIds=[iid])
    backend._wait(iid, {"stopped"}, "pre-warm stop")
    inst = backend._instances([iid]).get(iid) or inst
    volumes = [m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m]
    expires = int(request.expires_at.timestamp())
    ec2 = backend.client("ec2")
    ec2.create_tags(Resources=[iid, *volumes], Tags=_ec2_pool.idle_tags(expires, now))
    run_tags = ("runner-lineage", "dag-id", "task-id", "tenant", "pipeline", "runner-attempt")
    ec2.delete_tags(Resources=[iid, *volumes], Tags=[{"Key": k} for k in run_tags])
    backend.claims().release(iid, plan.pool_key, request.attempt_token, expires + 86_400)
    log.info("warm pool %s: pre-warmed %s (stopped, idle)", config.name, iid)
    return iid


def pools(
    backend: Ec2Backend, now: datetime | None = None, catalog_path: str | None = None
) -> list[dict[str, Any]]:
    """One row per pool (configured or seen): sizes, idle / in-use hosts, oldest idle host."""
    now = now or datetime.now(UTC)
    errors: list[str] = []
    keyed = _keyed(backend, _configs(backend, catalog_path), catalog_path, errors)
    hosts = pool_hosts(backend)
    rows: dict[str, dict[str, Any]] = {}
    for key, (config, _resolved, _plan) in keyed.items():
        rows[key] = {
            "pool": config.name,
            "profile": config.profile,
            "image": config.image,
            "min_size": config.min_size,
            "max_size": config.max_size,
            "idle_ttl": str(config.idle_ttl or backend.pool_idle_ttl),
        }
    for host in hosts:
        row = rows.setdefault(
            host.pool_key,
            {
                "pool": host.pool_key,
                "profile": host.profile,
                "image": host.image,
                "min_size": 0,
                "max_size": None,
                "idle_ttl": str(backend.pool_idle_ttl),
            },
        )
        row.setdefault("hosts", []).append(host.instance_id)
        bucket = "idle" if _idle(host) else "in_use"
        row[bucket] = row.get(bucket, 0) + 1
        if _idle(host) and host.idle_since is not None:
            idle_s = int((now - host.idle_since).total_seconds())
            row["oldest_idle_s"] = max(row.get("oldest_idle_s", 0), idle_s)
    return [
        {"conn_id": backend.conn_id, "pool_key": key, "idle": 0, "in_use": 0, "hosts": [], **row}
        for key, row in sorted(rows.items(), key=lambda kv: str(kv[1]["pool"]))
    ]


def maintain(
    backend: Ec2Backend,
    now: datetime | None = None,
    report_only: bool = False,
    catalog_path: str | None = None,
) -> PoolReport:
    """One pass: prune, then refill, then the pools as they are now."""
    now = now or datetime.now(UTC)
    report = PoolReport(conn_id=backend.conn_id, report_only=report_only, now=now.isoformat())
    report.actions += prune(backend, now, report_only, catalog_path, report.errors)
    report.actions += refill(backend, now, report_only, catalog_path, report.errors)
    report.pools = pools(backend, now, catalog_path)
    report.errors = sorted(set(report.errors))
    return report
