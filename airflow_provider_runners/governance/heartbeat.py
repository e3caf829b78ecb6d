"""Registry heartbeats: whoever holds a runner says so every ``heartbeat_interval`` (docs/cost.md).

A runner's registry record (:mod:`~airflow_provider_runners.governance.runner_index`) carries
``last_heartbeat``. It is refreshed by whoever holds the runner at the time:

========================================  ===================================================
provision, when the runner exists          ``Admission.confirm`` (budget.py)
provision waiting in the task              :class:`Heartbeat` ``.maybe()`` in its poll loop
the readiness trigger while deferred       :class:`SharedHeartbeats` — one write for every
                                           trigger of the triggerer (triggers/readiness.py)
work / command tasks, ``@task.runner``     ``with Heartbeat(key):`` — a background thread
========================================  ===================================================

every ``[runners] heartbeat_interval`` seconds (30). A record in use (``running``/``draining``)
whose last heartbeat is older than ``[runners] heartbeat_expiry`` (3600 s) has *expired*
(:func:`expired`): nobody holds the runner any more, and the reaper ends it through its backend
and writes its ``reap`` evidence (governance/reaper.py). Warm-pool records (``idle``) have
no holder and never expire this way; ``keep-until-expiry`` protects a runner as for ended runs.

A heartbeat never fails the task that sends it (the registry is an index: ``quietly``), and a
heartbeat of an ended record is refused by the registry (an ended runner is never revived).
Creates nothing; clean-up: none.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import ClassVar, Self

from airflow_provider_runners.core.settings import runners_settings
from airflow_provider_runners.governance.runner_index import RunnerRecord, RunnerRegistry, quietly

log = logging.getLogger(__name__)

#: Statuses of a held runner: only these expire when their heartbeats stop.
HELD_STATUSES = ("running", "draining")


def heartbeat_interval() -> float:
    """``[runners] heartbeat_interval``."""
    return float(runners_settings().heartbeat_interval)


def heartbeat_expiry() -> float:
    return float(runners_settings().heartbeat_expiry)


def expired(record: RunnerRecord, now: float, expiry_s: float | None = None) -> bool:
    """A held runner's record whose holder stopped sending heartbeats ``expiry_s`` ago."""
    expiry_s = heartbeat_expiry() if expiry_s is None else expiry_s
    return record.status in HELD_STATUSES and now - record.last_heartbeat >= expiry_s


class Heartbeat:
    """Heartbeats for the runner whose lineage key is ``key``.

    ``with Heartbeat(key):`` beats at once and then every ``interval`` seconds from a daemon
    thread until the block ends (work tasks, commands, ``@task.runner``). A poll loop calls
    :meth:`maybe` instead, which beats when ``interval`` has passed on ``clock``. ``registry``,
    ``interval`` and ``clock`` default to the configured registry, ``[runners]
    heartbeat_interval`` and ``time.time``; tests pass their own.
    """

    def __init__(
        self,
        key: str,
        registry: RunnerRegistry | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self._registry = registry
        self.interval = heartbeat_interval() if interval is None else float(interval)
        self.clock = clock
        self.last: float | None = None
        self.sent = 0
        # Made by __enter__ only: a poll loop's Heartbeat (maybe()) needs neither.
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def registry(self) -> RunnerRegistry:
        if self._registry is None:
            from airflow_provider_runners.governance.budget import safe_registry

            self._registry = safe_registry()
        return self._registry

    def beat(self) -> bool:
        """Refresh the record now; False when it is ended, gone or the registry failed."""
        now = self.clock()
        self.last = now
        ok = bool(quietly(self.registry.heartbeat, self.key, None, now))
        self.sent += 1
        return ok

    def due(self) -> bool:
        """Whether :meth:`maybe` would beat now (no I/O)."""
        return self.last is None or self.clock() - self.last >= self.interval

    def maybe(self) -> bool | None:
        """Beat if ``interval`` passed since the last beat (None: not due yet)."""
        if not self.due():
            return None
        return self.beat()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.beat()

    def __enter__(self) -> Self:
        self.beat()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            args=(self._stop,), target=self._run, name=f"runner-heartbeat-{self.key}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class SharedHeartbeats:
    """The heartbeats of every runner that a trigger holds in one event loop (a triggerer),
    written together: one ``registry.heartbeat_many`` call (one transaction on SQLite) and one
    thread hop per beat for all of them, instead of a registry, a thread hop and a write per
    waiting trigger (1000 waits were 33 writes a second; docs/benchmarks.md, a real triggerer).

    A trigger holds its runner with ``with SharedHeartbeats.for_loop().holding(key):``. A key
    is beaten within ``tick`` seconds of joining (at once when it is the first), then every
    ``interval``; when some key is due, keys past half their interval are beaten with it, so the
    held keys settle into about one write per interval. Keys leave with their ``with`` block;
    the loop's task ends when none is held. ``registry``, ``interval`` and ``clock`` default to
    the configured registry, ``[runners] heartbeat_interval`` and ``time.time``; tests pass
    their own. Creates nothing; clean-up: none.
    """

    _by_loop: ClassVar[dict[int, SharedHeartbeats]] = {}
    TICK_S = 1.0

    def __init__(
        self,
        registry: RunnerRegistry | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self.interval = heartbeat_interval() if interval is None else float(interval)
        self.clock = clock
        self.tick = min(self.TICK_S, max(self.interval, 0.05))
        #: held key -> how many holders, and the time of its last beat (None: not yet)
        self._holders: dict[str, int] = {}
        self.last: dict[str, float | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_loop(cls) -> SharedHeartbeats:
        """The running event loop's instance (made on first use)."""
        loop = asyncio.get_running_loop()
        shared = cls._by_loop.get(id(loop))
        if shared is None or shared._loop is not loop:
            shared = cls()
            shared._loop = loop
            cls._by_loop[id(loop)] = shared
        return shared

    @property
    def registry(self) -> RunnerRegistry:
        if self._registry is None:
            from airflow_provider_runners.governance.budget import safe_registry

            self._registry = safe_registry()
        return self._registry

    @contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """Beat ``key`` for as long as the block runs (call inside the event loop)."""
        self._holders[key] = self._holders.get(key, 0) + 1
        self.last.setdefault(key, None)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield
        finally:
            left = self._holders.get(key, 1) - 1
            if left > 0:
                self._holders[key] = left
            else:
                self._holders.pop(key, None)
                self.last.pop(key, None)

    def due(self, now: float) -> list[str]:
        """The keys to beat at ``now``: none unless one is due (never beaten, or ``interval``
        old); then also those at least half an interval old."""
        if not any(last is None or now - last >= self.interval for last in self.last.values()):
            return []
        half = self.interval / 2
        return [key for key, last in self.last.items() if last is None or now - last >= half]

    async def _run(self) -> None:
        try:
            while self._holders:
                now = self.clock()
                keys = self.due(now)
                if keys:
                    await asyncio.to_thread(quietly, self.registry.heartbeat_many, keys, now)
                    for key in keys:
                        if key in self.last:
                            self.last[key] = now
                await asyncio.sleep(self.tick)
        finally:
            if SharedHeartbeats._by_loop.get(id(self._loop)) is self and not self._holders:
                del SharedHeartbeats._by_loop[id(self._loop)]
