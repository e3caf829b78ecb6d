"""Burst planner: how many cloud runners to launch or end this cycle (a pure function; docs/cost.md).

:func:`plan` is a pure function of a :class:`BurstPolicy` and a :class:`BurstState` (queue depth,
runners, time, spend): no I/O, no clock, so it is property-tested and simulated
(``benchmarks/burst_simulation.py``). :class:`~airflow_provider_runners.operators.burst.BurstPlanOperator`
feeds it the live numbers each cycle.

**Policy** (the reference ``burst_policy`` of docs/cost.md, same names and defaults)::

    capacity needed  = ceil(queue_depth / jobs_per_instance)          (0 for an empty queue)
    cloud needed     = max(capacity needed - local_count, min_cloud_instances)

    scale up    when queue_depth > queue_depth_threshold and cloud needed > cloud_count:
                launch = min(cloud needed - cloud_count,
                             max_cloud_instances - cloud_count,
                             max_launch_per_cycle (10),
                             what the $/hour budget still has room for)
    warm pool   when cloud_count < min_cloud_instances: launch up to min (same caps), any depth
    scale down  when queue_depth < queue_depth_threshold / 2 has held for scale_down_delay:
                terminate = min(cloud_count - cloud needed, cloud_count - min_cloud_instances,
                                max_terminate_per_cycle (5))
    in between  (threshold/2 <= depth <= threshold): hold — hysteresis, no flapping
    out of bounds (above max, or over budget because prices or other runners changed):
                terminate the excess, same caps, never below min

An empty queue always counts as low (also with ``queue_depth_threshold: 0``).

**Differences from the reference formula** (docs/cost.md), on purpose (both are in ``benchmarks/burst_simulation.py``):

* the reference needs ``depth // 10 + 1`` instances, so an empty queue still wants one: its
  scale-down stops at 1 cloud instance for ever. Here an empty queue needs 0 (ceil).
* the reference checks the budget only *before* a cycle ("current cost < budget") and may then
  launch 10 more; here the launch count itself is capped so the spend after launching is
  within the budget.
* ``min_cloud_instances`` is kept warm by launching up to it, not only by refusing to go below.

Invariants (``tests/unit/test_burst_planner.py``, hypothesis): never above ``max_cloud_instances``,
never launches over the budget, at most 10 up / 5 down per cycle, never ends a runner below
``min_cloud_instances``, and an empty queue converges to ``min_cloud_instances`` (0 by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Seed 001's per-cycle caps.
MAX_LAUNCH_PER_CYCLE = 10
MAX_TERMINATE_PER_CYCLE = 5
_EPS = 1e-9


@dataclass(frozen=True)
class BurstPolicy:
    """Seed 001's ``burst_policy``. Durations in seconds; money in USD per hour."""

    queue_depth_threshold: int = 100
    max_cloud_instances: int = 50
    min_cloud_instances: int = 0
    #: $/hour ceiling on the cloud runners (plus ``BurstState.other_usd_per_hour``); None = no cap.
    cost_budget: float | None = None
    #: $/hour of one cloud runner (catalog price of its profile; spot if the spec asks for spot).
    usd_per_hour: float = 0.0
    #: Jobs one runner handles at once (the reference assumes ~10).
    jobs_per_instance: int = 10
    scale_down_delay: float = 300.0
    max_launch_per_cycle: int = MAX_LAUNCH_PER_CYCLE
    max_terminate_per_cycle: int = MAX_TERMINATE_PER_CYCLE

    def __post_init__(self) -> None:
        problems = []
        for name in ("queue_depth_threshold", "max_cloud_instances", "min_cloud_instances"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: {getattr(self, name)} must be >= 0")
        for name in ("jobs_per_instance", "max_launch_per_cycle", "max_terminate_per_cycle"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)} must be >= 1")
        if self.min_cloud_instances > self.max_cloud_instances:
            problems.append(
                f"min_cloud_instances: {self.min_cloud_instances} is above max_cloud_instances "
                f"({self.max_cloud_instances})"
            )
        if self.usd_per_hour < 0 or self.scale_down_delay < 0:
            problems.append("usd_per_hour and scale_down_delay must be >= 0")
        if self.cost_budget is not None:
            if self.cost_budget < 0:
                problems.append(f"cost_budget: {self.cost_budget} must be >= 0")
            elif self.min_cloud_instances * self.usd_per_hour > self.cost_budget + _EPS:
                problems.append(
                    f"min_cloud_instances: {self.min_cloud_instances} warm runners at "
                    f"${self.usd_per_hour}/h exceed cost_budget ${self.cost_budget}/h"
                )
        if problems:
            raise ValueError("invalid burst policy: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> BurstPolicy:
        """From the reference policy's YAML keys (docs/cost.md) (``scale_down_delay`` also as ``"5m"``); unknown keys are errors."""
        from airflow_provider_runners.core.specs import parse_duration

        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"invalid burst policy: unknown field(s) {unknown}; allowed: {sorted(known)}")
        data = dict(values)
        if "scale_down_delay" in data:
            delay = parse_duration(data["scale_down_delay"])
            data["scale_down_delay"] = (
                delay.total_seconds() if hasattr(delay, "total_seconds") else float(delay)
            )
        return cls(**data)

    def budget_room(self, cloud_count: int, other_usd_per_hour: float = 0.0) -> int | None:
        """Runners the budget still allows on top of ``cloud_count`` (None = unlimited)."""
        if self.cost_budget is None or self.usd_per_hour <= 0:
            return None
        spare = self.cost_budget - other_usd_per_hour - cloud_count * self.usd_per_hour
        return math.floor(spare / self.usd_per_hour + _EPS)


