"""The reaper: find managed runners nobody will tear down any more, and tear them down.

Teardown tasks cover almost everything; the backstop (``expires_at``, enforced by the cloud or
host) covers the rest, eventually. The reaper closes the gap in between — a runner whose DAG
run hit ``dagrun_timeout`` (teardown tasks are skipped then) or was marked failed while its
provision waited, or whose worker died — on the next sweep instead of at its ttl.

One :func:`sweep`:

1. lists managed runners on **every configured backend** (:func:`configured_conn_ids`): runner
   Connections (``conn_type`` ``runners_*``) from ``AIRFLOW_CONN_*`` variables,
   ``[runners] reaper_conn_ids``, the metadata DB when reachable, plus the embedded
   ``runners_default``. A backend whose listing fails is reported and the others are still swept;
2. for each runner, decides (:func:`decide`):

   ==========================================  ============================================
   no ``managed-by: airflow-provider-runners``  **never touched** (foreign), reported
   past ``expires-at``                           reap (the backstop is late or missing)
   its daemon/process died (``stale()``)         reap (state left behind)
   its registry record's heartbeats stopped      reap — unless tagged ``keep-until-expiry``
   (``heartbeat_expiry``, governance/heartbeat.py)
   its DAG run ended (success / failed)          reap — unless tagged ``keep-until-expiry``
   its DAG run is queued / running               keep
   DAG run unknown                               keep (until expiry)
   ==========================================  ============================================

   A runner's DAG run comes from the runner registry (exact dag_id / run_id) or, with a
   metadata DB session (the CLI), from matching the lineage key against task instances;
   its state from the metadata DB (CLI) or the Task SDK's ``get_dagrun_state`` (the reaper DAG);
3. tears each reaped runner down (idempotent), marks its registry record ended, and appends a
   ``reap`` entry with the reason, the teardown result and the lifetime cost to the runner's
   evidence chain — preceded by a ``provision``/``failed`` entry when the chain has no
   provision entry (a provision failed from outside, whose callbacks never ran);
   EC2 warm pools first: idle pooled hosts past expiry or idle too long are terminated
   (:func:`~airflow_provider_runners.backends.ec2.warm_pool.prune`, docs/ec2.md);
4. reconciles the registry: records of a listed backend that it no longer lists are ended, and
   — the runner ended by its own backstop (ttl, idle timeout) or by hand, with nobody of ours
   recording it — an ``end`` entry (``by: backstop``) closes its evidence chain.

A ``reap`` entry and a backstop ``end`` entry are terminal: written once per round of the chain
(docs/evidence.md), so a runner another ender already recorded is not recorded twice.

``dry_run=True`` only reports: no teardown, no registry write, no evidence.

Entry points: ``airflow-runners reap [--dry-run] [--conn-id ID ...]`` and ``dags/runner_reaper.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from airflow_provider_runners.backends.registry import configured_conn_ids as all_conn_ids, get_backend
from airflow_provider_runners.core import metrics
from airflow_provider_runners.core.backend import DetectsStale
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lineage import MANAGED_BY, Lineage
from airflow_provider_runners.core.prices import handle_rate
from airflow_provider_runners.core.settings import setting
from airflow_provider_runners.governance import heartbeat
from airflow_provider_runners.governance.runner_index import RunnerRecord, RunnerRegistry, quietly

log = logging.getLogger(__name__)
ENDED_STATES = frozenset({"success", "failed"})
KEEP_TAG = "keep-until-expiry"
#: A registry record confirmed less than this long ago is not ended for being unlisted (lists
#: of some clouds are eventually consistent).
RECONCILE_GRACE_S = 300.0


class DagRunLookup(Protocol):
    """Where the reaper learns about DAG runs."""

    def state(self, dag_id: str, run_id: str) -> str | None: ...

    def find_run(self, handle: RunnerHandle) -> tuple[str, str] | None: ...


class NoDagRuns:
    """Knows no DAG run (only expiry and stale state decide)."""

    def state(self, dag_id: str, run_id: str) -> str | None:
        return None

    def find_run(self, handle: RunnerHandle) -> tuple[str, str] | None:
        return None


class MetadataDbRuns:
    """DAG runs from the metadata DB (CLI, scheduler-side code). Never raises: unknown is None."""

    def state(self, dag_id: str, run_id: str) -> str | None:
        try:
            from airflow.models.dagrun import DagRun
            from airflow.utils.session import create_session
            from sqlalchemy import select

            with create_session() as session:
                state = session.scalar(
                    select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                )
            return str(state.value if hasattr(state, "value") else state) if state else None
        except Exception as exc:  # noqa: BLE001 - no DB here: the DAG run is unknown
            log.warning("reaper: cannot read DAG run %s/%s from the metadata DB: %s", dag_id, run_id, exc)
            return None

    def find_run(self, handle: RunnerHandle) -> tuple[str, str] | None:
        """Match the runner's lineage key against task instances of DAG runs that were going
        when it was created (its dag-id / task-id tags narrow the search; the key is exact)."""
        dag_tag, task_tag = handle.tags.get("dag-id"), handle.tags.get("task-id")
        if not dag_tag or not task_tag:
            return None
        try:
            from airflow.models.dagrun import DagRun
            from airflow.models.taskinstance import TaskInstance
            from airflow.utils.session import create_session
            from sqlalchemy import or_, select

            from airflow_provider_runners.core.lineage import label_value

            with create_session() as session:
                rows = session.execute(
                    select(
                        TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index
                    )
                    .join(
                        DagRun,
                        (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id),
                    )
                    .where(
                        or_(DagRun.start_date.is_(None), DagRun.start_date <= handle.created_at),
                        or_(DagRun.end_date.is_(None), DagRun.end_date >= handle.created_at),
                    )
                ).all()
        except Exception as exc:  # noqa: BLE001
            log.warning("reaper: cannot search the metadata DB for runner %s: %s", handle.resource_id, exc)
            return None
        for dag_id, run_id, task_id, map_index in rows:
            if label_value(dag_id) != dag_tag or label_value(task_id) != task_tag:
                continue
            if Lineage(dag_id, run_id, task_id, map_index).key == handle.lineage_key:
                return dag_id, run_id
        return None


class TaskSdkRuns(NoDagRuns):
    """DAG run states through the Task SDK (inside a task, where the metadata DB is off limits)."""

    def __init__(self, ti: Any) -> None:
        self.ti = ti

    def state(self, dag_id: str, run_id: str) -> str | None:
        try:
            state = self.ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
            return str(getattr(state, "value", state)) if state else None
        except Exception as exc:  # noqa: BLE001 - an unknown run is not a reason to fail the sweep
            log.warning("reaper: no state for DAG run %s/%s: %s", dag_id, run_id, exc)
            return None


@dataclass
class Action:
    """What the sweep did (or would do) with one runner."""

    conn_id: str
    backend: str
    resource_id: str
    lineage_key: str
    decision: str  # "reap", "keep", "foreign"
    reason: str
    dag_id: str | None = None
    run_id: str | None = None
    dag_run_state: str | None = None
    result: str = ""
    evidence: str = ""


@dataclass
class SweepReport:
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    #: conn_id -> error, for backends that could not be listed (or a teardown that failed)
    errors: dict[str, str] = field(default_factory=dict)
    conn_ids: list[str] = field(default_factory=list)

    def by(self, decision: str) -> list[Action]:
        return [a for a in self.actions if a.decision == decision]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "conn_ids": self.conn_ids,
            "reaped": [a.resource_id for a in self.by("reap")],
            "kept": [a.resource_id for a in self.by("keep")],
            "foreign": [a.resource_id for a in self.by("foreign")],
            "errors": self.errors,
            "actions": [asdict(a) for a in self.actions],
        }


def configured_conn_ids(extra: Iterable[str] = (), use_db: bool = True) -> list[str]:
    """Runner Connections to sweep: every configured one (see
    :func:`~airflow_provider_runners.backends.registry.configured_conn_ids`) plus ``extra`` and
    ``[runners] reaper_conn_ids``."""
    configured = setting("reaper_conn_ids") or ""
    named = [*extra, *(c.strip() for c in configured.split(",") if c.strip())]
    ids, errors = all_conn_ids(named, use_db=use_db)
    for error in errors:
        log.info("reaper: %s (sweeping the others)", error)
    return ids


def decide(
    handle: RunnerHandle,
    stale: bool,
    now: datetime,
    run: tuple[str, str] | None,
    run_state: str | None,
    record: RunnerRecord | None = None,
) -> tuple[str, str]:
    """``(decision, reason)`` for one runner; see the table in the module docstring."""
    if handle.tags.get("managed-by") != MANAGED_BY:
        return "foreign", "no managed-by tag: not ours, never touched"
    if handle.expires_at <= now:
        return "reap", f"expired at {handle.expires_at.isoformat()}"
    if stale:
        return "reap", "stale (its process died)"
    if (
        record is not None
        and heartbeat.expired(record, now.timestamp())
        and handle.tags.get(KEEP_TAG) != "true"
    ):
        last = datetime.fromtimestamp(record.last_heartbeat, UTC).isoformat()
        return "reap", f"no heartbeat since {last} (heartbeat_expiry {heartbeat.heartbeat_expiry():.0f}s)"
    if run is None:
        return "keep", f"DAG run unknown; expires {handle.expires_at.isoformat()}"
    if run_state in ENDED_STATES and handle.tags.get(KEEP_TAG) != "true":
        return "reap", f"DAG run {run[0]}/{run[1]} ended ({run_state}) without tearing it down"
    return "keep", f"DAG run {run[0]}/{run[1]} is {run_state or 'unknown'}"


def sweep(
    conn_ids: Iterable[str] | None = None,
    *,
    dry_run: bool = False,
    runs: DagRunLookup | None = None,
    registry: RunnerRegistry | None = None,
    now: datetime | None = None,
    use_db: bool = True,
    backend_factory: Callable[[str], Any] | None = None,
) -> SweepReport:
    """One sweep over ``conn_ids`` (default: :func:`configured_conn_ids`). Never raises for one
    backend's failure: it lands in ``report.errors`` and the others are swept.

    ``backend_factory`` builds a backend for a conn_id (default: ``get_backend``, looked up at
    call time so ``testing.contract.use_backend`` reaches the reaper too)."""
    from airflow_provider_runners.governance.budget import safe_registry

    now = now or datetime.now(UTC)
    runs = runs or (MetadataDbRuns() if use_db else NoDagRuns())
    registry = safe_registry(registry)
    ids = sorted(set(conn_ids)) if conn_ids else configured_conn_ids(use_db=use_db)
    report = SweepReport(dry_run=dry_run, conn_ids=ids)
    records = _records(registry)
    seen: set[tuple[str, str]] = set()
    factory = backend_factory or get_backend
    for conn_id in ids:
        try:
            backend = factory(conn_id)
            pooled = _prune_pools(backend, conn_id, now, dry_run, report)
            live = list(backend.list_managed())
            stale = list(backend.stale()) if isinstance(backend, DetectsStale) else []
        except Exception as exc:  # noqa: BLE001 - report it, sweep the others
            log.error("reaper: cannot list runners of %s: %s", conn_id, exc)
            report.errors[conn_id] = f"{type(exc).__name__}: {exc}"
            continue
        listed = {h.resource_id for h in [*live, *stale]}
        ours = [h for h in live if h.tags.get("managed-by") == MANAGED_BY]  # docs/metrics.md
        metrics.live_runners(backend.name, ours, {h.resource_id: handle_rate(h) or 0.0 for h in ours})
        for handle, is_stale in [*((h, False) for h in live), *((h, True) for h in stale)]:
            if (handle.backend, handle.resource_id) in seen or handle.resource_id in pooled:
                continue
            seen.add((handle.backend, handle.resource_id))
            report.actions.append(
                _one(backend, conn_id, handle, is_stale, now, runs, registry, records, dry_run, report)
            )
        if not dry_run:
            _reconcile(registry, records, backend, conn_id, listed, now.timestamp() - RECONCILE_GRACE_S)
    for action in report.actions if not dry_run else ():  # docs/metrics.md
        failed = action.decision == "reap" and action.result.startswith("teardown failed")
        metrics.reaper_action(action.backend, "error" if failed else action.decision)
    return report


def _prune_pools(backend: Any, conn_id: str, now: datetime, dry_run: bool, report: SweepReport) -> set[str]:
    """EC2 warm pools: terminate idle pooled hosts past expiry or their pool's idle ttl (a stopped
    host cannot run its own timer; docs/ec2.md). Returns the pooled hosts handled here."""
    if getattr(backend, "name", None) != "ec2":
        return set()
    from airflow_provider_runners.backends.ec2.warm_pool import prune

    errors: list[str] = []
    try:
        actions = prune(backend, now, report_only=dry_run, errors=errors)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad warm_pools extra: the runners are still swept
        actions, errors = [], [f"{type(exc).__name__}: {exc}"]
    for n, error in enumerate(errors):
        report.errors[f"{conn_id}:warm-pool:{n}"] = error
    for a in actions:
        decision = "reap" if a.action == "terminate" else "keep"
        report.actions.append(
            Action(
                conn_id,
                "ec2",
                a.instance_id,
                "",
                decision,
                f"warm pool {a.pool}: {a.reason}",
                result=a.result,
            )
        )
    return {a.instance_id for a in actions}


def _records(registry: RunnerRegistry) -> dict[str, RunnerRecord]:
    try:
        return {r.key: r for r in registry.records()}
    except Exception as exc:  # noqa: BLE001
        log.warning("reaper: runner registry unreadable (%s): DAG runs only from the metadata DB", exc)
        return {}


def _one(
    backend: Any,
    conn_id: str,
    handle: RunnerHandle,
    stale: bool,
    now: datetime,
    runs: DagRunLookup,
    registry: RunnerRegistry,
    records: dict[str, RunnerRecord],
    dry_run: bool,
    report: SweepReport,
) -> Action:
    record = records.get(handle.lineage_key)
    run = (record.dag_id, record.run_id) if record and record.dag_id and record.run_id else None
    if run is None and handle.tags.get("managed-by") == MANAGED_BY:
        run = runs.find_run(handle)
    run_state = runs.state(*run) if run else None
    decision, reason = decide(handle, stale, now, run, run_state, record)
    action = Action(
        conn_id=conn_id,
        backend=handle.backend,
        resource_id=handle.resource_id,
        lineage_key=handle.lineage_key,
        decision=decision,
        reason=reason,
        dag_id=run[0] if run else None,
        run_id=run[1] if run else None,
        dag_run_state=run_state,
    )
    if decision != "reap" or dry_run:  # no heartbeat here: the reaper does not hold the runner
        return action
    try:
        result = backend.teardown(handle)
        action.result = result.message
        teardown = {"existed": result.existed, "message": result.message, **dict(result.details)}
        outcome = "success"
    except Exception as exc:  # noqa: BLE001 - report it; the backstop still ends the runner
        action.result = f"teardown failed: {exc}"
        teardown = {"error": f"{type(exc).__name__}: {exc}"}
        outcome = "failed"
        report.errors[f"{conn_id}:{handle.resource_id}"] = action.result
    if outcome == "success":
        quietly(registry.end, handle.lineage_key, f"reaped: {reason}"[:200])
    action.evidence = _record_evidence(handle, action, outcome, teardown, now)
    return action


def _record_evidence(
    handle: RunnerHandle, action: Action, outcome: str, teardown: dict[str, Any], now: datetime
) -> str:
    """Append a ``reap`` entry to the runner's chain; return where (or why not)."""
    from airflow_provider_runners.evidence.callbacks import _cost, _runner_summary
    from airflow_provider_runners.evidence.ledger import append

    dag_id = action.dag_id or handle.tags.get("dag-id") or "unknown-dag"
    run_id = action.run_id or "unknown-run"
    payload = {
        "outcome": outcome,
        "task_id": "reaper",
        "reason": action.reason,
        "dag_run": {"dag_id": action.dag_id, "run_id": action.run_id, "state": action.dag_run_state},
        "runner": _runner_summary(handle),
        "facts": {"teardown": teardown, "conn_id": action.conn_id},
        "timings": {"ended_at": now.isoformat()},
        "cost": _cost("teardown", handle, {}, now),
    }
    from airflow_provider_runners.evidence.ledger import event_key

    key = event_key(dag_id, run_id, "reaper", -1, handle.resource_id, "reap")
    if action.dag_id and action.run_id:  # a provision failed from outside left no entry: say so first
        from airflow_provider_runners.evidence.callbacks import record_killed_provision

        record_killed_provision(
            dag_id=dag_id,
            run_id=run_id,
            lineage_key=handle.lineage_key,
            provision_task_id=handle.tags.get("task-id") or "provision",
            handle=handle,
            noticed_by="reaper",
        )
    try:
        entry = append(
            dag_id, run_id, handle.lineage_key, "reap", payload, event_key=key, terminal=outcome == "success"
        )
    except Exception as exc:  # the teardown happened: say the entry is missing
        log.exception("reaper: evidence for %s not written", handle.resource_id)
        return f"not written: {exc}"
    return f"{dag_id}/{run_id}/{handle.lineage_key} seq {entry['seq']}"


