"""The fault suite at benchmark scale: 50 ``local_dask_etl`` + 200 ``chaos_host`` runs at once on
a real deployment (tests/chaos/test_load.py, marker ``chaos_benchmark``), optionally followed by
the CI fault scenarios, with every measured row printed as a Markdown table.

    .venv/bin/python benchmarks/chaos_load.py                 # 50 / 200, CeleryExecutor, 8 slots
    .venv/bin/python benchmarks/chaos_load.py --n 20 --m 80 --executor LocalExecutor --parallelism 32
    .venv/bin/python benchmarks/chaos_load.py --faults        # also every tests/chaos fault scenario

Needs PostgreSQL and Redis as the e2e tests do (scripts/ensure-services.sh). Not part of CI
(the CI subset runs 8 / 20 in `make test`). Rows go to ``benchmarks/results/chaos_load.jsonl``;
copy the table into docs/reliability.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _common import PYTHON, REPO, RESULTS, git_state, machine, machine_line, md_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="concurrent local_dask_etl runs")
    parser.add_argument("--m", type=int, default=200, help="concurrent chaos_host runs")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per ETL run")
    parser.add_argument("--executor", default="CeleryExecutor", choices=("CeleryExecutor", "LocalExecutor"))
    parser.add_argument("--parallelism", type=int, default=8, help="task slots")
    parser.add_argument("--faults", action="store_true", help="also run every fault scenario of tests/chaos")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = RESULTS / "chaos_load.jsonl"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "RUNNERS_CHAOS_BENCHMARK": "1",
        "RUNNERS_CHAOS_BENCH_N": str(args.n),
        "RUNNERS_CHAOS_BENCH_M": str(args.m),
        "RUNNERS_CHAOS_ROWS": str(args.rows),
        "RUNNERS_CHAOS_EXECUTOR": args.executor,
        "RUNNERS_CHAOS_PARALLELISM": str(args.parallelism),
        "RUNNERS_CHAOS_REPORT": str(report),
        "RUNNERS_E2E_REQUIRED": "1",
    }
    targets = (
        ["tests/chaos"]
        if args.faults
        else ["tests/chaos/test_load.py::test_concurrent_runs_at_benchmark_scale"]
    )
    started = time.monotonic()
    code = subprocess.call(
        [str(PYTHON), "-m", "pytest", "-q", "-p", "no:randomly", *targets], cwd=REPO, env=env
    )
    elapsed = time.monotonic() - started
    rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    info = machine()
    print(f"**Machine:** {machine_line(info)}; commit {git_state().get('commit')}; {elapsed:.0f} s in all\n")
    print(
        md_table(
            [
                "fault",
                "executor",
                "user sees",
                "left after runs",
                "reaper",
                "left after reap",
                "s to cleanup",
                "load",
            ],
            [
                [
                    r["fault"],
                    r["executor"],
                    r["user_sees"],
                    r["left_after_runs"],
                    "yes" if r["reaper_needed"] else "no",
                    r["left_after_reap"],
                    r.get("s_to_cleanup", r.get("all_runs_s", "-")),
                    r["load"],
                ]
                for r in rows
            ],
            align="llllrlrl",
        )
    )
    sys.stderr.write(f"pytest exit {code}; rows in {report}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