@dataclass(frozen=True)
class BurstState:
    """What the planner sees at one cycle. ``now`` and ``low_since`` are seconds on any clock."""

    queue_depth: int
    cloud_count: int
    local_count: int = 0
    now: float = 0.0
    #: When the queue first fell below threshold/2 in the current low spell (from the last decision).
    low_since: float | None = None
    #: $/hour already spent in the budget's scope by runners the planner does not manage.
    other_usd_per_hour: float = 0.0


@dataclass(frozen=True)
class BurstDecision:
    """What to do this cycle, and the state to carry to the next one."""

    launch: int
    terminate: int
    cloud_after: int
    low_since: float | None
    reason: str
    limits: tuple[str, ...] = field(default_factory=tuple)


def plan(policy: BurstPolicy, state: BurstState) -> BurstDecision:
    """Decide one cycle. Pure: the same inputs always give the same decision."""
    depth = max(int(state.queue_depth), 0)
    cloud = max(int(state.cloud_count), 0)
    needed_total = math.ceil(depth / policy.jobs_per_instance)
    cloud_needed = max(needed_total - max(state.local_count, 0), 0, policy.min_cloud_instances)
    low = depth == 0 or depth < policy.queue_depth_threshold / 2
    low_since = (state.low_since if state.low_since is not None else state.now) if low else None
    room = policy.budget_room(cloud, state.other_usd_per_hour)
    floor = policy.min_cloud_instances

    # Out of bounds (the policy or prices changed since the runners started): shed the excess now.
    excess = max(cloud - policy.max_cloud_instances, -room if room is not None else 0)
    if excess > 0 and cloud > floor:
        terminate = min(excess, cloud - floor, policy.max_terminate_per_cycle)
        why = "over budget" if room is not None and room < 0 else "above max_cloud_instances"
        return BurstDecision(0, terminate, cloud - terminate, low_since, why, ("out of bounds",))

    wants_up = cloud < policy.min_cloud_instances or (
        depth > policy.queue_depth_threshold and cloud_needed > cloud
    )
    if wants_up:
        caps = {
            "queue": cloud_needed - cloud,
            "max_cloud_instances": policy.max_cloud_instances - cloud,
            "per_cycle": policy.max_launch_per_cycle,
        }
        if room is not None:
            caps["cost_budget"] = room
        launch = max(min(caps.values()), 0)
        limits = tuple(name for name, cap in caps.items() if cap <= launch and name != "queue")
        warm = cloud < floor and depth <= policy.queue_depth_threshold
        reason = "at limit" if launch == 0 else "warm pool" if warm else "scale up"
        return BurstDecision(launch, 0, cloud + launch, low_since, reason, limits)

    if low and cloud > cloud_needed:
        assert low_since is not None
        if state.now - low_since < policy.scale_down_delay:
            return BurstDecision(0, 0, cloud, low_since, "waiting for scale_down_delay")
        terminate = max(min(cloud - cloud_needed, cloud - floor, policy.max_terminate_per_cycle), 0)
        return BurstDecision(0, terminate, cloud - terminate, low_since, "scale down")
    return BurstDecision(0, 0, cloud, low_since, "hold")


def seed001_plan(policy: BurstPolicy, state: BurstState, budget: bool = True) -> BurstDecision:
    """Seed 001's formulas verbatim (reference for the simulation; not used by the operator).

    Scale up: ``needed = depth // 10 + 1``, ``to_launch = min(needed - (local + cloud),
    max - cloud, 10)`` when depth > threshold and current cost < budget. Scale down:
    ``excess = cloud - (depth // 10 + 1)``, ``min(excess, cloud - min, 5)`` when depth <
    threshold/2 for scale_down_delay. ``budget=False`` drops the cost check.
    """
    depth, cloud, local = state.queue_depth, state.cloud_count, state.local_count
    low = depth < policy.queue_depth_threshold / 2
    low_since = (state.low_since if state.low_since is not None else state.now) if low else None
    needed = depth // 10 + 1
    under_budget = (
        not budget
        or policy.cost_budget is None
        or state.other_usd_per_hour + cloud * policy.usd_per_hour < policy.cost_budget
    )
    if depth > policy.queue_depth_threshold and cloud < policy.max_cloud_instances and under_budget:
        launch = max(min(needed - (local + cloud), policy.max_cloud_instances - cloud, 10), 0)
        return BurstDecision(launch, 0, cloud + launch, low_since, "seed001 scale up")
    waited = low_since is not None and state.now - low_since >= policy.scale_down_delay
    if low and cloud > policy.min_cloud_instances and waited:
        terminate = max(min(cloud - needed, cloud - policy.min_cloud_instances, 5), 0)
        return BurstDecision(0, terminate, cloud - terminate, low_since, "seed001 scale down")
    return BurstDecision(0, 0, cloud, low_since, "seed001 hold")
