"""Deferrable wait until a runner is ready: :class:`RunnerReadyTrigger`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_runners.core.backend import RunnerState
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.triggers.poller import SharedStatusPoller

PROGRESS_EVERY_S = 30.0


class RunnerReadyTrigger(BaseTrigger):
    """Wait in the triggerer until the runner in ``handle`` is READY, FAILED or GONE, or ``deadline``.

    Yields exactly one event ``{"status": "ready"|"failed"|"timeout", "handle": {...}, "message": str}``.
    It has no side effects while waiting, so running it twice (triggerer failover) is safe.
    Only a user killing the task (mark failed / success, clear; Airflow >= 3.3) tears the
    runner down, in :meth:`on_kill`; a triggerer restart does not.
    """

    def __init__(
        self,
        conn_id: str,
        handle: dict[str, Any],
        deadline: str,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.handle = handle
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "handle": self.handle,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
            },
        )

    async def _backend(self) -> Any:
        from airflow_provider_runners.backends.registry import get_backend

        return await asyncio.to_thread(get_backend, self.conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        handle = RunnerHandle.from_xcom(self.handle)
        deadline = datetime.fromisoformat(self.deadline)
        try:
            backend = await self._backend()
        except Exception as exc:  # noqa: BLE001 - reported as a failed event, never lost
            yield TriggerEvent({"status": "failed", "handle": handle.to_xcom(), "message": f"backend: {exc}"})
            return
        poller = SharedStatusPoller.for_backend(backend, self.poll_interval)
        started = time.monotonic()
        last_progress = started
        last_message = "no status yet"
        while True:
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            try:
                # Bounded by the deadline: while the status API keeps failing, the poller retries
                # with backoff and this waiter would otherwise never get an answer.
                status = await asyncio.wait_for(poller.next_status(handle), timeout=max(remaining, 0.0) + 1.0)
            except TimeoutError:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "handle": handle.to_xcom(),
                        "message": f"not ready by {self.deadline}: the status API did not answer "
                        f"(last: {last_message}); see the triggerer log",
                    }
                )
                return
            last_message = status.message
            if status.state is RunnerState.READY:
                ready = handle.evolve(endpoints=dict(status.endpoints), details=dict(status.details))
                yield TriggerEvent({"status": "ready", "handle": ready.to_xcom(), "message": status.message})
                return
            if status.state in (RunnerState.FAILED, RunnerState.GONE):
                yield TriggerEvent(
                    {
                        "status": "failed",
                        "handle": handle.to_xcom(),
                        "message": f"{status.state.value}: {status.message}",
                    }
                )
                return
            now = time.monotonic()
            if datetime.now(UTC) >= deadline:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "handle": handle.to_xcom(),
                        "message": f"not ready by {self.deadline} (last: {status.message})",
                    }
                )
                return
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                self.log.info(
                    "waiting for runner %s: %s (%.0fs elapsed)",
                    handle.resource_id,
                    status.message,
                    now - started,
                )

    async def on_kill(self) -> None:
        """A user killed the deferred provision task: end the runner it was waiting for."""
        handle = RunnerHandle.from_xcom(self.handle)
        backend = await self._backend()
        result = await asyncio.to_thread(backend.teardown, handle)
        self.log.info("task killed: tore down runner %s (%s)", handle.resource_id, result.message)
