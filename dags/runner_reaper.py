"""The reaper, every 15 minutes: end managed runners nobody will tear down any more.

A DAG run that hits ``dagrun_timeout`` skips its teardown tasks; a worker can die between
create and teardown. Every runner ends itself at its ttl anyway (the backstop), but until
then it bills. This DAG sweeps every configured runner backend and tears down runners that are
past ``expires-at`` or whose DAG run has ended, writes a ``reap`` evidence entry for each, and
never touches a resource without the ``managed-by: airflow-provider-runners`` tag
(``airflow_provider_runners/governance/reaper.py``; the same sweep is ``airflow-runners reap``).

Inside a task the metadata DB is off limits, so: runner Connections come from
``AIRFLOW_CONN_*`` variables and ``[runners] reaper_conn_ids`` (plus ``runners_default``);
a runner's DAG run from the runner registry; its state through the Task SDK. The CLI can also
read Connections and task instances from the metadata DB.

This DAG provisions nothing, so it has no setup/teardown pair (the ``runners-maintenance`` tag
tells the DAG-folder test so). Trigger it with ``{"dry_run": true}`` to see what it would do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task


@task
def sweep() -> dict[str, Any]:
    """One sweep; fails (after sweeping everything) if a backend could not be listed or a teardown failed."""
    from airflow_provider_runners.exceptions import ReaperError
    from airflow_provider_runners.governance.reaper import TaskSdkRuns, sweep as reap

    context = get_current_context()
    dry_run = bool(context["params"].get("dry_run", False))
    report = reap(dry_run=dry_run, runs=TaskSdkRuns(context["ti"]), use_db=False)
    for action in report.actions:
        print(
            f"{action.decision:<8} {action.resource_id} ({action.backend}, {action.conn_id}): {action.reason}"
        )
    if not report.ok:
        raise ReaperError(
            f"reaper: {len(report.errors)} problem(s), every other backend was swept: {report.errors}"
        )
    return report.summary()


with DAG(
    dag_id="runner_reaper",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=14),
    params={"dry_run": Param(False, type="boolean", description="report only: change nothing")},
    tags=["runners", "runners-maintenance"],
    doc_md=__doc__,
) as runner_reaper:
    sweep()
