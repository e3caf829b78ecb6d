"""The job-array orchestrator config, read as users write it: ``burst_policy`` with mode,
check_interval, spot.

What it is for: the job-array burst (docs/cost.md, "Job-array burst on EC2") reads this YAML::

    job_array_id: my-pipeline
    queue_url: https://sqs.us-east-1.amazonaws.com/123456789012/my-queue
    region: us-east-1
    burst_policy:
      mode: auto                 # auto: every cycle plans; manual: only `airflow-runners burst --count N` launches
      queue_depth_threshold: 100
      max_cloud_instances: 50
      min_cloud_instances: 0     # kept warm across cycles, also on an empty queue
      cost_budget: 10.0          # $/hour
      scale_down_delay: 5m
      check_interval: 1m         # the schedule of the burst DAG
      instance_type: c5.4xlarge  # must be the machine_type of the spec's catalog profile
      ami: ami-0abc...           # must be an AMI the catalog approves for the spec's image
      spot: true                 # launch spot hosts (the spec's spot)
      key_name: my-key           # recorded; hosts are reached through SSM, no key pair is attached
      subnet_id: subnet-abc123   # must match the network profile the runners_ec2 Connection resolves
      security_groups: [sg-abc123]

A bare ``burst_policy`` mapping is accepted too. The planner fields become a
:class:`~airflow_provider_runners.governance.burst.BurstPolicy`; the launch fields are *checked*
against the catalog (the catalog, not the YAML, decides what may be launched): a mismatch is an
error naming the field, the value and the allowed value. Unknown keys are errors. Creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_provider_runners.governance.burst import BurstPolicy

MODES = ("auto", "manual")
#: Launch fields of the burst_policy (docs/cost.md) (checked against the catalog / the Connection).
LAUNCH_FIELDS = ("instance_type", "ami", "spot", "key_name", "subnet_id", "security_groups")
_OWN_FIELDS = ("mode", "check_interval", *LAUNCH_FIELDS)
_TOP_FIELDS = ("job_array_id", "queue_url", "region", "burst_policy")


def _seconds(name: str, value: Any) -> float:
    from airflow_provider_runners.core.specs import parse_duration

    parsed = parse_duration(value)
    if isinstance(parsed, timedelta):
        return parsed.total_seconds()
    if isinstance(parsed, int | float) and not isinstance(parsed, bool) and parsed >= 0:
        return float(parsed)
    raise ValueError(f"invalid burst policy: {name}: {value!r}; use 30s, 1m, 5m (a number with s, m, h or d)")


@dataclass(frozen=True)
class BurstConfig:
    """One job array's burst settings (the orchestrator config of docs/cost.md)."""

    policy: BurstPolicy
    mode: str = "auto"
    check_interval: float = 60.0
    spot: bool | None = None
    instance_type: str | None = None
    ami: str | None = None
    key_name: str | None = None
    subnet_id: str | None = None
    security_groups: tuple[str, ...] = ()
    job_array_id: str | None = None
    queue_url: str | None = None
    region: str | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> BurstConfig:
        """From the orchestrator config (docs/cost.md) (with ``burst_policy:``) or a bare burst_policy."""
        values = dict(values or {})
        top: dict[str, Any] = {}
        if "burst_policy" in values:
            unknown = sorted(set(values) - set(_TOP_FIELDS))
            if unknown:
                raise ValueError(
                    f"invalid burst config: unknown field(s) {unknown}; allowed: {sorted(_TOP_FIELDS)}"
                )
            top = {k: values[k] for k in ("job_array_id", "queue_url", "region") if k in values}
            values = dict(values["burst_policy"] or {})
        own = {k: values.pop(k) for k in _OWN_FIELDS if k in values}
        try:
            policy = BurstPolicy.from_mapping(values)
        except ValueError as exc:
            if "unknown field" in str(exc):
                allowed = sorted(set(BurstPolicy.__dataclass_fields__) | set(_OWN_FIELDS))
                unknown = sorted(set(values) - set(BurstPolicy.__dataclass_fields__))
                raise ValueError(
                    f"invalid burst policy: unknown field(s) {unknown}; allowed: {allowed}"
                ) from None
            raise
        mode = str(own.get("mode", "auto"))
        if mode not in MODES:
            raise ValueError(f"invalid burst policy: mode: {mode!r}; allowed: {list(MODES)}")
        spot = own.get("spot")
        if spot is not None and not isinstance(spot, bool):
            raise ValueError(f"invalid burst policy: spot: {spot!r}; allowed: true, false")
        groups = own.get("security_groups") or ()
        if isinstance(groups, str) or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"invalid burst policy: security_groups: {groups!r}; a list of sg-... ids")
        interval = _seconds("check_interval", own.get("check_interval", 60.0))
        if interval <= 0:
            raise ValueError(f"invalid burst policy: check_interval: {own['check_interval']!r} must be > 0")
        return cls(
            policy=policy,
            mode=mode,
            check_interval=interval,
            spot=spot,
            instance_type=own.get("instance_type"),
            ami=own.get("ami"),
            key_name=own.get("key_name"),
            subnet_id=own.get("subnet_id"),
            security_groups=tuple(groups),
            **top,
        )

    @classmethod
    def load(cls, source: str | Path | dict[str, Any]) -> BurstConfig:
        """From a mapping, a YAML file path or YAML text."""
        import yaml

        if isinstance(source, dict):
            return cls.from_mapping(source)
        text = str(source)
        if "\n" not in text and Path(text).is_file():
            text = Path(text).read_text()
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"invalid burst config: expected a mapping, got {type(data).__name__}")  # noqa: TRY004
        return cls.from_mapping(data)

    def check_launch(
        self,
        machine_type: str | None,
        approved_amis: dict[str, str] | None = None,
        subnet_id: str | None = None,
        security_group_ids: tuple[str, ...] | None = None,
    ) -> None:
        """Raise ValueError when a launch field disagrees with what the catalog / Connection resolve to.

        ``approved_amis``: region -> AMI of the spec's image; ``subnet_id`` / ``security_group_ids``:
        the network profile's (None = not known here, not checked).
        """
        problems = []
        if self.instance_type is not None and self.instance_type != machine_type:
            problems.append(
                f"instance_type: {self.instance_type!r}, but the spec's catalog profile launches "
                f"{machine_type!r}; pick the profile with that machine_type or drop instance_type"
            )
        if self.ami is not None and approved_amis is not None and self.ami not in approved_amis.values():
            problems.append(
                f"ami: {self.ami!r} is not an AMI the catalog approves for the spec's image; "
                f"allowed: {sorted(set(approved_amis.values()))}"
            )
        if self.subnet_id is not None and subnet_id is not None and self.subnet_id != subnet_id:
            problems.append(
                f"subnet_id: {self.subnet_id!r}, but the network profile resolves to {subnet_id!r}"
            )
        groups = security_group_ids
        if self.security_groups and groups is not None and sorted(self.security_groups) != sorted(groups):
            problems.append(
                f"security_groups: {list(self.security_groups)}, but the network profile resolves to {sorted(groups)}"
            )
        if problems:
            raise ValueError("burst policy disagrees with the catalog: " + "; ".join(problems))
