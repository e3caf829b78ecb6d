"""What a provision step hands to the rest of the DAG: :class:`RunnerHandle`.

A handle is small, JSON-serialisable and travels through XCom. It never carries a secret:
its validator rejects credential-looking keys and URIs with a password, so a backend that
tried to put one in would fail loudly in its own tests rather than leak in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_runners.core.redact import is_secret_key
from airflow_provider_runners.core.specs import RunnerClass

#: XCom key under which the handle is pushed as soon as the resource exists, before any wait.
HANDLE_XCOM_KEY = "runner_handle"
#: XCom key for the facts a step gathered for the evidence ledger.
FACTS_XCOM_KEY = "runner_facts"

Scalar = str | int | float | bool | None
_URI_PASSWORD_RE = re.compile(r"://[^/@\s:]*:[^/@\s]+@")


class RunnerPricing(BaseModel):
    """What a runner costs, fixed when it is provisioned (``core/prices.py``, docs/cost.md).

    ``usd_per_hour`` is every machine's price, fees excluded; :attr:`rate` adds the backend's
    per-vCPU fee on ``vcpus`` (all machines). ``nodes`` machines of the profile, ``spot_nodes``
    of them at the spot price (None: as the spec asked, see ``spot``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd_per_hour: float = Field(ge=0)
    vcpus: float = Field(default=0.0, ge=0, description="vCPUs of all machines (the per-vCPU fee's base).")
    billing_minimum_s: int = Field(default=0, ge=0)
    billing_vcpu_fee: float = Field(default=0.0, ge=0, description="$ per vCPU-hour on top of the price.")
    nodes: int = Field(default=1, ge=1)
    spot_nodes: int | None = Field(default=None, ge=0)
    spot: bool = False

    @property
    def rate(self) -> float:
        """$/hour, fees included."""
        return self.usd_per_hour + self.billing_vcpu_fee * self.vcpus

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> RunnerPricing | None:
        """The pricing a handle from an older release kept in its ``details`` (XCom, the evidence
        ledger, the runner index still hold such handles); None when it has none."""
        if details.get("usd_per_hour") is None:
            return None
        spot_nodes = details.get("spot_nodes")
        return cls(
            usd_per_hour=float(details["usd_per_hour"] or 0.0),
            vcpus=float(details.get("vcpus") or 0.0),
            billing_minimum_s=int(details.get("billing_minimum_s") or 0),
            billing_vcpu_fee=float(details.get("billing_vcpu_fee") or 0.0),
            nodes=int(details.get("nodes") or 1),
            spot_nodes=None if spot_nodes is None else int(spot_nodes),
            spot=bool(details.get("spot")),
        )


class RunnerHandle(BaseModel):
    """Identity of one live runner: enough for any later task to use it or tear it down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = Field(description="Backend name, e.g. 'local_dask'.")
    runner_class: RunnerClass
    resource_id: str = Field(min_length=1, description="The backend's id: cluster name, instance id, pod.")
    conn_id: str
    lineage_key: str
    attempt_token: str
    created_at: datetime
    expires_at: datetime = Field(description="Backstop: the backend ends the runner by itself after this.")
    environment: str
    profile: str
    tags: dict[str, str] = Field(default_factory=dict)
    endpoints: dict[str, str] = Field(default_factory=dict, description="e.g. {'scheduler': 'tcp://...'}")
    details: dict[str, Scalar] = Field(default_factory=dict, description="Backend-specific, non-secret.")
    adopted: bool = Field(default=False, description="True when a retry adopted an earlier try's runner.")
    pricing: RunnerPricing | None = Field(
        default=None, description="Set at provision; None on a handle rebuilt from tags (list_managed)."
    )

    @field_validator("endpoints", "details", "tags")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if is_secret_key(key):
                raise ValueError(f"key {key!r} looks like a secret; handles must never carry secrets")
            if isinstance(item, str) and _URI_PASSWORD_RE.search(item):
                raise ValueError(
                    f"value of {key!r} is a URI with a password; handles must never carry secrets"
                )
        return value

    @property
    def priced(self) -> RunnerPricing | None:
        """:attr:`pricing`, else what a handle of an older release carried in ``details`` (kept
        readable so handles already in XCom or the ledger still price); None: the catalog's job."""
        return self.pricing if self.pricing is not None else RunnerPricing.from_details(self.details)

    def to_xcom(self) -> dict[str, Any]:
        """JSON-compatible dict for XCom."""
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls, value: RunnerHandle | Mapping[str, Any] | str) -> RunnerHandle:
        """Accept what XCom, a template or a user may give: a handle, a dict or its JSON text."""
        if isinstance(value, RunnerHandle):
            return value
        if isinstance(value, str):
            return cls.model_validate_json(value)
        if isinstance(value, Mapping):
            return cls.model_validate(dict(value))
        raise TypeError(
            f"handle: expected a RunnerHandle, a mapping or JSON text, got {type(value).__name__}"
        )

    def evolve(self, **changes: Any) -> RunnerHandle:
        """A copy with ``changes`` applied and validated (endpoints/details are merged)."""
        data = self.model_dump()
        for key in ("endpoints", "details"):
            if key in changes:
                changes[key] = {**data[key], **changes[key]}
        data.update(changes)
        return RunnerHandle.model_validate(data)
