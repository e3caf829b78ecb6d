"""The ``ec2`` backend. Dedicated EC2 hosts: plan, warm-pool claims, SSM commands (docs/ec2.md)."""

from __future__ import annotations

from airflow_provider_runners.backends.ec2.backend import Ec2Backend

__all__ = ["Ec2Backend"]
