"""Cost estimates: catalog $/hour x billed seconds, with the backend's billing rule.

EC2 bills Linux per second with a 60 s minimum; Dataproc adds $0.010 per vCPU-hour, per
second, 1 minute minimum, on top of compute. Both are :class:`BillingRule` rows in the
catalog, so the estimate is one formula::

    billed_s = max(seconds, minimum_seconds)
    usd      = billed_s / 3600 * (hourly_rate + per_vcpu_hour_fee * vcpus)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_runners.core.catalog import BillingRule

if TYPE_CHECKING:
    from airflow_provider_runners.core.catalog import Catalog, ResolvedSpec
    from airflow_provider_runners.core.handles import RunnerHandle, RunnerPricing


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


def machine_rate(resolved: ResolvedSpec, nodes: int = 1, spot_nodes: int | None = None) -> float:
    """$/hour of ``nodes`` machines of the profile, fees excluded. ``spot_nodes`` None: every node
    at :attr:`ResolvedSpec.hourly_rate` (spot if the spec asks and the catalog knows). Otherwise
    what the backend provisions: ``spot_nodes`` at the spot price, the rest on-demand (a Dataproc
    cluster's spot secondaries next to its on-demand master and primaries; docs/cost.md)."""
    if spot_nodes is None or resolved.price is None:
        return resolved.hourly_rate * nodes
    price = resolved.price
    spot = price.spot if price.spot is not None else price.on_demand
    return price.on_demand * (nodes - spot_nodes) + spot * spot_nodes


def runner_pricing(resolved: ResolvedSpec, nodes: int = 1, spot_nodes: int | None = None) -> RunnerPricing:
    """The pricing of a runner of ``resolved`` that is ``nodes`` machines of the profile (a
    Dataproc cluster is a master plus its workers), ``spot_nodes`` of them at the spot price
    (:func:`machine_rate`). Both the price and the vCPUs (the per-vCPU fee's base) count every node."""
    from airflow_provider_runners.core.handles import RunnerPricing

    return RunnerPricing(
        usd_per_hour=machine_rate(resolved, nodes, spot_nodes),
        vcpus=(resolved.profile.effective_vcpus or 0) * nodes,
        billing_minimum_s=resolved.billing.minimum_seconds,
        billing_vcpu_fee=resolved.billing.per_vcpu_hour_fee,
        nodes=nodes,
        spot_nodes=spot_nodes,
        spot=resolved.spec.spot if spot_nodes is None else spot_nodes > 0,
    )


def runner_rate(resolved: ResolvedSpec, nodes: int = 1, spot_nodes: int | None = None) -> float:
    """$/hour of a runner of ``resolved`` before it exists: catalog price x nodes (``spot_nodes``
    of them at the spot price, see :func:`machine_rate`), plus the backend's per-vCPU fee on
    every node's vCPUs (the budget guard's "new runner" rate)."""
    return runner_pricing(resolved, nodes, spot_nodes).rate


def handle_rate(handle: RunnerHandle, catalog: Catalog | None = None) -> float | None:
    """$/hour of a live runner, fees included; None when neither the handle nor the catalog knows.

    A handle from a provision carries its :class:`RunnerPricing` (``handle.priced``, which also
    reads the ``details`` keys of handles from older releases). A handle rebuilt from tags by
    ``list_managed()`` has none: then the catalog price of its environment and profile
    (x ``details.nodes``) is used.
    """
    pricing = handle.priced
    if pricing is not None:
        return pricing.rate
    details = handle.details
    from airflow_provider_runners.core.catalog import load_catalog

    try:
        catalog = catalog or load_catalog()
    except Exception:  # noqa: BLE001 - an unreadable catalog means "unknown", not a crash
        return None
    from airflow_provider_runners.core.lineage import label_value

    env = catalog.environments.get(handle.environment)
    profiles = env.profiles.get(handle.runner_class, {}) if env else {}
    # Tags carry the label form of the profile name ("large" for "Large").
    profile = profiles.get(handle.profile) or next(
        (p for name, p in profiles.items() if label_value(name) == handle.profile), None
    )
    # The machine the backend reports (an EC2 instance type) prices a runner whose profile is unknown.
    machine = details.get("instance_type") or details.get("machine_type")
    if profile is None and not machine:
        return None
    key = (profile.price_key or profile.machine_type) if profile else str(machine)
    prices = {**catalog.prices, **(env.prices if env else {})}
    price = prices.get(key) if key else None
    nodes = int(details.get("nodes") or 1)
    spot = bool(details.get("spot")) or handle.tags.get("spot") == "true"
    rate = 0.0
    if price is not None:
        rate = price.spot if spot and price.spot is not None else price.on_demand
    if price is not None and details.get("spot_nodes") is not None:  # as provisioned: spot + on-demand
        spot_n = int(details.get("spot_nodes") or 0)
        spot_rate = price.spot if price.spot is not None else price.on_demand
        rate = (price.on_demand * (nodes - spot_n) + spot_rate * spot_n) / max(nodes, 1)
    if profile is None:
        return None if price is None else rate * nodes
    vcpus = profile.effective_vcpus
    fee = catalog.billing.get(handle.backend, BillingRule()).per_vcpu_hour_fee
    if price is None and not fee:
        return 0.0 if key is None else None
    return rate * nodes + fee * (vcpus or 0) * nodes
