"""The shared registry: a DynamoDB table (one table for every worker; docs/cost.md).

**Resources created** (by :meth:`DynamoDBRegistry.ensure_table`, or create them yourself)

================  ==========================================================================
table             ``TABLE`` (``[runners] registry = dynamodb://TABLE``), on-demand billing,
                  partition key ``namespace`` (S), sort key ``runner_key`` (S)
TTL               attribute ``ttl_epoch`` = the runner's expiry + 1 day: DynamoDB deletes
                  records of runners long gone by itself
================  ==========================================================================

Every write that changes ownership or status is an ``UpdateItem`` with a
``ConditionExpression`` (the record exists, has the expected status and holder), so two
writers never both win. AWS access goes through the Amazon provider's ``AwsBaseHook`` with
``[runners] registry_conn_id`` (default ``aws_default``); its extra ``endpoint_url`` points
it elsewhere (tests use a moto server).

IAM: ``dynamodb:Query, GetItem, PutItem, UpdateItem, DeleteItem`` on the table
(``CreateTable, DescribeTable, UpdateTimeToLive`` for ``ensure_table``).

**Manual cleanup:** ``aws dynamodb delete-table --table-name TABLE`` (records are an index).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from airflow_provider_runners.exceptions import MissingExtraError
from airflow_provider_runners.governance.runner_index import RunnerRecord, RunnerRegistry

#: Records stay this long after their runner's expiry before DynamoDB TTL removes them.
TTL_RETENTION_S = 86400


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


class DynamoDBRegistry(RunnerRegistry):
    """Registry records in a DynamoDB table; see the module docstring."""

    def __init__(
        self, table: str, namespace: str = "default", aws_conn_id: str | None = "aws_default"
    ) -> None:
        super().__init__(namespace)
        if not table:
            raise ValueError("dynamodb registry: a table name is required (dynamodb://TABLE)")
        self.table_name = table
        self.aws_conn_id = aws_conn_id
        self._client: Any = None

    def __repr__(self) -> str:
        return f"DynamoDBRegistry({self.table_name!r}, namespace={self.namespace!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
            except ImportError:  # pragma: no cover - depends on the installed extras
                raise MissingExtraError(
                    "apache-airflow-providers-amazon", "amazon", "dynamodb registry"
                ) from None
            self._client = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="dynamodb").get_conn()
        return self._client

    def _serializer(self) -> tuple[Any, Any]:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        return TypeSerializer(), TypeDeserializer()

    def ensure_table(self) -> None:
        """Create the table (on-demand, with TTL) if it does not exist; wait until it is active."""
        client = self.client
        try:
            client.describe_table(TableName=self.table_name)
            return
        except client.exceptions.ResourceNotFoundException:
            pass
        try:
            client.create_table(
                TableName=self.table_name,
                AttributeDefinitions=[
                    {"AttributeName": "namespace", "AttributeType": "S"},
                    {"AttributeName": "runner_key", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "namespace", "KeyType": "HASH"},
                    {"AttributeName": "runner_key", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except client.exceptions.ResourceInUseException:  # created by someone else meanwhile
            pass
        client.get_waiter("table_exists").wait(TableName=self.table_name, WaiterConfig={"Delay": 1})
        client.update_time_to_live(
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl_epoch"},
        )

    def _key(self, key: str) -> dict[str, Any]:
        return {"namespace": {"S": self.namespace}, "runner_key": {"S": key}}

    def put(self, record: RunnerRecord) -> None:
        ser, _ = self._serializer()
        item = {k: v for k, v in record.to_item().items() if k != "key"}
        item.update(namespace=self.namespace, runner_key=record.key)
        item["ttl_epoch"] = int(record.expires_at) + TTL_RETENTION_S
        self.client.put_item(
            TableName=self.table_name,
            Item={k: ser.serialize(_to_dynamo(v)) for k, v in item.items()},
        )

    def _record(self, item: dict[str, Any]) -> RunnerRecord:
        _, de = self._serializer()
        data = {k: de.deserialize(v) for k, v in item.items()}
        data["key"] = data.pop("runner_key")
        return RunnerRecord.from_item(data)

    def get(self, key: str) -> RunnerRecord | None:
        item = self.client.get_item(TableName=self.table_name, Key=self._key(key), ConsistentRead=True).get(
            "Item"
        )
        return self._record(item) if item else None

    def records(self) -> list[RunnerRecord]:
        found: list[RunnerRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#ns = :ns",
            "ExpressionAttributeNames": {"#ns": "namespace"},
            "ExpressionAttributeValues": {":ns": {"S": self.namespace}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            found.extend(self._record(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(found, key=lambda r: r.registered_at)

    def transition(
        self,
        key: str,
        status: str | None = None,
        *,
        expect_status: Iterable[str] | None = None,
        expect_holder: str | None = None,
        **changes: Any,
    ) -> bool:
        ser, _ = self._serializer()
        if status is not None:
            changes["status"] = status
        if "key" in changes:
            raise ValueError("cannot change registry field 'key'")
        if "status" in changes:
            RunnerRecord(key=key, backend="", conn_id="", status=changes["status"])  # validates
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets = []
        for i, (name, value) in enumerate(changes.items()):
            names[f"#f{i}"] = name
            values[f":v{i}"] = ser.serialize(_to_dynamo(value))
            sets.append(f"#f{i} = :v{i}")
        if "expires_at" in changes:
            names["#ttl"] = "ttl_epoch"
            values[":ttl"] = ser.serialize(Decimal(int(changes["expires_at"]) + TTL_RETENTION_S))
            sets.append("#ttl = :ttl")
        conditions = ["attribute_exists(runner_key)"]
        if expect_status is not None:
            names["#status"] = "status"
            wanted = [f":s{i}" for i, _ in enumerate(expect_status)]
            for placeholder, value in zip(wanted, expect_status, strict=True):
                values[placeholder] = {"S": value}
            conditions.append(f"#status IN ({', '.join(wanted)})")
        if expect_holder is not None:
            names["#holder"] = "holder"
            values[":holder"] = {"S": expect_holder}
            conditions.append("#holder = :holder")
        client = self.client
        try:
            client.update_item(
                TableName=self.table_name,
                Key=self._key(key),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=self._key(key))
