"""One-shot setup of docker-compose.yaml's ``moto`` service (run by ``airflow-init``; safe to run
twice). moto keeps everything in memory: it is gone when the ``moto`` container stops, and this
script makes it again.

* the SQS queue ``dags/hybrid_burst.py`` reads its depth from (``RUNNERS_BURST_QUEUE_URL``,
  through ``RUNNERS_BURST_AWS_CONN_ID``), and the queue of ``dags/job_array_burst.py``'s
  orchestrator config (``RUNNERS_BURST_CONFIG``'s ``queue_url``), when that is set;
* the runner registry's DynamoDB table (``[runners] registry = dynamodb://TABLE`` through
  ``[runners] registry_conn_id``, airflow_provider_runners/runner_registry/dynamodb.py);
* for the ``runners_ec2`` Connection ``RUNNERS_BURST_EC2_CONN_ID`` (default ``runners_ec2``; the
  ``ec2`` backend, docs/ec2.md): a VPC with the subnet and security groups of each of its
  ``network_profiles`` (with exactly those ids: scripts/moto-standin.py honours moto's
  ``_custom_id_`` tag), its ``instance_profile``, the warm-pool claim table ``claim_table``, and
  every approved catalog image's AMI in its ``region_name`` (the id the catalog's
  ``options.amis`` names), tagged ``runner-image-digest`` = the catalog digest;
* the Secrets Manager secret ``prod/erp`` (``{"user", "password"}`` of the ``erp_source``
  Connection) that ``dags/dedicated_host_extract.py`` reads on its EC2 host
  (``aws-sm:prod/erp#password``). Its value is never printed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

CUSTOM_ID = "_custom_id_"
VPC_CIDR = "10.20.0.0/16"
VPC_NAME = "runners-compose"
ERP_SECRET_ID = "prod/erp"


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _tagged(kind: str, resource_id: str, **tags: str) -> list[dict[str, Any]]:
    pairs = {CUSTOM_ID: resource_id, **tags}
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in pairs.items()]}]


def prepare_network(ec2: Any, network_profiles: dict[str, Any]) -> None:
    """One VPC; per network profile its subnet and security groups, with the Connection's ids."""
    found = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [VPC_NAME]}])["Vpcs"]
    vpc = (
        found[0]["VpcId"]
        if found
        else ec2.create_vpc(
            CidrBlock=VPC_CIDR,
            TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": VPC_NAME}]}],
        )["Vpc"]["VpcId"]
    )
    for index, (name, profile) in enumerate(sorted(network_profiles.items()), start=1):
        subnet = profile.get("subnet_id")
        if (
            subnet
            and not ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [subnet]}])["Subnets"]
        ):
            ec2.create_subnet(
                VpcId=vpc,
                CidrBlock=f"10.20.{index}.0/24",
                TagSpecifications=_tagged("subnet", subnet, Name=name),
            )
        for group in profile.get("security_group_ids") or []:
            if not ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group]}])[
                "SecurityGroups"
            ]:
                ec2.create_security_group(
                    GroupName=f"runner-hosts-{group}",
                    Description=f"runner hosts ({name})",
                    VpcId=vpc,
                    TagSpecifications=_tagged("security-group", group),
                )
        print(f"network profile {name}: subnet {subnet}, security groups {profile.get('security_group_ids')}")


def prepare_images(ec2: Any, region: str) -> None:
    """Every approved catalog image with an AMI in ``region``: that AMI, tagged with its digest."""
    from airflow_provider_runners.core.catalog import load_catalog

    for name, versions in sorted(load_catalog().images.items()):
        for version, image in sorted(versions.items()):
            ami = (image.options.get("amis") or {}).get(region)
            if not image.approved or not ami:
                continue
            try:
                ec2.describe_images(ImageIds=[ami])
            except Exception as exc:
                if not _code(exc).startswith("InvalidAMIID"):
                    raise
                ec2.register_image(
                    Name=f"{name}-{version}",
                    RootDeviceName="/dev/xvda",
                    TagSpecifications=_tagged("image", ami),
                )
            ec2.create_tags(Resources=[ami], Tags=[{"Key": "runner-image-digest", "Value": image.digest}])
            print(f"AMI {ami} ({name}@{version}) tagged runner-image-digest={image.digest}")


def prepare_ec2(conn_id: str) -> None:
    from airflow_provider_runners.backends.registry import get_backend

    backend: Any = get_backend(conn_id)
    if backend.name != "ec2":
        raise ValueError(f"Connection {conn_id!r}: conn_type {backend.conn_type!r}; expected 'runners_ec2'")
    extra = backend.config.extra
    prepare_network(backend.client("ec2"), extra.get("network_profiles") or {})
    if profile := extra.get("instance_profile"):
        iam = backend.client("iam")
        try:
            iam.get_instance_profile(InstanceProfileName=profile)
        except iam.exceptions.NoSuchEntityException:
            iam.create_instance_profile(InstanceProfileName=profile)
        print(f"instance profile {profile}")
    prepare_images(backend.client("ec2"), backend.region)
    backend.claims().ensure()
    print(f"warm-pool claim table {backend.claim_table_name}")
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        erp = BaseHook.get_connection("erp_source")
    except AirflowNotFoundException:
        return
    value = json.dumps({"user": erp.login or "", "password": erp.password or ""})
    sm = backend.client("secretsmanager")
    try:
        sm.put_secret_value(SecretId=ERP_SECRET_ID, SecretString=value)
    except sm.exceptions.ResourceNotFoundException:
        sm.create_secret(Name=ERP_SECRET_ID, SecretString=value)
    print(f"secret {ERP_SECRET_ID} holds the erp_source Connection's login and password")


def main() -> int:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from airflow_provider_runners.governance.burst_config import BurstConfig
    from airflow_provider_runners.governance.runner_index import open_registry

    sqs = AwsBaseHook(aws_conn_id=os.environ["RUNNERS_BURST_AWS_CONN_ID"], client_type="sqs").get_conn()
    queue_urls = [os.environ["RUNNERS_BURST_QUEUE_URL"]]
    if os.environ.get("RUNNERS_BURST_CONFIG"):
        queue_urls.append(BurstConfig.load(os.environ["RUNNERS_BURST_CONFIG"]).queue_url)
    for queue_url in queue_urls:
        made = sqs.create_queue(QueueName=queue_url.rstrip("/").rsplit("/", 1)[1])["QueueUrl"]
        print(f"SQS queue {made} (for {queue_url})")
    registry = open_registry()
    registry.ensure_table()  # type: ignore[attr-defined]
    print(f"runner registry table {registry.table_name} is active")  # type: ignore[attr-defined]
    prepare_ec2(os.environ.get("RUNNERS_BURST_EC2_CONN_ID") or "runners_ec2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
