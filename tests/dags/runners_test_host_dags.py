"""DAGs for the local_host / RunnerCommandOperator integration tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_runners import RunnerCommandOperator, runner

START = datetime(2026, 1, 1)
HOST = {"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "qa"}, "ttl": "10m"}
#: Starts a child that would outlive a careless kill, then sleeps.
SLOW = "sleep 120 & echo child $!; sleep 120"

with DAG("runners_test_host_commands", schedule=None, start_date=START, catchup=False) as host_dag:
    with runner("host", conn_id="runners_local_host", spec=HOST) as host:
        RunnerCommandOperator(
            task_id="ok",
            handle=host,
            command='echo "user=$APP_USER token_len=$(printf %s "$APP_TOKEN" | wc -c)"; echo "token=$APP_TOKEN"',
            env={"APP_USER": "etl"},
            secret_env={"APP_TOKEN": "conn:runners_host_secret#password"},
        )
        RunnerCommandOperator(
            task_id="fails", handle=host, command=["sh", "-c", "echo about to fail; exit 3"]
        )
        RunnerCommandOperator(task_id="slow", handle=host, command=SLOW, timeout=2)

# The scheduler ends this run at its dagrun_timeout while the command still runs: teardown tasks
# do not run then, so only the reaper (tests/e2e) removes the host before its ttl.
with DAG(
    "runners_test_dagrun_timeout",
    schedule=None,
    start_date=START,
    catchup=False,
    dagrun_timeout=timedelta(seconds=25),
) as timeout_dag:
    with runner("host", conn_id="runners_local_host", spec=HOST) as host:
        RunnerCommandOperator(task_id="long", handle=host, command="sleep 300", timeout="10m")
