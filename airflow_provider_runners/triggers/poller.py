"""One status poller per backend account, shared by every trigger waiting in a triggerer.

A triggerer may run 1000 waits at once. Polling each on its own would be one API call per
wait per interval (EC2 Describe refills 20 req/s; 1000 waits at 15 s are 67 req/s). Instead,
triggers whose backends share a :meth:`~airflow_provider_runners.core.backend.Backend.batch_key`
register here; one loop calls ``backend.status_many`` for all of them once per interval
and hands each waiter its status. Backends batch inside ``status_many`` (one
DescribeInstances for many ids); the default falls back to one ``status`` per handle.

A failed ``status_many`` is classified by the backend's error map (``classify_error``,
``core/errors.py``): a TRANSIENT error backs off exponentially with jitter while waiters keep
waiting, up to :data:`~airflow_provider_runners.core.waiting.MAX_TRANSIENT_ERRORS` in a row;
a PERMANENT or NOT_FOUND error, or one transient error too many, is handed to every waiter of
that call as a :class:`~airflow_provider_runners.exceptions.RunnerStatusError` (the trigger
fails its wait with the backend's message). Pollers are per event loop, and stop when nobody waits.

Two ways to wait. ``await poller.next_status(handle)`` answers once, from the next poll.
``await poller.watch(handle, judge)`` stays registered: the poller calls the sync ``judge`` with
each status of ``handle`` until it returns something other than None, which the future then
holds. A trigger that polls for minutes thus costs a function call per poll, not a future, a
task wake-up and a re-registration per poll (``RunnerReadyTrigger`` waits this way;
docs/benchmarks.md, a real triggerer).

The sensors share this poller too: anything with ``batch_key()``, ``poll_interval`` and
``status_many(items) -> {item.resource_id: status}`` can be polled (a :class:`StatusSource`),
e.g. "is a bench matching these tags free" for every waiting sensor in one ``GetPlaces``
(``triggers/sources.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Protocol

from airflow_provider_runners.core.backend import WaitsForChange
from airflow_provider_runners.core.errors import ErrorKind, default_kind, describe_error
from airflow_provider_runners.core.waiting import MAX_TRANSIENT_ERRORS
from airflow_provider_runners.exceptions import RunnerStatusError


class Polled(Protocol):
    """What a waiter waits on: a runner handle, or a sensor's probe (``triggers/sources.py``)."""

    @property
    def resource_id(self) -> str: ...


class StatusSource(Protocol):
    """A backend, or a sensor source: answers many waiters in one call. It may also have a
    ``classify_error(exc) -> ErrorKind`` (a backend's error map); without one the default map
    applies (``core/errors.py``)."""

    poll_interval: Any

    def batch_key(self) -> str: ...

    def status_many(self, handles: Iterable[Any]) -> dict[str, Any]: ...


log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0


class _Watch:
    """One waiter of the poller: what to poll, who judges each status, in which context (the
    waiter's contextvars), and the future its verdict resolves. Without a judge (``next_status``)
    the first status is the answer, whatever it is (``None`` included)."""

    __slots__ = ("context", "future", "handle", "judge")

    def __init__(
        self, handle: Polled, judge: Callable[[Any], Any] | None, future: asyncio.Future[Any]
    ) -> None:
        self.handle = handle
        self.judge = judge
        self.future = future
        # Airflow's triggerer routes a trigger's log lines by contextvars bound in that trigger's
        # task (its trigger_id); the poller's task has the contextvars of whichever waiter
        # started it. The judge runs in its watcher's context, so its log lines go to its own
        # trigger's log.
        self.context = contextvars.copy_context()

    def hear(self, status: Any) -> None:
        """Judge ``status``; resolve the future on a verdict (or the judge's exception)."""
        if self.judge is None:
            self.future.set_result(status)
            return
        try:
            verdict = self.context.run(self.judge, status)
        except Exception as exc:  # noqa: BLE001 - the watcher's own error, handed to it
            self.future.set_exception(exc)
            return
        if verdict is not None:
            self.future.set_result(verdict)


