"""Budget guard: no runner is created if it would take a $/hour budget over its limit.

Budgets live in the catalog, per environment (``airflow-runners catalog validate`` checks them)::

    environments:
      dev:
        budgets:
          tenant:   {analytics: 10.0, qa: 2.0}      # $/hour of all live runners tagged tenant=...
          pipeline: {sales-etl: 2.5}                # $/hour of all live runners tagged pipeline=...

Before ``acquire`` creates anything, :func:`admit`:

1. prices the new runner: catalog price x ``backend.billed_nodes()`` + per-vCPU fee;
2. writes a *reservation* for it in the runner registry (status ``pending``) — so two
   provisions racing for the last dollars see each other (both may then be refused, never both
   admitted over the limit);
3. sums the live runners that share a budget with it: the backend's own ``list_managed()``
   (the truth for this Connection; rates from the handles' ``usd_per_hour`` or the catalog)
   plus the registry's live records of every other backend and pending reservations;
4. if any budget would be exceeded, removes the reservation and raises
   :class:`~airflow_provider_runners.exceptions.BudgetExceededError` — nothing is created.

The runner of the same lineage (an earlier try, which ``acquire`` adopts or replaces) is not
counted twice. When runners end, their rates leave the sum and provisions fit again:
``ProvisionRunnerOperator(budget_wait=...)`` waits (deferred) for that instead of failing.

A registry that cannot be reached is logged and skipped: the guard then counts what the
backend lists, which is exact for one backend and under-counts the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.core.prices import handle_rate, runner_rate
from airflow_provider_runners.exceptions import BudgetExceededError, ProvisionError
from airflow_provider_runners.governance.runner_index import (
    PENDING_GRACE_S,
    NullRegistry,
    RunnerRecord,
    RunnerRegistry,
    open_registry,
    quietly,
)

if TYPE_CHECKING:
    from airflow_provider_runners.core.backend import Backend, ProvisionRequest
    from airflow_provider_runners.core.catalog import Budgets, Catalog
    from airflow_provider_runners.core.handles import RunnerHandle

log = logging.getLogger(__name__)
_EPS = 1e-9


@dataclass(frozen=True)
class Spend:
    """One live runner's rate, and where the guard learned of it."""

    backend: str
    resource_id: str
    lineage_key: str
    tenant: str
    pipeline: str
    usd_per_hour: float
    source: str  # "backend" (list_managed), "registry", "reservation"


@dataclass(frozen=True)
class BudgetCheck:
    """One budget that applies to the new runner, and the arithmetic."""

    scope: str  # "tenant" or "pipeline"
    name: str
    limit: float
    live_usd_per_hour: float
    new_usd_per_hour: float
    counted: tuple[str, ...]

    @property
    def total(self) -> float:
        return self.live_usd_per_hour + self.new_usd_per_hour

    @property
    def fits(self) -> bool:
        return self.total <= self.limit + _EPS

    def describe(self) -> str:
        return (
            f"{self.scope} {self.name!r} budget ${self.limit:.4f}/h: live runners ${self.live_usd_per_hour:.4f}/h "
            f"({', '.join(self.counted) or 'none'}) + this runner ${self.new_usd_per_hour:.4f}/h "
            f"= ${self.total:.4f}/h"
        )


def safe_registry(registry: RunnerRegistry | None = None) -> RunnerRegistry:
    """The given or configured registry; a NullRegistry (with a warning) if it cannot be opened."""
    if registry is not None:
        return registry
    try:
        return open_registry()
    except Exception as exc:  # noqa: BLE001 - the registry is an index; never block on it
        log.warning("runner registry unavailable (%s): budgets count only what backends list", exc)
        return NullRegistry()


