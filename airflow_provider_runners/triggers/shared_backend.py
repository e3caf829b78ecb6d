"""One backend per Connection for the triggers of a process (a triggerer's trigger runner).

Building a backend reads its Connection through Airflow. In a triggerer that read is a request
to the triggerer's supervisor (``GetConnection``, then ``MaskSecret`` for each secret), and each
request wakes the supervisor's loop, which then runs its trigger queries again. 1000 triggers
starting together (a triggerer restart, a burst of deferrals) made 1000 reads, and the supervisor
spent seconds of CPU answering them (docs/benchmarks.md, a real triggerer with Kubernetes pods).

:func:`backend_for` gives the triggers that start together one read (single flight) and reuses
the backend for :data:`BACKEND_TTL_S`. A Connection defined in the environment
(``AIRFLOW_CONN_<ID>``) is part of the cache key, so a change there is seen at once; one changed
in the metadata database or a secrets backend is read again after at most ``BACKEND_TTL_S``.
A failed read is not kept: the triggers waiting on it get its error, the next start reads again.
Creates nothing and holds no connection of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_runners.core.backend import Backend

#: Seconds a backend built from a Connection is reused by the triggers of this process.
BACKEND_TTL_S = 60.0

_clock = time.monotonic  # tests control time here
_built: dict[tuple[str, str], tuple[float, Backend]] = {}  # key -> (reuse until, backend)
_reading: dict[tuple[int, str, str], asyncio.Task[Any]] = {}  # (loop, *key) -> the one read


def _key(conn_id: str) -> tuple[str, str]:
    defined = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") or ""
    return conn_id, hashlib.sha256(defined.encode()).hexdigest()  # the URI holds secrets: hashed


async def backend_for(conn_id: str) -> Backend:
    """The backend of ``conn_id``, built once for the triggers that need it now (see the module)."""
    from airflow_provider_runners.backends.registry import get_backend

    key = _key(conn_id)
    kept = _built.get(key)
    if kept is not None and kept[0] > _clock():
        return kept[1]
    loop = asyncio.get_running_loop()
    flight = (id(loop), *key)
    task = _reading.get(flight)
    if task is None:
        task = loop.create_task(asyncio.to_thread(get_backend, conn_id))
        _reading[flight] = task

        def done(read: asyncio.Task[Any]) -> None:
            _reading.pop(flight, None)
            if not read.cancelled() and read.exception() is None:
                _built[key] = (_clock() + BACKEND_TTL_S, read.result())

        task.add_done_callback(done)
    backend: Backend = await asyncio.shield(task)  # one waiter cancelled does not cancel the read
    return backend


def forget() -> None:
    """Drop every kept backend (tests; a process that wants every Connection read again)."""
    _built.clear()
