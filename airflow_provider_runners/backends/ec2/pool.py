"""The ``ec2`` backend's warm-pool claim table: race-free claims of pooled hosts in DynamoDB.

A pooled host is a stopped (or idle running) instance tagged ``runner-pool=<pool key>`` and
``runner-pool-state=idle``. Tags alone cannot make a claim race-free (two DAG runs can read
the same idle tag and both start the host), so a claim is a **conditional write** on one item
per instance::

    instance_id (hash key, S)   claim_state = idle | claimed   claimed_by = <attempt token>
    pool_key, lineage_key, claimed_at (epoch s), released_at, version (N), expires_at (TTL)

``claim`` succeeds only when the item does not exist, is ``idle``, is already held by the
same attempt token (a replay of the same try), or holds a *stale* claim: one older than the
lease whose host was never re-tagged ``in-use`` (the claimant died between the claim and the
re-tag; candidates are only hosts still tagged ``idle``). DynamoDB evaluates the condition
atomically, so of two concurrent claims exactly one wins. ``release`` only succeeds for the
holder.

Table (created by :meth:`ClaimTable.ensure` when the Connection sets ``create_claim_table``,
otherwise create it once by hand)::

    aws dynamodb create-table --table-name airflow-runners-ec2-claims \\
        --attribute-definitions AttributeName=instance_id,AttributeType=S \\
        --key-schema AttributeName=instance_id,KeyType=HASH --billing-mode PAY_PER_REQUEST
    aws dynamodb update-time-to-live --table-name airflow-runners-ec2-claims \\
        --time-to-live-specification Enabled=true,AttributeName=expires_at

Items of terminated hosts are deleted by the backend and, as a backstop, expire by TTL.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TABLE = "airflow-runners-ec2-claims"
IDLE, CLAIMED = "idle", "claimed"
#: Epoch seconds when a host last went back to the pool; the warm-pool lifecycle
#: (:mod:`~airflow_provider_runners.backends.ec2.warm_pool`) ends hosts idle longer than their pool's idle ttl.
IDLE_SINCE_TAG = "runner-pool-idle-since"


def idle_tags(expires_at: int, now: datetime | None = None) -> list[dict[str, str]]:
    """The tags of a host that goes back to the pool: idle, since now, until ``expires_at``."""
    since = int((now or datetime.now(UTC)).timestamp())
    return [
        {"Key": "runner-pool-state", "Value": IDLE},
        {"Key": IDLE_SINCE_TAG, "Value": str(since)},
        {"Key": "expires-at", "Value": str(expires_at)},
    ]


def pool_key(*parts: str | None) -> str:
    """Pool identity: hosts are interchangeable only when all these parts match."""
    raw = "\x1f".join(part or "" for part in parts)
    return "rp" + hashlib.sha256(raw.encode()).hexdigest()[:20]


class ClaimTable:
    """Conditional-write claims on one DynamoDB table (client from the Amazon provider's hook)."""

    def __init__(self, client: Any, table: str = DEFAULT_TABLE) -> None:
        self.client = client
        self.table = table

    def _conditional_failed(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code == "ConditionalCheckFailedException"

    def ensure(self) -> None:
        """Create the table (on-demand billing, TTL on ``expires_at``) if it does not exist."""
        try:
            self.client.describe_table(TableName=self.table)
            return
        except self.client.exceptions.ResourceNotFoundException:
            pass
        try:
            self.client.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                Tags=[{"Key": "managed-by", "Value": "airflow-provider-runners"}],
            )
        except self.client.exceptions.ResourceInUseException:
            pass  # created concurrently
        self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1})
        self.client.update_time_to_live(
            TableName=self.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )

    def claim(
        self,
        instance_id: str,
        pool: str,
        attempt_token: str,
        lineage_key: str,
        lease_s: float,
        expires_at: int,
    ) -> bool:
        """Try to claim ``instance_id`` for one try; True when this try holds it now."""
        now = int(time.time())
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"instance_id": {"S": instance_id}},
                UpdateExpression=(
                    "SET claim_state = :claimed, claimed_by = :tok, lineage_key = :lk, pool_key = :pk, "
                    "claimed_at = :now, expires_at = :exp ADD version :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(instance_id) OR claim_state = :idle OR claimed_by = :tok "
                    "OR (claim_state = :claimed AND claimed_at < :stale)"
                ),
                ExpressionAttributeValues={
                    ":claimed": {"S": CLAIMED},
                    ":idle": {"S": IDLE},
                    ":tok": {"S": attempt_token},
                    ":lk": {"S": lineage_key},
                    ":pk": {"S": pool},
                    ":now": {"N": str(now)},
                    ":stale": {"N": str(int(now - lease_s))},
                    ":exp": {"N": str(expires_at)},
                    ":one": {"N": "1"},
                },
            )
        except Exception as exc:
            if self._conditional_failed(exc):
                return False
            raise
        return True

    def release(self, instance_id: str, pool: str, attempt_token: str, expires_at: int) -> bool:
        """Mark the host idle again; only its holder (or nobody, for a first entry) may."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"instance_id": {"S": instance_id}},
                UpdateExpression=(
                    "SET claim_state = :idle, pool_key = :pk, released_at = :now, expires_at = :exp "
                    "REMOVE claimed_by, lineage_key ADD version :one"
                ),
                ConditionExpression="attribute_not_exists(instance_id) OR claimed_by = :tok",
                ExpressionAttributeValues={
                    ":idle": {"S": IDLE},
                    ":pk": {"S": pool},
                    ":tok": {"S": attempt_token},
                    ":now": {"N": str(int(time.time()))},
                    ":exp": {"N": str(expires_at)},
                    ":one": {"N": "1"},
                },
            )
        except Exception as exc:
            if self._conditional_failed(exc):
                return False
            raise
        return True

    def forget(self, instance_id: str) -> None:
        """Delete the item of a terminated host (missing item: nothing to do)."""
        self.client.delete_item(TableName=self.table, Key={"instance_id": {"S": instance_id}})

    def get(self, instance_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table, Key={"instance_id": {"S": instance_id}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return {key: next(iter(value.values())) for key, value in item.items()}
