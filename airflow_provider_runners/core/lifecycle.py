"""Adopt-or-replace: the retry-safe first step of every provision, shared by all backends.

A try first looks for a runner tagged with its task instance's lineage key (an earlier try
may have created one and died before finishing). Healthy (PENDING or READY): adopt it.
Broken (FAILED: an ERROR cluster, a terminated host, a CrashLoopBackOff pod): tear it down
first — it may still bill — then create anew with this try's attempt token.

And the other end: :func:`end_runners` tears down every runner of a lineage (known handles plus
whatever still carries the lineage tag) for whoever learns that a provision failed or was
killed, and :func:`record_end` writes the one terminal evidence entry for it
(docs/architecture.md, "A failed provision leaves nothing behind").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

from airflow_provider_runners.core.backend import Backend, ProvisionRequest
from airflow_provider_runners.core.handles import RunnerHandle

Acquisition = Literal["created", "adopted", "replaced"]
log = logging.getLogger(__name__)


def acquire(backend: Backend, request: ProvisionRequest) -> tuple[RunnerHandle, Acquisition]:
    """Return a handle for the request's lineage: adopted if healthy, else newly created."""
    existing = backend.find(request.lineage.key)
    if existing is not None:
        status = backend.status(existing)
        if status.is_healthy:
            log.info("adopting runner %s from an earlier try (%s)", existing.resource_id, status.message)
            return existing.evolve(adopted=True), "adopted"
        log.warning(
            "runner %s from an earlier try is %s (%s): tearing it down before creating a new one",
            existing.resource_id,
            status.state.value,
            status.message,
        )
        backend.teardown(existing)
        return backend.create(request), "replaced"
    return backend.create(request), "created"


# -- the end of a runner, whoever learns of it -------------------------------------------------
#: Who may end a runner and record it (``by`` in an ``end`` evidence entry).
ENDERS = ("provision failure", "provision on_kill", "trigger on_kill", "backstop")


def end_runners(
    backend: Backend,
    handles: Iterable[RunnerHandle | None],
    lineage_key: str | None,
    reason: str,
) -> list[dict[str, Any]]:
    """Tear down every runner of a lineage: the ``handles`` known (XCom, an event, memory) and
    whatever is still tagged with ``lineage_key`` (a try that died before pushing its handle).
    Idempotent: a runner already gone is reported with ``existed: False``. Each runner's
    registry record is ended. Returns one result per runner; a teardown error is a result
    (``error``), never an exception — the caller still records what it could do."""
    from airflow_provider_runners.governance import budget
    from airflow_provider_runners.exceptions import RunnerNotFoundError

    found: dict[str, RunnerHandle] = {}
    for handle in handles:
        if handle is not None:
            found.setdefault(handle.resource_id, handle)
    if lineage_key:
        try:
            orphan = backend.find(lineage_key)
        except Exception as exc:  # noqa: BLE001 - the handles known are still torn down
            log.warning("could not search runners of lineage %s: %s", lineage_key, exc)
            orphan = None
        if orphan is not None and orphan.resource_id not in found:
            log.warning("found runner %s by its lineage tag only: tearing it down too", orphan.resource_id)
            found[orphan.resource_id] = orphan
    results = []
    for handle in found.values():
        entry: dict[str, Any] = {"resource_id": handle.resource_id}
        try:
            result = backend.teardown(handle)
            entry.update(existed=result.existed, message=result.message, **dict(result.details))
        except RunnerNotFoundError as exc:
            entry.update(existed=False, message=f"already gone: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported; the reaper and the backstop remain
            entry.update(
                existed=None, message=f"teardown failed: {exc}", error=f"{type(exc).__name__}: {exc}"
            )
            results.append(entry)
            continue
        budget.release(handle, reason[:200])
        log.info("ended runner %s (%s): %s", handle.resource_id, reason, entry["message"])
        results.append(entry)
    return results


def all_ended(results: list[dict[str, Any]]) -> bool:
    """True when no teardown in ``results`` failed (nothing of the lineage is left running)."""
    return not any("error" in r for r in results)


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

    from airflow_provider_runners.evidence.callbacks import _cost, _runner_summary
    from airflow_provider_runners.evidence.ledger import append, event_key

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
