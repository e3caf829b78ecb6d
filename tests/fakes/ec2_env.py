"""A small AWS account on the moto server for the ``ec2`` backend: network, AMIs, secrets, catalog.

Used by tests/unit/test_ec2_backend.py, tests/integration/test_ec2.py and benchmarks/ec2_api_calls.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from tests.fakes.aws import HostAgent, MotoServer, aws_connection

REGION = "us-east-1"
DIGEST = "sha256:" + "9c" * 32
OLD_DIGEST = "sha256:" + "0a" * 32
SECRET_VALUE = "pw-EC2-SECRET-7d41b9"
PARAM_VALUE = "tok-EC2-SECRET-c3e02f"
BUNDLE_BYTES = b"fake hana jdbc driver 2.19.16\n"
AWS_CONN_ID = "aws_moto"
RUNNER_CONN_ID = "runners_ec2_test"


@dataclass
class Ec2Env:
    server: MotoServer
    agent: HostAgent
    workdir: Path
    ids: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.server.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def provision_account(self) -> Ec2Env:
        """VPC, subnets, security group, instance profile, AMIs, secrets, a driver bundle, the catalog."""
        ec2, iam = self.client("ec2"), self.client("iam")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
        public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="runner-hosts", Description="runners", VpcId=vpc)["GroupId"]
        iam.create_instance_profile(InstanceProfileName="runner-host")
        ami = ec2.register_image(Name="hardened-base-2026.11", RootDeviceName="/dev/xvda")["ImageId"]
        ec2.create_tags(Resources=[ami], Tags=[{"Key": "runner-image-digest", "Value": DIGEST}])
        rogue = ec2.register_image(Name="hardened-base-2026.12", RootDeviceName="/dev/xvda")["ImageId"]
        ec2.create_tags(Resources=[rogue], Tags=[{"Key": "runner-image-digest", "Value": OLD_DIGEST}])
        sm = self.client("secretsmanager")
        sm.create_secret(Name="prod/erp", SecretString=json.dumps({"user": "etl", "password": SECRET_VALUE}))
        self.client("ssm").put_parameter(Name="/etl/api-token", Value=PARAM_VALUE, Type="SecureString")
        s3 = self.client("s3")
        s3.create_bucket(Bucket="runner-drivers")
        s3.put_object(Bucket="runner-drivers", Key="hana/ngdbc-2.19.16.jar", Body=BUNDLE_BYTES)
        self.ids = {"vpc": vpc, "private": private, "public": public, "sg": sg, "ami": ami, "rogue": rogue}
        self.write_catalog()
        return self

    @property
    def catalog_path(self) -> str:
        return str(self.workdir / "ec2-catalog.yaml")

    def write_catalog(self) -> None:
        import yaml

        host = {"memory_gib": 64, "disk_gib": 50}
        catalog = {
            "version": 1,
            "default_environment": "aws",
            "environments": {
                "aws": {
                    "default_network_profile": "private",
                    "network_profiles": {
                        "private": {"kind": "private"},
                        "public": {"kind": "public", "public_egress": True},
                    },
                    "profiles": {
                        "dedicated_host": {
                            "Large": {
                                "machine_type": "r5.2xlarge",
                                "vcpus": 8,
                                **host,
                                "options": {"ebs_volume_type": "gp3"},
                            },
                            "XLarge": {
                                "machine_type": "r5.8xlarge",
                                "vcpus": 32,
                                "memory_gib": 256,
                                "disk_gib": 100,
                            },
                            "Custom": {
                                "machine_type": "x2iedn.4xlarge",
                                "vcpus": 16,
                                "requires_approval": True,
                            },
                            "Pooled": {
                                "machine_type": "r5.2xlarge",
                                "vcpus": 8,
                                "options": {"teardown": "pool"},
                            },
                        }
                    },
                }
            },
            "images": {
                "hardened-base": {
                    "2026.11": {
                        "digest": DIGEST,
                        "runner_classes": ["dedicated_host"],
                        "options": {"amis": {REGION: self.ids["ami"]}},
                    },
                    "2026.12": {
                        "digest": DIGEST,
                        "runner_classes": ["dedicated_host"],
                        "options": {"amis": {REGION: self.ids["rogue"]}},
                    },
                    "2027.1": {
                        "digest": DIGEST,
                        "runner_classes": ["dedicated_host"],
                        "options": {"amis": {"eu-west-1": "ami-0123"}},
                    },
                    "2025.1": {"digest": OLD_DIGEST, "runner_classes": ["dedicated_host"], "approved": False},
                }
            },
            "driver_bundles": {
                "hana-jdbc": {
                    "2.19.16": {
                        "sha256": hashlib.sha256(BUNDLE_BYTES).hexdigest(),
                        "uri": "s3://runner-drivers/hana/ngdbc-2.19.16.jar",
                    }
                },
                "oracle-odbc": {"21.13": {"sha256": "7e" * 32}},
            },
            "prices": {
                "r5.2xlarge": {"on_demand": 0.504, "spot": 0.151},
                "r5.8xlarge": {"on_demand": 2.016, "spot": 0.605},
                "x2iedn.4xlarge": {"on_demand": 3.3345, "spot": 1.0004},
            },
            "billing": {"ec2": {"minimum_seconds": 60}},
        }
        Path(self.catalog_path).write_text(yaml.safe_dump(catalog, sort_keys=False))

    def runner_extra(self, **overrides: Any) -> dict[str, Any]:
        extra = {
            "region_name": REGION,
            "aws_conn_id": AWS_CONN_ID,
            "instance_profile": "runner-host",
            "network_profiles": {
                "private": {"subnet_id": self.ids["private"], "security_group_ids": [self.ids["sg"]]},
                "public": {"subnet_id": self.ids["public"], "security_group_ids": [self.ids["sg"]]},
            },
            "claim_table": "runner-claims",
            "create_claim_table": True,
            "drivers_dir": str(self.workdir / "drivers"),
            "pool_idle_ttl": "2h",
        }
        extra.update(overrides)
        return extra

    def connections(self, **overrides: Any) -> dict[str, str]:
        """Environment variables defining the aws and runners_ec2 Connections."""
        return {
            f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}": json.dumps(aws_connection(self.server.url, REGION)),
            f"AIRFLOW_CONN_{RUNNER_CONN_ID.upper()}": json.dumps(
                {"conn_type": "runners_ec2", "extra": self.runner_extra(**overrides)}
            ),
        }

    def managed(
        self, states: tuple[str, ...] = ("pending", "running", "stopping", "stopped")
    ) -> list[dict[str, Any]]:
        from tests.fakes.aws import instances

        return instances(
            self.client("ec2"),
            [
                {"Name": "tag:managed-by", "Values": ["airflow-provider-runners"]},
                {"Name": "instance-state-name", "Values": list(states)},
            ],
        )


def start_env(workdir: Path, online_after_s: float = 0.0) -> Ec2Env:
    server = MotoServer().start()
    agent = HostAgent(server, workdir, online_after_s=online_after_s).install()
    server.reset()  # moto's state is per process, shared by every server in it
    return Ec2Env(server, agent, workdir).provision_account()


def stop_env(env: Ec2Env) -> None:
    env.server.reset()
    env.agent.uninstall()
    env.server.stop()


def now() -> datetime:
    return datetime.now(UTC)
