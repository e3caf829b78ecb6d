"""``Backend.probe`` of the ``ec2`` backend (mixed into ``Ec2Backend``; "Test Connection").

One ``DescribeInstances`` call with ``MaxResults=5`` and the managed-by tag filter in the
Connection's region, through the Amazon provider's ``AwsBaseHook`` client of ``aws_conn_id``:
proves the endpoint, the credentials and ``ec2:DescribeInstances``. Creates nothing.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_runners.core.lineage import MANAGED_BY


class Ec2Probe:
    region: str
    aws_conn_id: str

    def client(self, service: str) -> Any:
        raise NotImplementedError

    def probe(self) -> str:
        out = self.client("ec2").describe_instances(
            Filters=[{"Name": "tag:managed-by", "Values": [MANAGED_BY]}], MaxResults=5
        )
        found = sum(len(r.get("Instances", [])) for r in out.get("Reservations", []))
        more = " or more" if out.get("NextToken") else ""
        return (
            f"EC2 API in {self.region} reachable with AWS Connection {self.aws_conn_id!r}; "
            f"{found}{more} managed instance(s)"
        )