def _reconcile(
    registry: RunnerRegistry,
    records: dict[str, RunnerRecord],
    backend: Any,
    conn_id: str,
    listed: set[str],
    before: float,
) -> None:
    """End registry records of this backend that it no longer lists (the runner is gone)."""
    for record in records.values():
        gone = (
            record.status in ("running", "draining", "idle")
            and record.conn_id == conn_id
            and record.backend == backend.name
            and record.resource_id
            and record.resource_id not in listed
            and record.last_heartbeat < before
        )
        if gone and quietly(registry.end, record.key, "gone: not listed by its backend") and record.dag_id:
            _record_backstop_end(record)


def _record_backstop_end(record: RunnerRecord) -> None:
    """The runner of ``record`` is gone and nobody of ours ended it (its registry record was still
    live): it ended by its own backstop (ttl / idle timeout) or by hand. Close its chain."""
    from airflow_provider_runners.evidence.callbacks import record_end

    record_end(
        dag_id=record.dag_id,
        run_id=record.run_id,
        lineage_key=record.key,
        by="backstop",
        reason="no longer listed by its backend: ended by its ttl / idle timeout backstop, or by hand",
        results=[{"resource_id": record.resource_id, "existed": False, "message": "gone before the sweep"}],
        task_id=record.task_id or "reaper",
        map_index=record.map_index,
        try_number=record.resource_id,
    )
