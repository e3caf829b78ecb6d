"""Task callbacks that turn XCom into evidence entries, on success *and* failure.

Operators push two small XComs: the handle (``runner_handle``, as soon as the resource
exists) and the facts they gathered (``runner_facts``). The callbacks below run after the
task ends, whatever the outcome, read those XComs and append one redacted entry to the
runner's chain in the ledger. Writing evidence never fails the task: a ledger error is
logged loudly instead.

Each entry carries the event key (dag, run, task, map index, try, event): Airflow may run a
callback twice (in the task, then in the dag-processor after a heartbeat timeout), and the
ledger writes the first one only. The teardown task's success entry, and a provision's final
failure entry once its cleanup ended everything, are *terminal* (docs/evidence.md). A provision's
final failure callback is also a cleanup point: it tears down every runner of the lineage, also
when the dag-processor runs it for a task that was failed from outside (docs/architecture.md).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from airflow_provider_runners.core.catalog import BillingRule
from airflow_provider_runners.core.handles import FACTS_XCOM_KEY, HANDLE_XCOM_KEY, RunnerHandle
from airflow_provider_runners.core.lineage import Lineage, sibling_map_index
from airflow_provider_runners.core.prices import estimate_cost, handle_rate

log = logging.getLogger(__name__)
_NO_MINIMUM = BillingRule(minimum_seconds=0)
#: XCom key a work task pushes when it starts: its try number, for the teardown task to record
#: a try that was killed before its own callback could (SIGKILL, OOM).
WORK_TRY_XCOM_KEY = "runner_work_try"


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

    def record(self, context: Any) -> dict[str, Any] | None:
        from airflow_provider_runners.evidence.ledger import append, chain_dir, event_key, ledger_root

        ti = context["ti"]
        handle = self._handle(context)
        facts = _pull(ti, ti.task_id, FACTS_XCOM_KEY) or {}
        cleanup: list[dict[str, Any]] | None = None
        if self.event == "provision" and self.outcome == "failed":
            cleanup = self._end_lineage(context, handle)
            facts = {**facts, "lineage_cleanup": cleanup}
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
        if self.event == "teardown" and handle is None:
            chain = chain_dir(ledger_root(), ti.dag_id, ti.run_id, lineage_key)
            if not chain.exists():  # the provision never ran (skipped): no runner story to end
                log.info("evidence: nothing was provisioned for %s: no teardown entry", lineage_key)
                return None
        terminal = (self.event == "teardown" and self.outcome == "success") or (
            cleanup is not None and all(r.get("error") is None for r in cleanup)
        )
        key = event_key(
            ti.dag_id,
            ti.run_id,
            ti.task_id,
            getattr(ti, "map_index", -1),
            getattr(ti, "try_number", None),
            self.event,
        )
        entry = append(
            ti.dag_id, ti.run_id, lineage_key, self.event, payload, event_key=key, terminal=terminal
        )
        if cleanup and terminal and not entry.get("terminal"):
            # this try's entry was already written (by the task itself, as a success): the end
            # of the runner still gets its own record
            record_end(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                lineage_key=lineage_key,
                by="provision failure",
                reason=str(context.get("exception") or "provision failed"),
                results=cleanup,
                task_id=ti.task_id,
                map_index=getattr(ti, "map_index", -1),
                try_number=getattr(ti, "try_number", None),
                handle=handle,
            )
        log.info(
            "evidence: %s/%s recorded as seq %s (%s)", self.event, self.outcome, entry["seq"], lineage_key
        )
        return entry

    def _fallback_lineage(self, context: Any) -> str:
        return Lineage.from_context(context, task_id=self.provision_task_id).key

    def _end_lineage(self, context: Any, handle: RunnerHandle | None) -> list[dict[str, Any]]:
        """A provision failed for good (no retry follows): tear down every runner of its lineage.

        Runs wherever Airflow runs the failure callback — in the task after it raised, or in the
        dag-processor for a task failed from outside (heartbeat timeout, executor state
        mismatch), where the operator's own cleanup never ran."""
        from airflow_provider_runners.backends.registry import get_backend
        from airflow_provider_runners.governance.ending import end_runners

        task = context.get("task")
        conn_id = handle.conn_id if handle else getattr(task, "conn_id", None)
        if not conn_id:
            return []
        try:
            backend = get_backend(conn_id)
        except Exception as exc:  # noqa: BLE001 - reported in the entry; the reaper remains
            return [{"resource_id": None, "existed": None, "message": f"backend: {exc}", "error": str(exc)}]
        return end_runners(backend, [handle], Lineage.from_context(context).key, "provision failed")


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
    pricing = handle.priced
    if pricing is None:  # priced from the catalog, fees included
        rate, vcpus, billing = float(handle_rate(handle) or 0.0), 0.0, _NO_MINIMUM
    else:
        rate, vcpus = pricing.usd_per_hour, pricing.vcpus
        billing = BillingRule(
            minimum_seconds=pricing.billing_minimum_s, per_vcpu_hour_fee=pricing.billing_vcpu_fee
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


class WorkStarted:
    """``on_execute_callback`` of a work task: push this try's number (XCom ``runner_work_try``),
    so that the teardown task can record a try that was killed before its callbacks ran."""

    def __repr__(self) -> str:
        return "WorkStarted()"

    def __call__(self, context: Any) -> None:
        try:
            ti = context["ti"]
            ti.xcom_push(key=WORK_TRY_XCOM_KEY, value=getattr(ti, "try_number", None))
        except Exception:
            log.exception("evidence: could not note the start of this work try")


def group_task_states(ti: Any, task_ids: Sequence[str]) -> dict[str, Any] | None:
    """This run's states of ``task_ids`` in one Execution API call, by name (``task_id``, or
    ``task_id_<map index>`` for a mapped one); None outside a task runner (``dag.test()``)."""
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(
            dag_id=ti.dag_id, task_ids=list(task_ids), run_ids=[ti.run_id]
        )
    except Exception as exc:  # noqa: BLE001 - not in a task runner (or an older Airflow)
        log.info("cannot read task states of %s (%s)", list(task_ids), exc)
        return None
    return dict(states.get(ti.run_id) or {})


def record_unrecorded_work(
    context: Any,
    provision_task_id: str,
    handle: RunnerHandle | None,
    lineage_key: str,
    states: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Called by the teardown task: append a ``work`` entry for every failed work task of the
    group whose last try left none (killed with SIGKILL, out of memory, its worker died: no
    callback ran). Keyed like the task's own entry, so a callback that still runs later (the
    dag-processor's, after a heartbeat timeout) does not write a second one.

    ``states``: this run's task states by name (``task_id`` or ``task_id_<map index>``), as
    :func:`group_task_states` read them for the teardown; None when they could not be read."""
    from airflow_provider_runners.evidence.ledger import (
        chain_dir,
        event_key,
        ledger_root,
        read_entries,
    )

    ti, task = context["ti"], context.get("task")
    work_ids = sorted(set(getattr(task, "upstream_task_ids", ())) - {provision_task_id})
    if not work_ids:
        return []
    if states is None:
        log.info("evidence: cannot read the work tasks' states: killed tries not checked")
        return []
    recorded: set[Any] | None = None  # the ledger is read only when a work task failed
    written = []
    for name, state in sorted(states.items()):
        if str(getattr(state, "value", state)) != "failed":
            continue
        task_id, map_index = _split_state_name(name, work_ids)
        if task_id is None:
            continue
        try_number = _pull(ti, task_id, WORK_TRY_XCOM_KEY, map_index)
        if try_number is None:
            continue  # it never started (or an older version ran it): nothing to say about a try
        key = event_key(ti.dag_id, ti.run_id, task_id, map_index, try_number, "work")
        if recorded is None:
            chain = chain_dir(ledger_root(), ti.dag_id, ti.run_id, lineage_key)
            recorded = {e.get("event_key") for e in read_entries(chain)}
        if key in recorded:
            continue
        message = (
            f"{task_id} try {try_number} ended failed without recording evidence "
            "(killed: SIGKILL, out of memory, or its worker died); noticed by the teardown task"
        )
        written.append(
            append_killed_work(
                ti.dag_id, ti.run_id, lineage_key, handle, task_id, map_index, try_number, ti.task_id, message
            )
        )
    return written


def append_killed_work(
    dag_id: str,
    run_id: str,
    lineage_key: str,
    handle: RunnerHandle | None,
    task_id: str,
    map_index: int,
    try_number: Any,
    noticed_by: str,
    message: str,
) -> dict[str, Any]:
    """Append the ``work``/``failed`` entry (``error.type: TaskKilled``) of a try that could not
    write its own, keyed like that try's own entry (a callback that runs later adds nothing)."""
    from airflow_provider_runners.evidence.ledger import append, event_key

    now = datetime.now(UTC)
    payload = {
        "outcome": "failed",
        "task_id": task_id,
        "map_index": map_index,
        "try_number": try_number,
        "runner": _runner_summary(handle),
        "facts": {"noticed_by": noticed_by},
        "timings": {"ended_at": now.isoformat()},
        "cost": _cost("work", handle, {}, now),
        "error": {"type": "TaskKilled", "message": message},
    }
    key = event_key(dag_id, run_id, task_id, map_index, try_number, "work")
    return append(dag_id, run_id, lineage_key, "work", payload, event_key=key)


def record_earlier_killed_tries(
    context: Any, lineage_key: str, handle: RunnerHandle | None
) -> list[dict[str, Any]]:
    """Called by a work task that owns its runner (operators/owned.py) when it starts a later
    try: append a ``work`` entry for each earlier try of this task instance that left none
    (killed: SIGKILL, out of memory, its worker died — no callback ran). Keyed like the try's
    own entry, so a callback that still runs later (the dag-processor's) writes nothing more."""
    from airflow_provider_runners.evidence.ledger import (
        chain_dir,
        event_key,
        ledger_root,
        read_entries,
    )

    ti = context["ti"]
    this_try = int(getattr(ti, "try_number", 1) or 1)
    if this_try <= 1:
        return []
    map_index = getattr(ti, "map_index", -1)
    chain = chain_dir(ledger_root(), ti.dag_id, ti.run_id, lineage_key)
    recorded = {e.get("event_key") for e in read_entries(chain)}
    written = []
    for try_number in range(1, this_try):
        if event_key(ti.dag_id, ti.run_id, ti.task_id, map_index, try_number, "work") in recorded:
            continue
        message = (
            f"{ti.task_id} try {try_number} ended without recording evidence "
            f"(killed: SIGKILL, out of memory, or its worker died); noticed by try {this_try}"
        )
        by = f"{ti.task_id} try {this_try}"
        written.append(
            append_killed_work(
                ti.dag_id, ti.run_id, lineage_key, handle, ti.task_id, map_index, try_number, by, message
            )
        )
    return written


def _split_state_name(name: str, task_ids: list[str]) -> tuple[str | None, int]:
    """``get_task_states`` names a mapped instance ``<task_id>_<map_index>``."""
    if name in task_ids:
        return name, -1
    head, _, tail = name.rpartition("_")
    if head in task_ids and tail.isdigit():
        return head, int(tail)
    return None, -1


def add_evidence_callbacks(task: Any, event: str, provision_task_id: str | None = None) -> None:
    """Append evidence callbacks for success, failure and retry to ``task`` (keeps existing ones);
    a work task also gets :class:`WorkStarted` as an ``on_execute_callback``."""
    slots: dict[str, str] = {
        "on_success_callback": "success",
        "on_failure_callback": "failed",
        "on_retry_callback": "up_for_retry",
    }
    if event == "work":
        existing_start = getattr(task, "on_execute_callback", None)
        starts = (
            existing_start if isinstance(existing_start, list) else [existing_start] if existing_start else []
        )
        if not any(isinstance(c, WorkStarted) for c in starts):
            task.on_execute_callback = [*starts, WorkStarted()]
    for attr, outcome in slots.items():
        callback: Callable[..., Any] = EvidenceCallback(event, outcome, provision_task_id)
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


def record_end(
    *,
    dag_id: str,
    run_id: str,
    lineage_key: str,
    by: str,
    reason: str,
    results: list[dict[str, Any]],
    task_id: str,
    map_index: int = -1,
    try_number: Any = None,
    handle: RunnerHandle | None = None,
) -> dict[str, Any] | None:
    """Append the terminal ``end`` entry for a runner ended outside the teardown task and the
    reaper (see docs/evidence.md). Written once per round; never raises (logs instead)."""
    from datetime import UTC, datetime

    from airflow_provider_runners.evidence.ledger import append, event_key
    from airflow_provider_runners.governance.ending import all_ended

    if not all_ended(results):
        log.error("runner of %s not (fully) ended by %s: %s; the reaper will retry", lineage_key, by, results)
        return None
    now = datetime.now(UTC)
    payload = {
        "outcome": "success",
        "by": by,
        "reason": reason,
        "task_id": task_id,
        "map_index": map_index,
        "try_number": try_number,
        "runner": _runner_summary(handle),
        "facts": {"teardown": results},
        "timings": {"ended_at": now.isoformat()},
        "cost": _cost("teardown", handle, {}, now),
    }
    try:
        return append(
            dag_id,
            run_id,
            lineage_key,
            "end",
            payload,
            event_key=event_key(dag_id, run_id, task_id, map_index, try_number, f"end:{by}"),
            terminal=True,
        )
    except Exception:
        log.exception("evidence: the end of runner %s (%s) was not recorded", lineage_key, by)
        return None


def try_of(handle: RunnerHandle | None) -> int | None:
    """The provision try that made ``handle`` (its attempt token ends in ``-t<try>``)."""
    token = getattr(handle, "attempt_token", None) or ""
    head, _, tail = str(token).rpartition("-t")
    return int(tail) if head and tail.isdigit() else None


def record_killed_provision(
    *,
    dag_id: str,
    run_id: str,
    lineage_key: str,
    provision_task_id: str,
    handle: RunnerHandle | None,
    noticed_by: str,
    map_index: int = -1,
    try_number: Any = None,
) -> dict[str, Any] | None:
    """Append the ``provision``/``failed`` entry of a provision that was ended from outside
    without running its callbacks (its run marked failed over the REST API while it was
    deferred, its process killed): called by the teardown task and the reaper when the runner's
    chain has no provision entry. Keyed like the provision's own entry (try from the handle's
    attempt token), so a callback that still runs later writes nothing; never raises."""
    from airflow_provider_runners.evidence.ledger import (
        append,
        chain_dir,
        event_key,
        ledger_root,
        read_entries,
    )

    try:
        entries = read_entries(chain_dir(ledger_root(), dag_id, run_id, lineage_key))
        if any(e.get("event") == "provision" for e in entries):
            return None
        tries = try_number if try_number is not None else try_of(handle)
        now = datetime.now(UTC)
        payload = {
            "outcome": "failed",
            "task_id": provision_task_id,
            "map_index": map_index,
            "try_number": tries,
            "runner": _runner_summary(handle),
            "facts": {"noticed_by": noticed_by},
            "timings": {"ended_at": now.isoformat()},
            "cost": _cost("provision", handle, {}, now),
            "error": {
                "type": "ProvisionKilled",
                "message": f"{provision_task_id} try {tries} ended without recording evidence (failed from "
                f"outside: its run marked failed or timed out, or its process killed); noticed by {noticed_by}",
            },
        }
        key = event_key(dag_id, run_id, provision_task_id, map_index, tries, "provision")
        return append(dag_id, run_id, lineage_key, "provision", payload, event_key=key)
    except Exception:
        log.exception("evidence: the killed provision of %s was not recorded", lineage_key)
        return None