def live_spend(
    backend: Backend,
    registry: RunnerRegistry,
    exclude_lineage: str | None = None,
    now: float | None = None,
    catalog: Catalog | None = None,
) -> list[Spend]:
    """Every live runner's rate: ``backend.list_managed()`` plus the registry's other records.
    Handles without pricing details are priced from ``catalog`` (default: the configured one)."""
    now = time.time() if now is None else now
    spend: dict[tuple[str, str], Spend] = {}
    listed_lineages: set[str] = set()
    try:
        listed = backend.list_managed()
    except Exception as exc:
        raise ProvisionError(
            f"cannot check the budget: {backend} could not list its live runners ({exc}); nothing was created"
        ) from exc
    for handle in listed:
        if handle.lineage_key == exclude_lineage:
            continue
        listed_lineages.add(handle.lineage_key)
        spend[(handle.backend, handle.resource_id)] = _from_handle(handle, catalog)
    try:
        records = registry.live(now)
    except Exception as exc:  # noqa: BLE001
        log.warning("runner registry unreadable (%s): counting only what %s lists", exc, backend)
        records = []
    for record in records:
        if record.key == exclude_lineage or record.key in listed_lineages:
            continue
        if record.status == "pending":
            if now - record.registered_at > PENDING_GRACE_S:
                continue  # a reservation whose provision died before creating anything
            spend[("reservation", record.key)] = _from_record(record, "reservation")
            continue
        if record.conn_id == backend.conn_id and record.backend == backend.name:
            continue  # this backend did not list it: it is gone, whatever the index says
        spend.setdefault((record.backend, record.resource_id), _from_record(record, "registry"))
    return list(spend.values())


def _from_handle(handle: RunnerHandle, catalog: Catalog | None = None) -> Spend:
    rate = handle_rate(handle, catalog)
    if rate is None:
        log.warning("no price known for runner %s (%s): counted as $0/h", handle.resource_id, handle.profile)
    return Spend(
        backend=handle.backend,
        resource_id=handle.resource_id,
        lineage_key=handle.lineage_key,
        tenant=handle.tags.get("tenant", ""),
        pipeline=handle.tags.get("pipeline", ""),
        usd_per_hour=rate or 0.0,
        source="backend",
    )


def _from_record(record: RunnerRecord, source: str) -> Spend:
    return Spend(
        backend=record.backend,
        resource_id=record.resource_id or f"(reserved {record.key})",
        lineage_key=record.key,
        tenant=record.tenant,
        pipeline=record.pipeline,
        usd_per_hour=record.usd_per_hour,
        source=source,
    )


def check_budgets(
    budgets: Budgets, tenant: str | None, pipeline: str | None, new_rate: float, spend: Iterable[Spend]
) -> list[BudgetCheck]:
    """One :class:`BudgetCheck` per budget that applies to ``tenant`` / ``pipeline``."""
    spend = list(spend)
    checks = []
    for scope, name, limit in budgets.limits_for(tenant, pipeline):
        mine = [s for s in spend if getattr(s, scope) == name]
        checks.append(
            BudgetCheck(
                scope=scope,
                name=name,
                limit=limit,
                live_usd_per_hour=sum(s.usd_per_hour for s in mine),
                new_usd_per_hour=new_rate,
                counted=tuple(f"{s.resource_id} ${s.usd_per_hour:.4f}/h" for s in mine),
            )
        )
    return checks


class Admission:
    """A provision the guard let through; keeps its registry record in step with the runner."""

    def __init__(self, registry: RunnerRegistry, record: RunnerRecord, checks: list[BudgetCheck]) -> None:
        self.registry = registry
        self.record = record
        self.checks = checks

    def confirm(self, handle: RunnerHandle) -> None:
        """The runner exists: record its resource id, real rate and expiry (status running)."""
        rate = handle_rate(handle)
        self.record = self.record.evolve(
            status="running",
            resource_id=handle.resource_id,
            usd_per_hour=self.record.usd_per_hour if rate is None else rate,
            expires_at=handle.expires_at.timestamp(),
            last_heartbeat=time.time(),
        )
        quietly(self.registry.put, self.record)