class SharedStatusPoller:
    """Batches status calls for one backend account within one event loop."""

    _pollers: ClassVar[dict[tuple[int, str], SharedStatusPoller]] = {}

    def __init__(self, backend: StatusSource, interval: float) -> None:
        self.backend = backend
        self.interval = interval
        # Everyone waiting: a watch stays until its judge decides, a next_status until one answer.
        self._watches: list[_Watch] = []
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # status_many calls made (for benchmarks)
        self.errors_in_a_row = 0  # failed status_many calls since the last answer
        self.transient_errors = 0  # over the poller's life (for logs and tests)
        self.max_transient = MAX_TRANSIENT_ERRORS
        self._loop: asyncio.AbstractEventLoop | None = None
        # The poller's own thread for its blocking calls, not the loop's default pool: when many
        # triggers fire at once, Airflow's triggerer queues a log call per event on that pool,
        # and a poll waiting behind them was late by more than an interval (docs/benchmarks.md,
        # a real triggerer at N = 1000). Made by _in_thread, shut down when the poller stops.
        self._thread: ThreadPoolExecutor | None = None

    @classmethod
    def for_backend(cls, backend: StatusSource, interval: float | None = None) -> SharedStatusPoller:
        loop = asyncio.get_running_loop()
        key = (id(loop), backend.batch_key())
        poller = cls._pollers.get(key)
        if poller is None or poller._loop is not loop:
            poller = cls(backend, interval if interval is not None else backend.poll_interval)
            poller._loop = loop
            cls._pollers[key] = poller
        return poller

    def next_status(self, handle: Polled) -> asyncio.Future[Any]:
        """A future of the status of ``handle`` from the next batched poll (a ``RunnerStatus`` for
        a backend); ``await`` it. A plain method, not a coroutine: a coroutine per waiter per poll
        was one more object alive across each wait, and such objects are what makes the trigger
        runner's full garbage collections come often (docs/benchmarks.md, a real triggerer)."""
        return self._register(handle, None)

    def watch(self, handle: Polled, judge: Callable[[Any], Any]) -> asyncio.Future[Any]:
        """A future of the first value other than None that ``judge(status)`` returns for the
        statuses of ``handle``, one per poll, from the next poll on. ``judge`` is sync, runs on
        the event loop in the caller's contextvars, and must not block. An exception from it
        ends the watch with that exception; so does the poller giving up on the status API
        (``RunnerStatusError``), or a backend that returns no status for ``handle``
        (``KeyError``). Cancel the future to stop watching."""
        return self._register(handle, judge)

    def _register(self, handle: Polled, judge: Callable[[Any], Any] | None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._watches.append(_Watch(handle, judge, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return future

    def _prune_watches(self) -> None:
        if any(watch.future.done() for watch in self._watches):
            self._watches = [watch for watch in self._watches if not watch.future.done()]

    def _classify(self, exc: BaseException) -> ErrorKind:
        classify = getattr(self.backend, "classify_error", None)
        return classify(exc) if callable(classify) else default_kind(exc)

    @staticmethod
    def _fail(watches: list[_Watch], error: BaseException) -> None:
        for watch in watches:
            if not watch.future.done():
                watch.future.set_exception(error)

    @staticmethod
    def _answer(watches: list[_Watch], statuses: dict[str, Any]) -> None:
        """Hand each waiter its status (a KeyError when the backend returned none)."""
        for watch in watches:
            if watch.future.done():
                continue
            rid = watch.handle.resource_id
            if rid in statuses:
                watch.hear(statuses[rid])
            else:
                watch.future.set_exception(KeyError(f"backend returned no status for {rid}"))

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runners-status-poller")
        return await asyncio.get_running_loop().run_in_executor(self._thread, func, *args)

    async def _run(self) -> None:
        backoff = self.interval
        try:
            while True:
                self._prune_watches()
                if not self._watches:
                    break
                watches = self._watches[:]  # not those that start waiting during the call
                polled: dict[str, Polled] = {}  # one per runner: several may wait on one
                for watch in watches:
                    polled.setdefault(watch.handle.resource_id, watch.handle)
                handles = list(polled.values())
                try:
                    self.calls += 1
                    statuses = await self._in_thread(self.backend.status_many, handles)
                    backoff = self.interval
                    self.errors_in_a_row = 0
                except Exception as exc:  # noqa: BLE001 - classified: retried, or handed to the waiters
                    kind = self._classify(exc)
                    self.errors_in_a_row += 1
                    if kind is not ErrorKind.TRANSIENT or self.errors_in_a_row >= self.max_transient:
                        log.error(
                            "status poll for %s failed (%s, %d in a row): %s; failing %d wait(s)",
                            self.backend,
                            kind.value,
                            self.errors_in_a_row,
                            describe_error(exc),
                            len(watches),
                        )
                        self._fail(watches, RunnerStatusError(exc, kind.value, self.errors_in_a_row))
                        self.errors_in_a_row = 0
                        await asyncio.sleep(self.interval)  # a new waiter does not hammer a refusing API
                        continue
                    self.transient_errors += 1
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    log.warning(
                        "status poll for %s failed (transient, %d in a row, cap %d): %s; retrying in ~%.0fs",
                        self.backend,
                        self.errors_in_a_row,
                        self.max_transient,
                        describe_error(exc),
                        backoff,
                    )
                    # every waiter stays registered and is asked about again
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                    continue
                self._answer(watches, statuses)
                # Watches stay and next_status waiters re-register right after their answer; both
                # are polled next interval, or as soon as a backend that signals readiness
                # (WaitsForChange) signals. Statuses are not held while sleeping: each then lives
                # only until it was read, and is not carried into the old generation of the
                # collector.
                del polled, statuses, watches
                if isinstance(self.backend, WaitsForChange):
                    await self._in_thread(self.backend.wait_for_change, handles, self.interval)
                else:
                    await asyncio.sleep(self.interval)
        finally:
            self._stopped()

    def _stopped(self) -> None:
        """The loop ended: release the thread, unregister, cancel who still waits."""
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None
        key = (id(self._loop), self.backend.batch_key())
        if not self._watches and SharedStatusPoller._pollers.get(key) is self:
            del SharedStatusPoller._pollers[key]
        for watch in self._watches:
            if not watch.future.done():
                watch.future.cancel()
