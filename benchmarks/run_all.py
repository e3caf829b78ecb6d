"""Run every benchmark (``make bench``): parse time, lifecycle overhead, triggerer load,
Dataproc API calls.

Each runs in its own interpreter (each sets up its own AIRFLOW_HOME before importing
Airflow). Markdown goes to stdout, progress to stderr, JSON to ``benchmarks/results/``.
Copy the printed tables into ``docs/benchmarks.md`` by hand.

    .venv/bin/python benchmarks/run_all.py [--reps 5] [--runs 7]

About 6-7 minutes on a 2-core machine with the defaults.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _common import PYTHON, REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="lifecycle: timed runs of each DAG")
    parser.add_argument("--runs", type=int, default=7, help="parse time: fresh-process rounds")
    args = parser.parse_args(argv)
    started = time.monotonic()
    commands = [
        [str(PYTHON), str(REPO / "benchmarks" / "parse_time.py"), "--runs", str(args.runs)],
        [str(PYTHON), str(REPO / "benchmarks" / "lifecycle.py"), "--reps", str(args.reps)],
        [str(PYTHON), str(REPO / "benchmarks" / "triggerer_load.py")],
        [str(PYTHON), str(REPO / "benchmarks" / "trigger_poll_cpu.py")],
        [str(PYTHON), str(REPO / "benchmarks" / "dataproc_api_calls.py")],
        [str(PYTHON), str(REPO / "benchmarks" / "bench_handover.py")],
        [str(PYTHON), str(REPO / "benchmarks" / "burst_simulation.py")],
        [str(PYTHON), str(REPO / "benchmarks" / "ec2_api_calls.py")],
        [str(PYTHON), str(REPO / "benchmarks" / "ec2_warm_pool.py")],
        [str(PYTHON), str(REPO / "benchmarks" / "k8s_api_calls.py")],
    ]
    failed = []
    for command in commands:
        sys.stderr.write(f"\n$ {' '.join(command)}\n")
        sys.stderr.flush()
        code = subprocess.call(command, cwd=REPO)
        print(flush=True)
        if code != 0:
            failed.append(f"{command[1]} (exit {code})")
    sys.stderr.write(f"\nall benchmarks done in {time.monotonic() - started:.0f}s\n")
    if failed:
        sys.stderr.write(f"FAILED: {', '.join(failed)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
