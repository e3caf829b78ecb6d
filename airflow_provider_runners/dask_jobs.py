"""Dask jobs that outlive the task try that started them, so a later try re-attaches.

``DaskJobOperator`` (by default) does not call the job in the Airflow task process. It submits
a *driver* — :func:`run_job`, which calls ``python_callable(client, ...)`` with a client made on
the Dask worker (``distributed.worker_client``: the driver secedes from the worker's thread pool
while it waits, and rejoins after) — as one Dask task with a key of its own, and publishes that
future on the scheduler under a name derived from the task instance's lineage (dag, run, task,
map index — not the try): ``airflow-runners-job-<lineage key>``. A published dataset keeps the
future alive after the submitting client is gone, so when a try dies (SIGKILL, a scheduler
restart that resets the task, a lost Celery worker) the computation keeps running on the
cluster, and the next try takes it instead of starting another:

- published and running, or finished → the try waits for it / takes its result (re-attached);
- published but errored, cancelled or lost → unpublished; the try computes anew;
- nothing published (first try, the runner was replaced, the scheduler restarted) → submit.

The result is unpublished once a try has taken it *and stored it in Airflow*
(:meth:`AttachedJob.release`, called by ``DaskJobOperator`` after its facts reached the
metadata DB), and when the job fails, so nothing stays on the cluster. A try that saw the job
to its end but could not hand the result over — its supervisor was killed, so the orphaned task
process finishes waiting but can no longer talk to Airflow, and the task is retried — leaves
the finished job published, and the next try takes its result instead of computing it again
(docs/reliability.md). The job's ``print()`` output and log records are sent back as Dask events
(topic ``airflow-runners-output-<lineage key>``) and written into the task log of whichever
try is attached; a re-attached try first replays what the job printed before it attached.

Resources on the cluster, until the runner's teardown at the latest: one published dataset and
its result per running or unclaimed job (a finished job whose try died before storing the
result, and that no later try takes, stays until then). By hand: ``client.list_datasets()`` and
``client.unpublish_dataset(name)``.

This module is pickled *by value* (``cloudpickle.register_pickle_by_value``), so the driver runs
on clusters where this package is not installed (Dataproc); its cluster-side code therefore
keeps its state on ``sys.stdout`` and the root logger, never in module globals.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

log = logging.getLogger(__name__)
JOB_PREFIX = "airflow-runners-job-"
TOPIC_PREFIX = "airflow-runners-output-"
_ROUTER_MARK = "_airflow_runners_router"
_TRY_RE = re.compile(r"-t(\d+)(?:-r\d+)?$")
_REUSABLE = ("pending", "finished")
#: The key of the driver's last output event (no line): everything it printed arrived before it.
END_MARK = "end"
#: The key of the event the submitting client queues itself when the job's future is done.
_DONE_MARK = "_airflow_runners_done"


def job_name(lineage_key: str) -> str:
    """The published name of the job of one task instance lineage (same for every try)."""
    return f"{JOB_PREFIX}{lineage_key}"


def job_key(name: str, try_number: int, attempt: int = 0) -> str:
    """The Dask key of the driver task started by ``try_number`` (``attempt``: the same try
    replaced its own errored job; a released key may linger on the scheduler for a moment)."""
    return f"{name}-t{int(try_number)}" + (f"-r{attempt}" if attempt else "")


def started_by_try(key: str) -> int | None:
    match = _TRY_RE.search(str(key))
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# Cluster side: runs on a Dask worker.


def run_job(
    func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], topic: str, key: str
) -> Any:
    """The driver: call ``func(client, *args, **kwargs)`` with a client on this worker, its
    ``print()`` output and log records sent to ``topic`` as Dask events."""
    from distributed import get_worker, worker_client

    worker = get_worker()
    seq = [0]

    def emit(stream: str, line: str) -> None:
        seq[0] += 1
        worker.log_event(topic, {"key": key, "seq": seq[0], "stream": stream, "line": line})

    thread = threading.get_ident()
    routers = _install_routers()
    handler = _ThreadLogHandler(thread, emit)
    for router in routers:
        router.route(thread, emit)
    logging.getLogger().addHandler(handler)
    try:
        with worker_client() as client, client.as_current():
            return func(client, *args, **kwargs)
    finally:
        logging.getLogger().removeHandler(handler)
        for router in routers:
            router.unroute(thread)
        # The last event: a waiting try knows it has all the output once this arrives.
        seq[0] += 1
        worker.log_event(topic, {"key": key, "seq": seq[0], END_MARK: True})


class _Router:
    """Replaces ``sys.stdout``/``sys.stderr`` on a worker: lines written by a routed thread go to
    its job's events, everything else to the original stream."""

    def __init__(self, original: Any, stream: str) -> None:
        self.original = original
        self.stream = stream
        self.targets: dict[int, tuple[Callable[[str, str], None], list[str]]] = {}
        setattr(self, _ROUTER_MARK, True)

    def route(self, thread: int, emit: Callable[[str, str], None]) -> None:
        self.targets[thread] = (emit, [])

    def unroute(self, thread: int) -> None:
        target = self.targets.pop(thread, None)
        if target and target[1]:
            target[0](self.stream, "".join(target[1]))

    def write(self, text: str) -> int:
        target = self.targets.get(threading.get_ident())
        if target is None:
            return int(self.original.write(text) or 0)
        emit, pending = target
        pending.append(text)
        if "\n" in text:
            *lines, rest = "".join(pending).split("\n")
            pending[:] = [rest] if rest else []
            for line in lines:
                emit(self.stream, line)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class _ThreadLogHandler(logging.Handler):
    """Sends the log records of one thread (the driver's) to its job's events."""

    def __init__(self, thread: int, emit: Callable[[str, str], None]) -> None:
        super().__init__()
        self.thread = thread
        self.emit_line = emit
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            try:
                self.emit_line("log", self.format(record))
            except Exception:  # noqa: BLE001 - forwarding output must never fail the job
                self.handleError(record)


