"""One-shot setup of docker-compose.yaml's ``moto`` service (run by ``airflow-init``; safe to run
twice): the SQS queue ``dags/hybrid_burst.py`` reads its depth from (``RUNNERS_BURST_QUEUE_URL``,
through ``RUNNERS_BURST_AWS_CONN_ID``) and the runner registry's DynamoDB table
(``[runners] registry = dynamodb://TABLE`` through ``[runners] registry_conn_id``,
airflow_provider_runners/runner_registry/dynamodb.py). moto keeps both in memory: they are gone
when the ``moto`` container stops, and this script makes them again.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from airflow_provider_runners.governance.runner_index import open_registry

    queue_url = os.environ["RUNNERS_BURST_QUEUE_URL"]
    sqs = AwsBaseHook(aws_conn_id=os.environ["RUNNERS_BURST_AWS_CONN_ID"], client_type="sqs").get_conn()
    made = sqs.create_queue(QueueName=queue_url.rstrip("/").rsplit("/", 1)[1])["QueueUrl"]
    print(f"SQS queue {made} (RUNNERS_BURST_QUEUE_URL={queue_url})")
    registry = open_registry()
    registry.ensure_table()  # type: ignore[attr-defined]
    print(f"runner registry table {registry.table_name} is active")  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
