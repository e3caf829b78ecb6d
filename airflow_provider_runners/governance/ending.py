"""The end of a runner, whoever learns of it: :func:`end_runners` tears down every runner of a
lineage (the handles known plus whatever is still tagged with the lineage key) and ends their
records in the live-runner index. Used by the provision operator and its ``on_kill``, the
trigger's ``on_kill``, the provision's final failure callback and the teardown task
(docs/architecture.md, "A failed provision leaves nothing behind"). Nothing to clean up by hand:
it only calls each backend's idempotent ``teardown``, retrying the errors its map calls
TRANSIENT (``core/errors.py``) and taking NOT_FOUND as "already gone"."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from airflow_provider_runners.core.backend import Backend, TeardownResult
from airflow_provider_runners.core.errors import ErrorKind, describe_error
from airflow_provider_runners.core.handles import RunnerHandle

log = logging.getLogger(__name__)


#: Who may end a runner and record it (``by`` in an ``end`` evidence entry).
ENDERS = ("provision failure", "provision on_kill", "trigger on_kill", "owner task", "backstop")


#: Seconds to wait before each retry of a teardown that failed transiently (so 3 tries in all).
TEARDOWN_RETRY_DELAYS_S: tuple[float, ...] = (2.0, 5.0)


def teardown_retrying(
    backend: Backend,
    handle: RunnerHandle,
    delays: Iterable[float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TeardownResult:
    """``backend.teardown(handle)``, tried again after each of ``delays`` while it fails with an
    error the backend's map calls TRANSIENT; NOT_FOUND is success (``existed=False``). A
    PERMANENT error, or the last transient one, is raised."""
    waits = list(TEARDOWN_RETRY_DELAYS_S if delays is None else delays)
    while True:
        try:
            return backend.teardown(handle)
        except Exception as exc:
            kind = backend.classify_error(exc)
            if kind is ErrorKind.NOT_FOUND:
                return TeardownResult(existed=False, message=f"already gone: {describe_error(exc)}")
            if kind is not ErrorKind.TRANSIENT or not waits:
                raise
            delay = waits.pop(0)
            log.warning(
                "teardown of %s failed transiently (%s); retrying in %.0fs",
                handle.resource_id,
                describe_error(exc),
                delay,
            )
            sleep(delay)


def end_runners(
    backend: Backend,
    handles: Iterable[RunnerHandle | None],
    lineage_key: str | None,
    reason: str,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Tear down every runner of a lineage: the ``handles`` known (XCom, an event, memory) and
    whatever is still tagged with ``lineage_key`` (a try that died before pushing its handle).
    Idempotent: a runner already gone is reported with ``existed: False``. Each runner's
    registry record is ended. Transient teardown errors are retried (:func:`teardown_retrying`).
    Returns one result per runner; a teardown error is a result (``error``), never an
    exception — the caller still records what it could do."""
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
            result = teardown_retrying(backend, handle, sleep=sleep)
            entry.update(existed=result.existed, message=result.message, **dict(result.details))
        except Exception as exc:  # noqa: BLE001 - reported; the reaper and the backstop remain
            entry.update(
                existed=None,
                message=f"teardown failed ({backend.classify_error(exc).value}): {exc}",
                error=f"{type(exc).__name__}: {exc}",
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
