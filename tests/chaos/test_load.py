"""Many runs at once on a real deployment: every run succeeds, nothing is left, no lineage ever
has two runners, and every evidence chain verifies with exactly one terminal entry.

CI: ``RUNNERS_CHAOS_N`` (default 8) runs of ``RUNNERS_CHAOS_DASK_DAG`` (default ``chaos_dask``, one
Dask job each; ``local_dask_etl`` runs the example ETL on ``RUNNERS_CHAOS_ROWS`` rows, default
20,000), ``RUNNERS_CHAOS_M`` (default 10) ``chaos_host`` runs and ``RUNNERS_CHAOS_S`` (default 10)
``chaos_single_host`` runs (the single-task form: the work task owns its host), triggered
together. The benchmark variant (50 / 200) runs from benchmarks/chaos_load.py.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from tests.chaos.census import Sampler
from tests.chaos.harness import chain_problems, clean_up, lineage_of, log_lines, record
from tests.support.deployment import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(900)]
ROWS = int(os.environ.get("RUNNERS_CHAOS_ROWS", "20000"))
#: ``chaos_dask`` (one Dask job per run: CI) or ``local_dask_etl`` (the example ETL, three jobs).
DASK_DAG = os.environ.get("RUNNERS_CHAOS_DASK_DAG", "chaos_dask")


def _concurrent_runs(stack: Stack, sampler: Sampler, n: int, m: int, timeout: float, single: int = 0) -> None:
    started = time.monotonic()
    conf = {"rows": ROWS} if DASK_DAG == "local_dask_etl" else {"work_s": 1}
    runs = [(DASK_DAG, stack.trigger(DASK_DAG, conf)) for _ in range(n)]
    runs += [("chaos_host", stack.trigger("chaos_host", {"work_s": 1})) for _ in range(m)]
    runs += [("chaos_single_host", stack.trigger("chaos_single_host", {"work_s": 1})) for _ in range(single)]
    states = stack.wait_for_runs(runs, timeout=timeout)
    finished = time.monotonic()
    lineages = {lineage_of(*run) for run in runs}
    cleanup = clean_up(stack, sampler, lineages)
    failed = {run: state for run, state in states.items() if state != "success"}
    why = {run: stack.task_states(*run) for run in list(failed)[:5]}
    chains = chain_problems(stack, runs, set(sampler.lineages), max_rounds=1)
    record(
        {
            "fault": f"{n} {DASK_DAG} + {m} chaos_host + {single} chaos_single_host runs at once",
            "user_sees": dict(Counter(states.values())),
            "left_after_runs": len(cleanup.left_after_runs),
            "reaper_needed": cleanup.reaped,
            "left_after_reap": len(cleanup.left_after_reap),
            "all_runs_s": round(finished - started, 1),
            "max_live_runners": sampler.max_live,
            "samples": sampler.samples,
            "chain_problems": len(chains),
        }
    )
    assert not failed, (
        f"{len(failed)} of {len(runs)} runs failed: {why}; "
        f"{log_lines(stack, r'state mismatch|Executor reports|marked as failed|heartbeat')}"
    )
    assert not cleanup.left_after_runs, f"left after every run succeeded: {cleanup.left_after_runs}"
    assert not chains, "\n".join(chains[:20])
    assert sampler.max_live >= 2, "the runs never overlapped: this measured nothing concurrent"


def test_concurrent_dask_and_host_runs_all_succeed_and_leave_nothing(
    chaos_stack: Stack, sampler: Sampler
) -> None:
    n = int(os.environ.get("RUNNERS_CHAOS_N", "8"))
    m = int(os.environ.get("RUNNERS_CHAOS_M", "10"))
    single = int(os.environ.get("RUNNERS_CHAOS_S", "10"))
    _concurrent_runs(chaos_stack, sampler, n, m, timeout=600, single=single)


@pytest.mark.chaos_benchmark
@pytest.mark.timeout(7200)
def test_concurrent_runs_at_benchmark_scale(chaos_stack: Stack, sampler: Sampler) -> None:
    n = int(os.environ.get("RUNNERS_CHAOS_BENCH_N", "50"))
    m = int(os.environ.get("RUNNERS_CHAOS_BENCH_M", "200"))
    _concurrent_runs(chaos_stack, sampler, n, m, timeout=6600)
