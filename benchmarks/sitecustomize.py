"""Benchmark-only: a log of full garbage collections, for ``triggerer_real.py``.

Python imports ``sitecustomize`` from its path at start-up; the benchmark puts benchmarks/ on the
``PYTHONPATH`` of the deployment it starts. When ``RUNNERS_BENCH_GC_LOG`` names a directory, every
such process (and every process forked from it, such as the triggerer's trigger runner) appends
one line per generation-2 collection to ``<dir>/<pid>.gc``: its start (epoch seconds), its
duration (ms) and the objects it freed. Without the variable this does nothing. The benchmark
removes the directory after its run; nothing else is created.
"""

from __future__ import annotations

import os

_LOG_DIR = os.environ.get("RUNNERS_BENCH_GC_LOG")

if _LOG_DIR:
    import gc
    import time
    from typing import Any

    _started: list[float] = []

    def _log_full_collection(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            _started[:] = [time.time(), time.perf_counter()]
            return
        if not _started:
            return
        wall, began = _started
        ms = (time.perf_counter() - began) * 1000
        _started.clear()
        with open(os.path.join(str(_LOG_DIR), f"{os.getpid()}.gc"), "a", encoding="ascii") as log:
            log.write(f"{wall:.3f} {ms:.2f} {info.get('collected', 0)}\n")

    gc.callbacks.append(_log_full_collection)
