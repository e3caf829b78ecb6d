"""Seed 003 on hardware benches: a HIL test suite fanned over benches selected by tag.

For each board type in ``RUNNERS_HIL_BOARDS`` (default ``imx8,stm32``) the DAG borrows *one*
bench carrying the tag ``board=<type>`` — a ``bench`` runner: reserved on the labgrid
coordinator (waiting in line while others hold every matching bench), acquired, checked
ready — runs the HIL tests on it as ``RunnerCommandOperator`` tasks (one per test, one at a
time on the bench, output streamed to the task log, exit code = test verdict) and
always releases it. Evidence records which bench, its tags, the reservation token, who it
waited behind, the wait and hold times and the release confirmation.

The Connection id comes from ``RUNNERS_HIL_CONN_ID`` (default ``runners_bench``): a
``runners_labgrid`` Connection (coordinator host/port) or ``runners_bench_http`` (an HTTP bench
platform) — the DAG does not change. Locally: ``airflow-runners bench-coordinator --places
config/benches.yaml`` (or the ``labgrid-coordinator`` service of docker-compose.yaml) and
``AIRFLOW_CONN_RUNNERS_BENCH='{"conn_type": "runners_labgrid", "host": "127.0.0.1", "port": 20408}'``.

The tests here use ``labgrid-client`` against the coordinator (no hardware attached): they
check that the bench is held by this run and "flash" and "boot" it by printing. On real
benches replace them with your pytest-labgrid suite (``pytest --lg-env ... tests/hil``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_runners import runner
from airflow_provider_runners.operators.command import RunnerCommandOperator

CONN_ID = os.environ.get("RUNNERS_HIL_CONN_ID", "runners_bench")
BOARDS = [b.strip() for b in os.environ.get("RUNNERS_HIL_BOARDS", "imx8,stm32").split(",") if b.strip()]
READY_TIMEOUT = timedelta(seconds=float(os.environ.get("RUNNERS_HIL_READY_TIMEOUT_S", "1800")))

#: One task per HIL test; each runs on the bench with LG_PLACE etc. exported.
HIL_TESTS = {
    # The bench is ours: labgrid-client (acting as the holder) sees it acquired by this run.
    "held": 'labgrid-client -p "$LG_PLACE" show | tee /dev/stderr | grep -q "acquired: $LG_HOSTNAME/$LG_USERNAME"',
    "flash": 'echo "flash: writing image to $LG_PLACE (reservation $LG_TOKEN)"; sleep {{ params.hold_s }}',
    "boot": 'echo "boot: $LG_PLACE reached the login prompt"',
}


with DAG(
    dag_id="hil_bench_suite",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    dagrun_timeout=timedelta(hours=2),
    params={
        "hold_s": Param(1, type="number", minimum=0, description="seconds the flash step holds the bench")
    },
    tags=["runners", "example", "bench", "labgrid"],
    doc_md=__doc__,
) as dag:
    for board in BOARDS:
        with runner(
            f"bench_{board}",
            conn_id=CONN_ID,
            spec={
                "runner_class": "bench",
                "profile": "any",
                "tags": {"tenant": "hil", "pipeline": "hil-suite"},
                "ttl": "2h",
                "options": {"tags": {"board": board}},
            },
            ready_timeout=READY_TIMEOUT,
        ) as bench:
            # One task per HIL test, in sequence: one test at a time on a bench. (A mapped
            # RunnerCommandOperator.partial(...).expand(...) works too: runner() wires mapped
            # tasks before the teardown, see dags/dedicated_host_extract.py.)
            previous = None
            for name, command in HIL_TESTS.items():
                test = RunnerCommandOperator(
                    task_id=f"hil_{name}", handle=bench, command=command, timeout="30m"
                )
                if previous is not None:
                    previous >> test
                previous = test