def _install_routers() -> list[Any]:
    """The routers on this worker's ``sys.stdout`` and ``sys.stderr``, installed once per process."""
    routers = []
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if not getattr(current, _ROUTER_MARK, False):
            current = _Router(current, name)
            setattr(sys, name, current)
        routers.append(current)
    return routers


def _task_state(key: str, dask_scheduler: Any = None) -> str | None:
    """The scheduler's state of ``key`` (run with ``Client.run_on_scheduler``)."""
    task = dask_scheduler.tasks.get(key) if dask_scheduler is not None else None
    return None if task is None else str(task.state)


# ---------------------------------------------------------------------------------------------
# Airflow side: runs in the task process.


@dataclass
class JobRun:
    """How a try got its computation (facts for the evidence ledger)."""

    name: str
    key: str
    started_by_try: int | None
    reattached: bool
    replaced: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "started_by_try": self.started_by_try,
            "reattached": self.reattached,
            "replaced": self.replaced,
        }


def picklable(*objects: Any) -> str | None:
    """None when ``objects`` can travel to the cluster, else why not."""
    try:
        cloudpickle.dumps(objects)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means "run in process"
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


class AttachedJob:
    """One try's handle on the published job of a task instance lineage."""

    def __init__(self, client: Any, lineage_key: str, try_number: int, output: Callable[[str], None]) -> None:
        self.client = client
        self.name = job_name(lineage_key)
        self.topic = TOPIC_PREFIX + lineage_key
        self.try_number = try_number
        self.output = output
        self.future: Any = None
        self.run: JobRun | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._printed: dict[str, int] = {}
        self._ended: set[str] = set()  # keys whose END_MARK arrived

    def start(self, func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> JobRun:
        """Re-attach to the published job if it can be reused, else submit and publish a new one."""
        self.client.subscribe_topic(self.topic, lambda event: self._events.put(event[1]))
        replaced: list[str] = []
        for attempt in range(3):
            existing = self.client.get_dataset(self.name, default=None)
            if existing is not None:
                state = self.client.run_on_scheduler(_task_state, key=existing.key)
                if state in (None, "erred", "forgotten"):
                    replaced.append(f"{existing.key} ({state or 'gone'})")
                    self._unpublish()
                    existing.release()
                else:
                    self.future = existing
                    self.run = JobRun(self.name, existing.key, started_by_try(existing.key), True, replaced)
                    self._replay(existing.key)
                    return self.run
            key = job_key(self.name, self.try_number, attempt + len(replaced))
            future = self.client.submit(
                run_job, func, list(args), dict(kwargs), self.topic, key, key=key, pure=False
            )
            try:
                self.client.publish_dataset(future, name=self.name)
            except KeyError:  # another try of this lineage published first: take that one
                future.cancel()
                continue
            self.future = future
            self.run = JobRun(self.name, key, self.try_number, False, replaced)
            return self.run
        raise RuntimeError(f"could not publish or re-attach Dask job {self.name}")

    def wait(self, poll: float = 0.2) -> Any:
        """Wait for the job, writing its output as it arrives, and return its result. A job that
        failed is unpublished; a finished one stays published until :meth:`release`.

        Wakes on each output line and on the future's completion (a done callback queues a
        mark), not at the next ``poll``: ``poll`` only bounds how long one wait blocks."""
        assert self.future is not None
        self.future.add_done_callback(lambda _future: self._events.put({_DONE_MARK: True}))
        while not self.future.done():
            try:
                self._print(self._events.get(timeout=poll))
            except queue.Empty:
                continue
        self._settle()
        try:
            return self.future.result()
        except BaseException:
            self._unpublish()
            raise

    def release(self) -> None:
        """The result is stored where the task keeps it: the job may go. A try that cannot store
        it (its supervisor died) must not call this: the next try takes the result instead."""
        self._unpublish()

    def abandon(self, cancel: bool) -> None:
        """This try stops waiting: ``cancel`` ends the computation too (a timeout, an error of
        ours); otherwise it stays published for the next try (the task process is being killed)."""
        if cancel and self.future is not None:
            try:
                self.future.cancel()
            except Exception as exc:  # noqa: BLE001 - must not hide why this try failed
                log.warning("could not cancel Dask job %s: %s: %s", self.name, type(exc).__name__, exc)
            self._unpublish()

    def drain(self) -> None:
        while True:
            try:
                msg = self._events.get_nowait()
            except queue.Empty:
                return
            self._print(msg)

    def _print(self, msg: Any, earlier: bool = False) -> None:
        if not isinstance(msg, dict) or self.run is None or msg.get("key") != self.run.key:
            return
        seq = int(msg.get("seq", 0))
        if seq <= self._printed.get(self.run.key, 0):
            return
        self._printed[self.run.key] = seq
        if msg.get(END_MARK):
            self._ended.add(self.run.key)
            return
        prefix = "[before this try attached] " if earlier else ""
        self.output(f"{prefix}{msg.get('line', '')}")

    def _replay(self, key: str) -> None:
        for _, msg in self.client.get_events(self.topic):
            self._print(msg, earlier=True)

    def _settle(self, quiet: float = 0.3, limit: float = 3.0) -> None:
        """Output sent just before the job ended may arrive just after: wait for the driver's end
        mark (at most ``limit`` s); a driver that never sent one (its worker died, or it was
        started by a version without the mark) is waited for until the output is ``quiet``."""
        deadline = time.monotonic() + limit
        last = time.monotonic()
        self.drain()
        while self.run is not None and self.run.key not in self._ended:
            now = time.monotonic()
            if now >= deadline or now - last >= quiet:
                break
            try:
                self._print(self._events.get(timeout=min(0.05, deadline - now)))
                last = time.monotonic()
            except queue.Empty:
                continue
        self.drain()

    def _unpublish(self) -> None:
        """Idempotent; never raises (the scheduler may be gone: then so is the published job)."""
        try:
            self.client.unpublish_dataset(self.name)
        except Exception as exc:  # noqa: BLE001 - must not hide the job's own outcome
            log.warning("could not unpublish Dask job %s: %s: %s", self.name, type(exc).__name__, exc)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
