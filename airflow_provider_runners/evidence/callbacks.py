"""Task callbacks that turn XCom into evidence entries, on success *and* failure.

Operators push two small XComs: the handle (``runner_handle``, as soon as the resource
exists) and the facts they gathered (``runner_facts``). The callbacks below run after the
task ends, whatever the outcome, read those XComs and append one redacted entry to the
runner's chain in the ledger. Writing evidence never fails the task: a ledger error is
logged loudly instead.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from airflow_provider_runners.core.catalog import BillingRule
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import Lineage, sibling_map_index
from airflow_provider_runners.core.prices import estimate_cost, handle_rate

log = logging.getLogger(__name__)
_NO_MINIMUM = BillingRule(minimum_seconds=0)


def _pull(ti: Any, task_id: str, key: str, map_index: int | None = None) -> Any:
    """XCom of ``task_id`` at ``map_index`` (default: this task instance's own)."""
    try:
        index = getattr(ti, "map_index", -1) if map_index is None else map_index
        return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=index)
    except Exception:  # pragma: no cover - XCom backend hiccup must not lose the entry
        log.exception("evidence: could not read XCom %s/%s", task_id, key)
        return None


class EvidenceCallback:
    """Append one evidence entry for the task that just ended.

    :param event: ``provision``, ``work`` or ``teardown``.
    :param outcome: ``success``, ``failed`` or ``up_for_retry`` (which callback slot it sits in).
    :param provision_task_id: where to find the runner handle when the task has none itself.
    """

    def __init__(self, event: str, outcome: str, provision_task_id: str | None = None) -> None:
        self.event = event
        self.outcome = outcome
        self.provision_task_id = provision_task_id

    def __repr__(self) -> str:
        return f"EvidenceCallback({self.event!r}, {self.outcome!r})"

    def __call__(self, context: Any) -> None:
        try:
            self.record(context)
        except Exception:
            log.exception("evidence: could not record %s/%s entry", self.event, self.outcome)

    def _handle(self, context: Any) -> RunnerHandle | None:
        ti = context["ti"]
        candidates = [_pull(ti, ti.task_id, HANDLE_XCOM_KEY)]
        task = context.get("task")
        candidates.append(getattr(task, "handle", None))
        if self.provision_task_id:
            index = sibling_map_index(context, self.provision_task_id)
            candidates.append(_pull(ti, self.provision_task_id, HANDLE_XCOM_KEY, index))
        for value in candidates:
            if value:
                try:
                    return RunnerHandle.from_xcom(value)
                except (ValueError, TypeError):
                    continue
        return None

    def record(self, context: Any) -> dict[str, Any]:
        from airflow_provider_runners.evidence.ledger import append

        ti = context["ti"]
        handle = self._handle(context)
        facts = _pull(ti, ti.task_id, FACTS_XCOM_KEY) or {}
        now = datetime.now(UTC)
        started = getattr(ti, "start_date", None)
        timings: dict[str, Any] = {"ended_at": now.isoformat()}
        if (
            self.event == "provision"
            and handle is not None
            and (started is None or handle.created_at < started)
        ):
            started = handle.created_at  # a deferred task restarts its clock on resume; the wait counts
        if started is not None:
            timings["started_at"] = started.isoformat()
            timings["duration_s"] = round((now - started).total_seconds(), 3)
        payload: dict[str, Any] = {
            "outcome": self.outcome,
            "task_id": ti.task_id,
            "map_index": getattr(ti, "map_index", -1),
            "try_number": getattr(ti, "try_number", None),
            "runner": _runner_summary(handle),
            "facts": facts,
            "timings": timings,
            "cost": _cost(self.event, handle, timings, now),
        }
        exc = context.get("exception")
        if exc is not None:
            payload["error"] = {
                "type": type(exc).__name__,
                "message": str(exc)[:2000],
                "where": "".join(traceback.format_exception_only(type(exc), exc))[-500:],
            }
        lineage_key = handle.lineage_key if handle else self._fallback_lineage(context)
        entry = append(ti.dag_id, ti.run_id, lineage_key, self.event, payload)
        log.info(
            "evidence: %s/%s recorded as seq %s (%s)", self.event, self.outcome, entry["seq"], lineage_key
        )
        return entry

    def _fallback_lineage(self, context: Any) -> str:
        return Lineage.from_context(context, task_id=self.provision_task_id).key


def _runner_summary(handle: RunnerHandle | None) -> dict[str, Any] | None:
    if handle is None:
        return None
    return {
        "backend": handle.backend,
        "runner_class": handle.runner_class,
        "resource_id": handle.resource_id,
        "conn_id": handle.conn_id,
        "environment": handle.environment,
        "profile": handle.profile,
        "created_at": handle.created_at.isoformat(),
        "expires_at": handle.expires_at.isoformat(),
        "adopted": handle.adopted,
        "attempt_token": handle.attempt_token,
        "tags": handle.tags,
        "endpoints": handle.endpoints,
    }


def _cost(
    event: str, handle: RunnerHandle | None, timings: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Provision: the hourly rate and the ttl ceiling; work: the window; teardown: the lifetime.

    Every entry gets one: no runner (e.g. refused by the budget guard) costs $0; a handle
    without pricing details (found by its tags) is priced from the catalog."""
    if handle is None:
        return {"basis": "no runner", **estimate_cost(0.0, 0.0, _NO_MINIMUM)}
    if handle.details.get("usd_per_hour") is None:  # priced from the catalog, fees included
        rate, vcpus = float(handle_rate(handle) or 0.0), 0.0
    else:
        rate = float(handle.details.get("usd_per_hour") or 0.0)
        vcpus = float(handle.details.get("vcpus") or 0.0)
    billing = BillingRule(
        minimum_seconds=int(handle.details.get("billing_minimum_s") or 0),
        per_vcpu_hour_fee=float(handle.details.get("billing_vcpu_fee") or 0.0),
    )
    if event == "provision":
        ceiling = (handle.expires_at - handle.created_at).total_seconds()
        return {"basis": "ttl ceiling", **estimate_cost(ceiling, rate, billing, vcpus)}
    if event == "teardown":
        lifetime = (now - handle.created_at).total_seconds()
        return {"basis": "lifetime", **estimate_cost(lifetime, rate, billing, vcpus)}
    window = BillingRule(
        minimum_seconds=0, per_vcpu_hour_fee=billing.per_vcpu_hour_fee
    )  # no minimum per window
    return {"basis": "work window", **estimate_cost(timings.get("duration_s", 0.0), rate, window, vcpus)}


def add_evidence_callbacks(task: Any, event: str, provision_task_id: str | None = None) -> None:
    """Append evidence callbacks for success, failure and retry to ``task`` (keeps existing ones)."""
    slots: dict[str, str] = {
        "on_success_callback": "success",
        "on_failure_callback": "failed",
        "on_retry_callback": "up_for_retry",
    }
    for attr, outcome in slots.items():
        callback = EvidenceCallback(event, outcome, provision_task_id)
        existing = getattr(task, attr, None)
        if existing is None:
            merged: list[Callable[..., Any]] = [callback]
        elif isinstance(existing, list):
            ours = [c for c in existing if isinstance(c, EvidenceCallback)]
            if ours:  # already recording: only learn where the handle lives
                for cb in ours:
                    cb.provision_task_id = cb.provision_task_id or provision_task_id
                continue
            merged = [*existing, callback]
        else:
            merged = [existing, callback]
        setattr(task, attr, merged)