def admit(
    backend: Backend,
    request: ProvisionRequest,
    catalog_path: str | None = None,
    registry: RunnerRegistry | None = None,
) -> Admission:
    """Reserve room for the runner ``request`` asks for, or raise BudgetExceededError (nothing
    created). See the module docstring for what is counted."""
    from airflow_provider_runners.core.catalog import load_catalog

    resolved = request.resolved
    catalog = load_catalog(catalog_path)
    env = catalog.environments[resolved.environment]
    registry = safe_registry(registry)
    labels = request.labels
    tenant, pipeline = labels.get("tenant"), labels.get("pipeline")
    spot_nodes = getattr(backend, "spot_nodes", None)  # nodes billed at spot (Dataproc secondaries)
    new_rate = runner_rate(
        resolved, backend.billed_nodes(resolved), spot_nodes(resolved) if spot_nodes else None
    )
    now = time.time()
    lineage = request.lineage
    record = RunnerRecord(
        key=lineage.key,
        backend=backend.name,
        conn_id=backend.conn_id,
        status="pending",
        holder=request.attempt_token,
        dag_id=lineage.dag_id,
        run_id=lineage.run_id,
        task_id=lineage.task_id,
        map_index=lineage.map_index,
        tenant=tenant or "",
        pipeline=pipeline or "",
        pool=labels.get("burst-pool", ""),
        usd_per_hour=new_rate,
        registered_at=now,
        last_heartbeat=now,
        expires_at=now + PENDING_GRACE_S,
    )
    previous = quietly(registry.get, lineage.key)
    quietly(registry.put, record)
    limits = env.budgets.limits_for(tenant, pipeline)
    if not limits:
        return Admission(registry, record, [])
    spend = live_spend(backend, registry, exclude_lineage=lineage.key, now=now, catalog=catalog)
    checks = check_budgets(env.budgets, tenant, pipeline, new_rate, spend)
    over = [c for c in checks if not c.fits]
    if over:
        if previous is not None:
            quietly(registry.put, previous)
        else:
            quietly(registry.delete, lineage.key)
        where = f"environments.{resolved.environment}.budgets"
        raise BudgetExceededError(
            "over budget, nothing was created: "
            + "; ".join(f"{c.describe()} > ${c.limit:.4f}/h" for c in over)
            + f". Wait for runners to end, raise the budget in the catalog ({where}), or set "
            "budget_wait= on the provision to wait until it fits.",
            details={"budget": [asdict(c) | {"fits": c.fits} for c in checks], "new_usd_per_hour": new_rate},
        )
    return Admission(registry, record, checks)


def release(handle: RunnerHandle, reason: str, registry: RunnerRegistry | None = None) -> None:
    """The runner ended (teardown, failed provision, reaper): mark its registry record ended."""
    quietly(safe_registry(registry).end, handle.lineage_key, reason)


#: XCom key holding when this try first found no budget room (survives deferral, not retries).
WAIT_XCOM_KEY = "runner_budget_wait_since"


def keep_waiting(ti: Any, wait: timedelta | None, why: str) -> bool:
    """True while a provision refused for budget may wait longer (``budget_wait``)."""
    if wait is None:
        return False
    now = datetime.now(UTC)
    map_index = getattr(ti, "map_index", -1)
    since_text = ti.xcom_pull(task_ids=ti.task_id, key=WAIT_XCOM_KEY, map_indexes=map_index)
    if not since_text:
        since = now
        ti.xcom_push(key=WAIT_XCOM_KEY, value=now.isoformat())
    else:
        since = datetime.fromisoformat(str(since_text))
    waited = now - since
    if waited >= wait:
        log.error("gave up waiting for budget room after %s: %s", waited, why)
        return False
    log.warning("waiting for budget room (%s of %s so far): %s", waited, wait, why)
    return True
