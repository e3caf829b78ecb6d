"""Triggers of the sensors in :mod:`airflow_provider_runners.sensors`.

Each waits in the triggerer on a source shared through
:class:`~airflow_provider_runners.triggers.poller.SharedStatusPoller` (one API call per tick for
every waiter of the same account) and yields exactly one event
``{"status": "done"|"failed"|"timeout", "message": str, ...}``. They only read — no reservation,
no runner, nothing to clean up — so a triggerer failover that runs one twice changes nothing,
and killing the task needs no ``on_kill``. The deadline is in the trigger (the sensor's
``timeout``), so a timeout is an event the sensor turns into ``AirflowSensorTimeout`` (or a skip
with ``soft_fail``). A permanent error of the backend's API (its error map, ``core/errors.py``)
is a ``failed`` event with the backend's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_runners.backends.base import RunnerState
from airflow_provider_runners.exceptions import RunnerStatusError
from airflow_provider_runners.triggers.poller import SharedStatusPoller
from airflow_provider_runners.triggers.sources import (
    BenchInfo,
    BenchInventorySource,
    LineageSource,
    Probe,
    QueueDepthSource,
)


def _remaining(deadline: str) -> float:
    return (datetime.fromisoformat(deadline) - datetime.now(UTC)).total_seconds()


async def _backend(conn_id: str) -> Any:
    from airflow_provider_runners.triggers.shared_backend import backend_for

    return await backend_for(conn_id)


class _SensorTrigger(BaseTrigger):
    """Shared ``serialize``: every ``__init__`` argument, by name (see ``_fields``)."""

    _fields: tuple[str, ...] = ()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {name: getattr(self, name) for name in self._fields},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """:meth:`_run`'s events; a status call the poller gave up on (a permanent error of the
        backend's API, or too many transient ones in a row: ``RunnerStatusError``) is one
        ``failed`` event with its message."""
        try:
            async for event in self._run():
                yield event
        except RunnerStatusError as exc:
            yield TriggerEvent({"status": "failed", "message": str(exc)})

    def _run(self) -> AsyncIterator[TriggerEvent]:
        raise NotImplementedError

    async def _next(self, poller: SharedStatusPoller, probe: Any, deadline: str) -> tuple[bool, Any]:
        """(answered, status); not answered when the deadline passed first."""
        remaining = _remaining(deadline)
        if remaining <= 0:
            return False, None
        try:
            async with asyncio.timeout(remaining + 1.0):  # no task per wait, unlike wait_for
                return True, await poller.next_status(probe)
        except TimeoutError:
            return False, None


def bench_verdict(
    inventory: list[BenchInfo], place: str | None, tags: Mapping[str, str], min_free: int
) -> tuple[str, list[str], str]:
    """("done"|"waiting"|"failed", free matching bench names, message) for a bench sensor."""
    wanted = " ".join(([f"name={place}"] if place else []) + [f"{k}={v}" for k, v in sorted(tags.items())])
    matching = [b for b in inventory if b.matches(place, tags)]
    if not matching:
        there = "; ".join(
            f"{b.name} ({' '.join(f'{k}={v}' for k, v in sorted(b.tags.items()))})" for b in inventory
        )
        return "failed", [], f"no bench matches {wanted}; benches there: {there or 'none'}"
    free = sorted(b.name for b in matching if b.free)
    held = "; ".join(f"{b.name} {b.holder}" for b in matching if not b.free)
    if len(free) >= min_free:
        return (
            "done",
            free,
            f"{len(free)} of {len(matching)} benches matching {wanted} free: {', '.join(free)}",
        )
    return (
        "waiting",
        free,
        f"{len(free)} of {len(matching)} benches matching {wanted} free (need {min_free}): {held}",
    )


class BenchFreeTrigger(_SensorTrigger):
    """Wait until at least ``min_free`` benches matching ``place``/``tags`` are free. Reserves nothing.

    Event: ``{"status": "done", "free": [names], "message": ...}``; ``failed`` when no bench
    matches at all (nothing would ever free up), ``timeout`` at ``deadline``.
    """

    _fields = ("conn_id", "place", "tags", "min_free", "deadline", "poll_interval")

    def __init__(
        self,
        conn_id: str,
        place: str | None,
        tags: dict[str, str],
        min_free: int,
        deadline: str,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.place = place
        self.tags = dict(tags)
        self.min_free = min_free
        self.deadline = deadline
        self.poll_interval = poll_interval

    async def _run(self) -> AsyncIterator[TriggerEvent]:
        try:
            source = BenchInventorySource(await _backend(self.conn_id))
        except Exception as exc:  # noqa: BLE001 - reported as a failed event, never lost
            yield TriggerEvent({"status": "failed", "free": [], "message": f"backend: {exc}"})
            return
        poller = SharedStatusPoller.for_backend(source, self.poll_interval)
        probe = Probe("benches")
        message = "no answer from the bench platform yet"
        while True:
            answered, inventory = await self._next(poller, probe, self.deadline)
            if not answered:
                yield TriggerEvent(
                    {"status": "timeout", "free": [], "message": f"by {self.deadline}: {message}"}
                )
                return
            verdict, free, message = bench_verdict(inventory, self.place, self.tags, self.min_free)
            if verdict != "waiting":
                yield TriggerEvent({"status": verdict, "free": free, "message": message})
                return


class RunnerAvailableTrigger(_SensorTrigger):
    """Wait until a runner provisioned by another task or DAG is READY; never touches it.

    Give ``handle`` (its XCom) or ``lineage_key`` (the runner is found with ``backend.find``, and
    may not exist yet). Event: ``done`` with the ready ``handle``; ``failed`` when the runner is
    FAILED, or GONE after it was seen; ``timeout`` at ``deadline``.
    """

    _fields = ("conn_id", "handle", "lineage_key", "deadline", "poll_interval")

    def __init__(
        self,
        conn_id: str,
        handle: dict[str, Any] | None,
        lineage_key: str | None,
        deadline: str,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.handle = handle
        self.lineage_key = lineage_key
        self.deadline = deadline
        self.poll_interval = poll_interval

    async def _run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_runners.handles import RunnerHandle

        try:
            backend = await _backend(self.conn_id)
        except Exception as exc:  # noqa: BLE001 - reported as a failed event, never lost
            yield TriggerEvent({"status": "failed", "handle": self.handle, "message": f"backend: {exc}"})
            return
        handle = RunnerHandle.from_xcom(self.handle) if self.handle else None
        message = "no answer yet"
        if handle is None:
            finder = SharedStatusPoller.for_backend(LineageSource(backend), self.poll_interval)
            while handle is None:
                answered, handle = await self._next(finder, Probe(str(self.lineage_key)), self.deadline)
                if not answered:
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "handle": None,
                            "message": f"no runner with lineage {self.lineage_key} by {self.deadline}",
                        }
                    )
                    return
        poller = SharedStatusPoller.for_backend(backend, self.poll_interval)
        while True:
            answered, status = await self._next(poller, handle, self.deadline)
            if not answered:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "handle": handle.to_xcom(),
                        "message": f"runner {handle.resource_id} not ready by {self.deadline} ({message})",
                    }
                )
                return
            message = status.message
            if status.state is RunnerState.READY:
                ready = handle.evolve(endpoints=dict(status.endpoints), details=dict(status.details))
                yield TriggerEvent({"status": "done", "handle": ready.to_xcom(), "message": message})
                return
            if status.state in (RunnerState.FAILED, RunnerState.GONE):
                yield TriggerEvent(
                    {
                        "status": "failed",
                        "handle": handle.to_xcom(),
                        "message": f"runner {handle.resource_id} is {status.state.value}: {message}",
                    }
                )
                return


class QueueDepthTrigger(_SensorTrigger):
    """Wait until an SQS queue holds at least ``min_messages`` (``ApproximateNumberOfMessages``).

    Event: ``{"status": "done", "depth": n, ...}`` or ``timeout`` at ``deadline``. Errors reading
    the queue back off in the shared poller (``triggers/poller.py``) until the deadline.
    """

    _fields = ("queue_url", "aws_conn_id", "min_messages", "deadline", "poll_interval")

    def __init__(
        self,
        queue_url: str,
        aws_conn_id: str | None,
        min_messages: int,
        deadline: str,
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.queue_url = queue_url
        self.aws_conn_id = aws_conn_id
        self.min_messages = min_messages
        self.deadline = deadline
        self.poll_interval = poll_interval

    async def _run(self) -> AsyncIterator[TriggerEvent]:
        source = QueueDepthSource(self.aws_conn_id, self.poll_interval)
        poller = SharedStatusPoller.for_backend(source, self.poll_interval)
        depth: int | None = None
        while True:
            answered, status = await self._next(poller, Probe(self.queue_url), self.deadline)
            if not answered:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "depth": depth,
                        "message": f"{self.queue_url} had {depth} messages by {self.deadline}, "
                        f"fewer than {self.min_messages}",
                    }
                )
                return
            depth = int(status)
            if depth >= self.min_messages:
                yield TriggerEvent(
                    {"status": "done", "depth": depth, "message": f"{self.queue_url}: {depth} messages"}
                )
                return
