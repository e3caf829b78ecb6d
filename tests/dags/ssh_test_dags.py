"""DAGs for the ssh backend's integration tests (tests/integration/test_ssh.py): the Connection
``runners_ssh_test`` is defined by the test, pointing at its own sshd."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_runners import RunnerCommandOperator, runner

START = datetime(2026, 1, 1)
HOST = {"runner_class": "dedicated_host", "profile": "Large", "tags": {"tenant": "qa"}, "ttl": "10m"}

with DAG("runners_test_ssh_commands", schedule=None, start_date=START, catchup=False) as ssh_dag:
    with runner("host", conn_id="runners_ssh_test", spec={**HOST, "backend": "ssh"}) as host:
        write = RunnerCommandOperator(
            task_id="write",
            handle=host,
            command='echo "user=$APP_USER token=$APP_TOKEN"; echo data > "$RUNNER_WORKSPACE/out.txt"',
            env={"APP_USER": "etl"},
            secret_env={"APP_TOKEN": "conn:runners_ssh_test_secret#password"},
        )
        read = RunnerCommandOperator(task_id="read", handle=host, command=["cat", "out.txt"])
        fails = RunnerCommandOperator(task_id="fails", handle=host, command="echo about to fail; exit 3")
        slow = RunnerCommandOperator(task_id="slow", handle=host, command="sleep 120 & sleep 120", timeout=2)
        write >> read >> [fails, slow]
