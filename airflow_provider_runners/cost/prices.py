"""Cost estimates: catalog $/hour x billed seconds, with the backend's billing rule.

EC2 bills Linux per second with a 60 s minimum; Dataproc adds $0.010 per vCPU-hour, per
second, 1 minute minimum, on top of compute. Both are :class:`BillingRule` rows in the
catalog, so the estimate is one formula::

    billed_s = max(seconds, minimum_seconds)
    usd      = billed_s / 3600 * (hourly_rate + per_vcpu_hour_fee * vcpus)
"""

from __future__ import annotations

from typing import Any

from airflow_provider_runners.catalog import BillingRule


def estimate_cost(
    seconds: float,
    hourly_rate: float,
    billing: BillingRule | None = None,
    vcpus: float = 0.0,
) -> dict[str, Any]:
    """USD estimate for ``seconds`` of one runner, with the numbers it came from."""
    billing = billing or BillingRule()
    seconds = max(float(seconds), 0.0)
    billed = max(seconds, float(billing.minimum_seconds))
    rate = hourly_rate + billing.per_vcpu_hour_fee * vcpus
    return {
        "usd": round(billed / 3600.0 * rate, 6),
        "seconds": round(seconds, 3),
        "billed_seconds": round(billed, 3),
        "usd_per_hour": round(rate, 6),
    }
