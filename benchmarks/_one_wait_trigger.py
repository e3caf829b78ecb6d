"""The peers' pattern for ``benchmarks/triggerer_real.py``: one trigger per wait, polling its
one runner with its own status call every interval.

This is how Airflow's own waiting triggers work (``KubernetesPodTrigger``,
``EC2StateSensorTrigger``: each trigger holds its own hook, calls the API for its one resource,
sleeps ``poll_interval``, repeats). Here it polls through the same backend
(``get_backend(conn_id)``, as :class:`~airflow_provider_runners.triggers.readiness.RunnerReadyTrigger`
builds it) and the same poll interval as our trigger, so that the benchmark compares the
pattern only: N status calls per interval instead of one batched ``status_many``.

Also the ``silent`` side's trigger (:class:`SilentSleepTrigger`). Importable by the triggerer
because the benchmark puts ``benchmarks/`` on its PYTHONPATH.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_runners.core.backend import RunnerState
from airflow_provider_runners.core.handles import RunnerHandle

FINAL = (RunnerState.READY, RunnerState.FAILED, RunnerState.GONE)


class OneWaitTrigger(BaseTrigger):
    """Wait for one runner: its own backend (client), one ``status`` call per ``poll_interval``."""

    def __init__(self, conn_id: str, handle: dict[str, Any], poll_interval: float) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.handle = handle
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"conn_id": self.conn_id, "handle": self.handle, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_runners.backends.registry import get_backend

        backend = await asyncio.to_thread(get_backend, self.conn_id)
        handle = RunnerHandle.from_xcom(self.handle)
        while True:
            status = await asyncio.to_thread(backend.status, handle)
            if status.state in FINAL:
                yield TriggerEvent(
                    {"status": status.state.value, "handle": handle.to_xcom(), "message": status.message}
                )
                return
            await asyncio.sleep(self.poll_interval)


class SilentSleepTrigger(BaseTrigger):
    """The ``silent`` side: sleeps until ``moment`` (epoch seconds) in one ``asyncio.sleep`` and
    logs nothing. What the triggerer itself costs per trigger, as the ``floor`` side
    (``DateTimeTrigger``) does not show: that one logs a line every 10 s, and every second in its
    last 20 s, and each line costs the triggerer's supervisor."""

    def __init__(self, moment: float) -> None:
        super().__init__()
        self.moment = moment

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"moment": self.moment})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import time

        await asyncio.sleep(max(self.moment - time.time(), 0.0))
        yield TriggerEvent({"status": "ready", "moment": self.moment})
