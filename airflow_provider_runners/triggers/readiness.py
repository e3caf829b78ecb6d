"""Deferrable wait until a runner is ready: :class:`RunnerReadyTrigger`."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_runners.core.errors import ErrorKind
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.waiting import ReadinessWait, Verdict, decide_error, utc_now
from airflow_provider_runners.exceptions import RunnerStatusError
from airflow_provider_runners.governance.heartbeat import SharedHeartbeats
from airflow_provider_runners.triggers.poller import SharedStatusPoller

#: A wait logs its first status at once, then a line when the status message changes (at most
#: one per PROGRESS_CHANGE_S), else one every PROGRESS_EVERY_S. Each line costs Airflow's
#: triggerer supervisor 1-2 ms (docs/benchmarks.md, a real triggerer): a line every 30 s per
#: wait was most of the CPU of 1000 waits.
PROGRESS_EVERY_S = 300.0
PROGRESS_CHANGE_S = 30.0


class _Progress:
    """When a wait last logged a progress line, and the status message it logged."""

    __slots__ = ("last_line", "logged", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.last_line = -math.inf
        self.logged: str | None = None


class RunnerReadyTrigger(BaseTrigger):
    """Wait in the triggerer until the runner in ``handle`` is READY, FAILED or GONE, or ``deadline``
    (the verdicts of ``core/waiting.py``, the same as the operator's wait in the task).

    Yields exactly one event ``{"status": "ready"|"failed"|"timeout", "handle": {...}, "message": str}``.
    It has no side effects while waiting, so running it twice (triggerer failover) is safe.
    Only a user killing the task (mark failed / success, clear; Airflow >= 3.3) tears the
    runner down, in :meth:`on_kill`, which also records the end in the evidence chain; a
    triggerer restart does not.

    ``not_before``: a "ready" event is not yielded before this time (ISO 8601). A trigger that
    fires within a second of the deferral can resume the task before the scheduler has
    processed the exit of the process that deferred, and the scheduler then fails the resumed
    task ("state mismatch": apache/airflow #66374, #67287, #71580, #72716). Failures and
    timeouts are not delayed. ``provision_ti``: the provision task instance (dag_id, run_id, task_id,
    map_index, try_number, lineage_key), for the evidence entry of :meth:`on_kill`.
    """

    def __init__(
        self,
        conn_id: str,
        handle: dict[str, Any],
        deadline: str,
        poll_interval: float | None = None,
        not_before: str | None = None,
        provision_ti: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.handle = handle
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.not_before = not_before
        self.provision_ti = provision_ti
        #: The clock the deadline is checked against (not serialized; tests inject one).
        self.clock: Callable[[], datetime] = utc_now

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "handle": self.handle,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "not_before": self.not_before,
                "provision_ti": self.provision_ti,
            },
        )

    async def _backend(self) -> Any:
        """The Connection's backend, one read for the triggers that start together (shared_backend.py)."""
        from airflow_provider_runners.triggers.shared_backend import backend_for

        return await backend_for(self.conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        handle = RunnerHandle.from_xcom(self.handle)
        deadline = datetime.fromisoformat(self.deadline)
        try:
            backend = await self._backend()
        except Exception as exc:  # noqa: BLE001 - reported as a failed event, never lost
            yield TriggerEvent({"status": "failed", "handle": handle.to_xcom(), "message": f"backend: {exc}"})
            return
        poller = SharedStatusPoller.for_backend(backend, self.poll_interval)
        # the trigger holds the runner while it waits: one registry write for all of them
        with SharedHeartbeats.for_loop().holding(handle.lineage_key):
            payload = await self._wait(poller, backend, handle, deadline)
        yield TriggerEvent(payload)

    async def _wait(
        self, poller: SharedStatusPoller, backend: Any, handle: RunnerHandle, deadline: datetime
    ) -> dict[str, Any]:
        """Poll until a verdict (READY, FAILED, timeout); return the payload of its one event."""
        wait = ReadinessWait(deadline, backend.classify_error, clock=self.clock)  # the operator's rules
        remaining = (deadline - self.clock()).total_seconds()
        try:
            # Bounded by the deadline: while the status API keeps failing, the poller retries
            # with backoff and this waiter would otherwise never get an answer. One timer for the
            # whole wait, not one per poll (a timer per waiter per poll was the largest part of a
            # poll's CPU in the trigger runner; docs/benchmarks.md, a real triggerer).
            async with asyncio.timeout(max(remaining, 0.0) + 1.0):
                return await self._poll(poller, wait, handle, deadline)
        except TimeoutError:
            return {
                "status": "timeout",
                "handle": handle.to_xcom(),
                "message": f"not ready by {self.deadline}: the status API did not answer "
                f"(last: {wait.last_message}); see the triggerer log",
            }

    async def _poll(
        self, poller: SharedStatusPoller, wait: ReadinessWait, handle: RunnerHandle, deadline: datetime
    ) -> dict[str, Any]:
        """The poll loop of :meth:`_wait`: the shared poller judges each status of ``handle`` with
        :meth:`_judge` (a progress line now and then) until one, or the poller's error, decides.
        One watch for the whole wait, not a future and a task wake-up per poll (docs/benchmarks.md,
        a real triggerer)."""
        judge = functools.partial(self._judge, wait=wait, handle=handle, progress=_Progress(time.monotonic()))
        try:
            payload: dict[str, Any] = await poller.watch(handle, judge)
        except RunnerStatusError as exc:  # permanent, not found, or transient past the cap
            decision = decide_error(
                exc.cause,
                ErrorKind(exc.kind),
                exc.errors_in_a_row,
                deadline,
                self.clock(),
                poller.max_transient,
            )
            verdict = decision.verdict.value if decision.final else "failed"  # the poller gave up
            return {"status": verdict, "handle": handle.to_xcom(), "message": decision.message}
        if payload["status"] == "ready":
            await self._dwell()
        return payload

    def _judge(
        self, status: Any, *, wait: ReadinessWait, handle: RunnerHandle, progress: _Progress
    ) -> dict[str, Any] | None:
        """The event payload when ``status`` decides the wait, else None (after a progress line
        when one is due). Called by the poller, on the event loop, in this trigger's context."""
        decision = wait.on_status(status)
        if decision.verdict is Verdict.READY:
            ready = handle.evolve(endpoints=dict(status.endpoints), details=dict(status.details))
            return {"status": "ready", "handle": ready.to_xcom(), "message": status.message}
        if decision.final:  # failed / timeout
            return {"status": decision.verdict.value, "handle": handle.to_xcom(), "message": decision.message}
        now = time.monotonic()
        since = now - progress.last_line
        if since >= PROGRESS_EVERY_S or (status.message != progress.logged and since >= PROGRESS_CHANGE_S):
            progress.last_line, progress.logged = now, status.message
            self.log.info(
                "waiting for runner %s: %s (%.0fs elapsed)",
                handle.resource_id,
                status.message,
                now - progress.started,
            )
        return None

    async def _dwell(self) -> None:
        """Wait until ``not_before`` (see the class docstring)."""
        if not self.not_before:
            return
        wait = (datetime.fromisoformat(self.not_before) - self.clock()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)

    async def on_kill(self) -> None:
        """A user killed the deferred provision task: end the runner it was waiting for (and
        any other runner of its lineage), and record that end — once — in its evidence chain, after
        the provision's own ``failed`` entry when it has none (its callbacks do not run)."""
        from airflow_provider_runners.evidence.callbacks import record_end, record_killed_provision
        from airflow_provider_runners.governance.ending import end_runners

        handle = RunnerHandle.from_xcom(self.handle)
        backend = await self._backend()
        who = self.provision_ti or {}

        def end_and_record() -> None:
            # One thread for both steps: Airflow bounds on_kill ([triggerer] on_kill_timeout, 30 s)
            # and cancels this coroutine past it, but a thread runs on — so a slow teardown
            # still gets its end entry instead of losing it between the two steps.
            results = end_runners(backend, [handle], handle.lineage_key, "provision killed")
            self.log.info("task killed: ended runner %s (%s)", handle.resource_id, results)
            if not who.get("dag_id") or not who.get("run_id"):
                self.log.warning(
                    "no task identity in this trigger (deferred by an older version): end not recorded"
                )
                return
            # the provision's callbacks do not run for a task failed from outside: its entry first
            record_killed_provision(
                dag_id=who["dag_id"],
                run_id=who["run_id"],
                lineage_key=handle.lineage_key,
                provision_task_id=who.get("task_id") or "provision",
                handle=handle,
                noticed_by="trigger on_kill",
                map_index=who.get("map_index", -1),
                try_number=who.get("try_number"),
            )
            record_end(
                dag_id=who["dag_id"],
                run_id=who["run_id"],
                lineage_key=handle.lineage_key,
                by="trigger on_kill",
                reason="the deferred provision task was killed (marked failed / success, cleared)",
                results=results,
                task_id=who.get("task_id") or "provision",
                map_index=who.get("map_index", -1),
                try_number=who.get("try_number"),
                handle=handle,
            )

        await asyncio.to_thread(end_and_record)
