"""TaskFlow with borrowed compute: ``@task.runner``.

* ``word_lengths`` runs with a ``distributed.Client`` on a local Dask cluster borrowed for it;
* ``write_report`` runs with the handle of a dedicated host (``runners_local_host``: the worker
  itself) and writes into the host's workspace;
* ``summarize`` is a plain ``@task``.

Each decorated call makes a ``runner(...)`` task group (provision -> the function -> teardown),
with the same evidence and the same guarantee that the runner is given back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

TAGS = {"tenant": "analytics", "pipeline": "taskflow-runner"}


@task.runner(spec={"runner_class": "dask_cluster", "profile": "small", "tags": TAGS, "ttl": "30m"})
def word_lengths(client: Any, words: list[str]) -> dict[str, int]:
    futures = client.map(len, words)
    return dict(zip(words, client.gather(futures), strict=True))


@task.runner(
    conn_id="runners_local_host",
    spec={"runner_class": "dedicated_host", "profile": "XLarge", "tags": TAGS, "ttl": "30m"},
)
def write_report(host: Any, lengths: dict[str, int]) -> str:
    report = Path(host.endpoints["workspace"]) / "report.txt"
    report.write_text("".join(f"{word}\t{n}\n" for word, n in sorted(lengths.items())))
    return f"{host.resource_id}: {len(lengths)} words"


@task
def summarize(lengths: dict[str, int], written: str) -> dict[str, Any]:
    return {"longest": max(lengths, key=lambda w: lengths[w]), "written": written}


with DAG(
    dag_id="taskflow_runner",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    dagrun_timeout=timedelta(minutes=30),
    tags=["runners", "example", "taskflow"],
    doc_md=__doc__,
):
    lengths = word_lengths(["borrow", "compute", "always", "give", "it", "back"])
    summarize(lengths, write_report(lengths))
