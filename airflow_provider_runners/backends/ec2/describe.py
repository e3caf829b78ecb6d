"""Batched EC2 reads for the ``ec2`` backend: instances by id, and their status checks.

Few waiting hosts (≤ ``PER_CALL``) are read by id, one call per 100. A poll of many waiters
reads every host with the managed-by tag, ``PAGE_SIZE`` (1000, the most AWS returns) per call,
so the EC2 calls per poll are ⌈managed hosts / 1000⌉, not ⌈waiters / 100⌉ (docs/benchmarks.md,
issue 18).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_runners.core.lineage import MANAGED_BY

PER_CALL = 100  # instance ids per Describe* call
PAGE_SIZE = 1000  # MaxResults of one DescribeInstances / DescribeInstanceStatus page (AWS: 5-1000)
NOT_TERMINATED = ["pending", "running", "shutting-down", "stopping", "stopped"]


def describe(ec2: Any, filters: list[dict[str, Any]], page_size: int | None = None) -> list[dict[str, Any]]:
    """Every instance DescribeInstances returns for ``filters``, over all pages."""
    config = {"PageSize": page_size} if page_size else {}
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters, PaginationConfig=config)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def instances(ec2: Any, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """By instance-id *filter*: unknown ids are simply absent (InstanceIds= would fail the call).

    More than PER_CALL ids: the managed-by tag filter, PAGE_SIZE per call, terminated hosts left
    out; ids it did not return (terminated, or a host that lost its tags) are then looked up by id."""
    ids = list(dict.fromkeys(ids))
    found: dict[str, dict[str, Any]] = {}
    if len(ids) > PER_CALL:
        wanted = set(ids)
        managed = describe(
            ec2,
            [
                {"Name": "tag:managed-by", "Values": [MANAGED_BY]},
                # terminated hosts stay visible for about an hour: they would only fill pages
                {"Name": "instance-state-name", "Values": NOT_TERMINATED},
            ],
            PAGE_SIZE,
        )
        found = {i["InstanceId"]: i for i in managed if i["InstanceId"] in wanted}
        ids = [i for i in ids if i not in found]
    for start in range(0, len(ids), PER_CALL):
        for inst in describe(ec2, [{"Name": "instance-id", "Values": ids[start : start + PER_CALL]}]):
            found[inst["InstanceId"]] = inst
    return found


def status_checks(ec2: Any, running: list[str]) -> dict[str, tuple[str, str]]:
    """``(instance status, system status)`` of running hosts that report them: one call by id up
    to PER_CALL hosts; above, every running host of the region, PAGE_SIZE per call
    (DescribeInstanceStatus has no tag filter)."""
    if not running:
        return {}
    pages: Iterable[Mapping[str, Any]]
    if len(running) > PER_CALL:
        pages = ec2.get_paginator("describe_instance_status").paginate(
            Filters=[{"Name": "instance-state-name", "Values": ["running"]}],
            PaginationConfig={"PageSize": PAGE_SIZE},
        )
    else:
        pages = [ec2.describe_instance_status(InstanceIds=running)]
    wanted = set(running)
    return {
        st["InstanceId"]: (st["InstanceStatus"]["Status"], st["SystemStatus"]["Status"])
        for page in pages
        for st in page.get("InstanceStatuses", [])
        if st["InstanceId"] in wanted
    }
