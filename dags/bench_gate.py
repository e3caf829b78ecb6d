"""Start a HIL suite only when a matching bench is free: :class:`BenchAvailableSensor`.

``wait_for_bench`` waits (deferred, in the triggerer; it reserves nothing) until a bench with
``board=<params.board>`` is free on the bench platform of Connection ``params.conn_id``
(``runners_labgrid`` or ``runners_bench_http``), then ``bench`` borrows one — queued, acquired,
checked ready, always released — and runs a smoke test on it. The sensor's XCom is the list of
benches that were free. Set ``AIRFLOW_CONN_RUNNERS_BENCH`` as in ``dags/hil_bench_suite.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_runners import runner
from airflow_provider_runners.operators.command import RunnerCommandOperator
from airflow_provider_runners.sensors.runners import BenchAvailableSensor

with DAG(
    dag_id="bench_gate",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    dagrun_timeout=timedelta(hours=2),
    params={"conn_id": Param("runners_bench", type="string", description="bench Connection")},
    tags=["runners", "example", "bench", "sensor"],
    doc_md=__doc__,
) as dag:
    free = BenchAvailableSensor(
        task_id="wait_for_bench",
        conn_id="{{ params.conn_id }}",
        tags={"board": "imx8"},
        timeout=timedelta(hours=1),
        poll_interval=2.0,
    )
    with runner(
        "bench",
        conn_id="{{ params.conn_id }}",
        spec={
            "runner_class": "bench",
            "profile": "any",
            "tags": {"tenant": "hil", "pipeline": "bench-gate"},
            "ttl": "1h",
            "options": {"tags": {"board": "imx8"}},
        },
    ) as bench:
        RunnerCommandOperator(
            task_id="smoke",
            handle=bench,
            command='echo "smoke test on ${LG_PLACE:-$BENCH_ID}"',
            timeout="10m",
        )
    free >> dag.task_group_dict["bench"]
