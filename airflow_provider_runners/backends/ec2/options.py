"""The ``ec2`` backend's metadata: the ``spec.options`` it accepts and its Connection form
(docs/architecture.md, "Adding a backend")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from airflow_provider_runners.core.backend import ConnField

TeardownMode = Literal["terminate", "pool"]


class Ec2Options(BaseModel):
    """``spec.options`` of an EC2 host: how it is given back (docs/ec2.md)."""

    model_config = ConfigDict(extra="forbid")
    teardown: TeardownMode | None = None


CONN_FIELDS: dict[str, ConnField] = {
    "region_name": ConnField("Region", placeholder="eu-west-1"),
    "aws_conn_id": ConnField(
        "AWS Connection", "Credentials come from this Connection.", placeholder="aws_default"
    ),
    "instance_profile": ConnField("Instance profile", placeholder="runner-host"),
    "claim_table": ConnField("Warm-pool claim table (DynamoDB)", placeholder="airflow-runners-ec2-claims"),
    "pool_idle_ttl": ConnField("Warm-pool idle TTL", default="24h"),
}

PLACEHOLDERS: dict[str, str] = {
    "extra": '{"network_profiles": {"private": {"subnet_id": "subnet-0abc", "security_group_ids": ["sg-0abc"]}}}'
}
