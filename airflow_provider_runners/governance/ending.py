"""The end of a runner, whoever learns of it: :func:`end_runners` tears down every runner of a
lineage (the handles known plus whatever is still tagged with the lineage key) and ends their
records in the live-runner index. Used by the provision operator and its ``on_kill``, the
trigger's ``on_kill``, the provision's final failure callback and the teardown task
(docs/architecture.md, "A failed provision leaves nothing behind"). Nothing to clean up by hand:
it only calls each backend's idempotent ``teardown``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from airflow_provider_runners.core.backend import Backend
from airflow_provider_runners.core.handles import RunnerHandle

log = logging.getLogger(__name__)


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
    from airflow_provider_runners.exceptions import RunnerNotFoundError
    from airflow_provider_runners.governance import budget

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
