"""The single-task form: each task creates its own runner, uses it, and ends it — one task
instance, no provision or teardown task (like Airflow's ``KubernetesPodOperator``).

* ``count_words`` — ``DaskJobOperator(spec=...)``: a local Dask cluster (Connection
  ``runners_default``), a word count on it, then the cluster is ended.
* ``checksum`` — ``RunnerCommandOperator(spec=...)``: a dedicated local host (Connection
  ``runners_local_host``), a shell command on it, then the host is ended.

Use it for one short job per runner. For a runner shared by several tasks, or a readiness wait
in the triggerer instead of a worker slot (cloud runners take minutes), use ``runner(...)``
(``dags/local_dask_etl.py``). Nothing to clean up by hand: a try ends its runner whatever its
outcome; a killed one is ended by ``on_kill``, its ttl or the reaper.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_runners import DaskJobOperator, RunnerCommandOperator

WORDS = ["borrow", "compute", "always", "give", "it", "back"]


def count_words(client: Any, words: list[str]) -> dict[str, int]:
    """Word lengths, computed on the borrowed cluster's workers."""
    futures = client.map(len, words)
    return dict(zip(words, client.gather(futures), strict=True))


with DAG(
    dag_id="single_task_runner",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    dagrun_timeout=timedelta(minutes=15),
    tags=["runners", "example", "runners-single-task"],
    doc_md=__doc__,
) as dag:
    words = DaskJobOperator(
        task_id="count_words",
        spec={
            "runner_class": "dask_cluster",
            "profile": "small",
            "tags": {"tenant": "analytics"},
            "ttl": "15m",
        },
        conn_id="runners_default",
        python_callable=count_words,
        op_args=[WORDS],
    )
    checksum = RunnerCommandOperator(
        task_id="checksum",
        spec={
            "runner_class": "dedicated_host",
            "profile": "Large",
            "tags": {"tenant": "analytics"},
            "ttl": "15m",
        },
        conn_id="runners_local_host",
        command="echo '{{ ti.xcom_pull(task_ids=\"count_words\") | tojson }}' | sha256sum",
        timeout="5m",
    )
    words >> checksum

if __name__ == "__main__":
    dag.test()
