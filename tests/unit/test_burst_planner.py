"""The burst planner's invariants, as properties over generated policies, states and traces."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings, strategies as st

from airflow_provider_runners.governance.burst import (
    MAX_LAUNCH_PER_CYCLE,
    MAX_TERMINATE_PER_CYCLE,
    BurstPolicy,
    BurstState,
    plan,
    seed001_plan,
)


@st.composite
def policies(draw: st.DrawFn) -> BurstPolicy:
    max_cloud = draw(st.integers(0, 60))
    min_cloud = draw(st.integers(0, min(max_cloud, 8)))
    rate = draw(st.sampled_from([0.0, 0.0031, 0.2, 0.68, 2.016]))
    budget = draw(st.one_of(st.none(), st.floats(0, 40, allow_nan=False)))
    assume(budget is None or min_cloud * rate <= budget)
    return BurstPolicy(
        queue_depth_threshold=draw(st.integers(0, 300)),
        max_cloud_instances=max_cloud,
        min_cloud_instances=min_cloud,
        cost_budget=budget,
        usd_per_hour=rate,
        jobs_per_instance=draw(st.integers(1, 20)),
        scale_down_delay=draw(st.sampled_from([0.0, 60.0, 300.0])),
    )


@st.composite
def states(draw: st.DrawFn, policy: BurstPolicy) -> BurstState:
    now = draw(st.floats(0, 1e6, allow_nan=False))
    return BurstState(
        queue_depth=draw(st.integers(0, 5000)),
        cloud_count=draw(st.integers(0, policy.max_cloud_instances + 5)),
        local_count=draw(st.integers(0, 10)),
        now=now,
        low_since=draw(st.one_of(st.none(), st.floats(0, now, allow_nan=False))),
        other_usd_per_hour=draw(st.sampled_from([0.0, 0.0, 1.0, 5.0])),
    )


def spend(policy: BurstPolicy, state: BurstState, cloud: int) -> float:
    return state.other_usd_per_hour + cloud * policy.usd_per_hour


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_one_cycle_respects_every_cap(data: st.DataObject) -> None:
    policy = data.draw(policies())
    state = data.draw(states(policy))
    d = plan(policy, state)
    assert d.launch >= 0
    assert d.terminate >= 0
    assert not (d.launch and d.terminate), "a cycle either launches or terminates"
    assert d.cloud_after == state.cloud_count + d.launch - d.terminate
    assert d.launch <= MAX_LAUNCH_PER_CYCLE
    assert d.terminate <= MAX_TERMINATE_PER_CYCLE
    if d.launch:
        assert d.cloud_after <= policy.max_cloud_instances
        if policy.cost_budget is not None and policy.usd_per_hour > 0:  # free runners cost no budget
            assert spend(policy, state, d.cloud_after) <= policy.cost_budget + 1e-6
    else:
        # Never grows past max; an excess above max shrinks at the per-cycle rate.
        assert d.cloud_after <= max(policy.max_cloud_instances, state.cloud_count)
    if d.terminate:
        assert d.cloud_after >= policy.min_cloud_instances, "never ends a runner below the warm minimum"


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_plan_is_pure(data: st.DataObject) -> None:
    policy = data.draw(policies())
    state = data.draw(states(policy))
    assert plan(policy, state) == plan(policy, state)


def run(
    policy: BurstPolicy, depths: list[int], cloud: int = 0, local: int = 0, step: float = 60.0
) -> list[int]:
    """Apply decisions cycle by cycle (launched runners join at once); return cloud counts."""
    low_since = None
    counts = []
    for i, depth in enumerate(depths):
        d = plan(policy, BurstState(depth, cloud, local, now=i * step, low_since=low_since))
        cloud, low_since = d.cloud_after, d.low_since
        counts.append(cloud)
    return counts


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_empty_queue_converges_to_the_warm_minimum(data: st.DataObject) -> None:
    policy = data.draw(policies())
    start = data.draw(st.integers(0, policy.max_cloud_instances))
    assume(policy.cost_budget is None or spend(policy, BurstState(0, 0), start) <= policy.cost_budget)
    # Enough cycles to wait out the delay and shed everything 5 at a time.
    cycles = math.ceil(policy.scale_down_delay / 60) + math.ceil(start / MAX_TERMINATE_PER_CYCLE) + 2
    counts = run(policy, [0] * cycles, cloud=start)
    assert counts[-1] == policy.min_cloud_instances
    assert all(c >= min(start, policy.min_cloud_instances) for c in counts)


@settings(max_examples=200, deadline=None)
@given(depths=st.lists(st.integers(0, 3000), min_size=1, max_size=60), data=st.data())
def test_a_whole_trace_stays_within_max_and_budget(depths: list[int], data: st.DataObject) -> None:
    policy = data.draw(policies())
    for count in run(policy, depths):
        assert count <= policy.max_cloud_instances
        if policy.cost_budget is not None and policy.usd_per_hour:
            assert count * policy.usd_per_hour <= policy.cost_budget + 1e-6


def test_default_policy_is_seed_001s() -> None:
    p = BurstPolicy()
    assert (p.queue_depth_threshold, p.max_cloud_instances, p.min_cloud_instances) == (100, 50, 0)
    assert p.scale_down_delay == 300
    assert p.jobs_per_instance == 10
    assert BurstPolicy.from_mapping({"scale_down_delay": "5m", "cost_budget": 10.0}).scale_down_delay == 300


def test_seed_example_budget_caps_the_burst_at_25_spot_runners() -> None:
    # Seed 001: "$5/hour, c5.4xlarge Spot ($0.20/hr) -> max instances 25".
    policy = BurstPolicy(
        queue_depth_threshold=50, max_cloud_instances=100, cost_budget=5.0, usd_per_hour=0.20
    )
    counts = run(policy, [5000] * 10)
    assert counts[:3] == [10, 20, 25]
    assert counts[-1] == 25


def test_scale_up_and_scale_down_numbers() -> None:
    policy = BurstPolicy(queue_depth_threshold=100, max_cloud_instances=20, scale_down_delay=120)
    # 150 jobs, 2 local runners: 15 needed, 13 in the cloud, 10 this cycle (cap), 3 the next.
    d = plan(policy, BurstState(queue_depth=150, cloud_count=0, local_count=2))
    assert (d.launch, d.terminate, d.reason) == (10, 0, "scale up")
    assert "per_cycle" in d.limits
    d = plan(policy, BurstState(queue_depth=150, cloud_count=10, local_count=2))
    assert d.launch == 3
    # Between threshold/2 and threshold: hold (hysteresis).
    assert plan(policy, BurstState(queue_depth=80, cloud_count=13)).reason == "hold"
    # Low, but not for scale_down_delay yet; then 5 per cycle.
    d = plan(policy, BurstState(queue_depth=20, cloud_count=13, now=1000))
    assert (d.terminate, d.low_since, d.reason) == (0, 1000, "waiting for scale_down_delay")
    d = plan(policy, BurstState(queue_depth=20, cloud_count=13, now=1120, low_since=1000))
    assert (d.terminate, d.cloud_after) == (5, 8)
    # Depth recovering above threshold/2 resets the low spell.
    assert plan(policy, BurstState(queue_depth=60, cloud_count=8, now=1200, low_since=1000)).low_since is None


def test_warm_pool_is_filled_and_kept() -> None:
    policy = BurstPolicy(min_cloud_instances=3, scale_down_delay=0)
    assert run(policy, [0, 0, 0]) == [3, 3, 3]


def test_over_budget_after_a_price_change_sheds_runners() -> None:
    policy = BurstPolicy(cost_budget=2.0, usd_per_hour=0.68, max_cloud_instances=20)
    d = plan(policy, BurstState(queue_depth=500, cloud_count=8))  # 8 x 0.68 = 5.44 > 2.0
    assert (d.launch, d.terminate, d.reason) == (0, 5, "over budget")
    assert plan(policy, BurstState(queue_depth=500, cloud_count=3)).terminate == 1  # 2.04 > 2.0


def test_seed_formula_never_reaches_zero_and_overshoots_its_budget() -> None:
    """Why the planner differs from seed 001 (documented in cost/burst.py)."""
    policy = BurstPolicy(queue_depth_threshold=50, max_cloud_instances=40, cost_budget=1.0, usd_per_hour=0.68)
    low_since, cloud = None, 0
    for i, depth in enumerate([2000] * 3 + [0] * 20):
        d = seed001_plan(policy, BurstState(depth, cloud, 0, now=i * 600.0, low_since=low_since))
        cloud, low_since = d.cloud_after, d.low_since
        if i == 0:
            assert cloud == 10
            assert cloud * 0.68 > 1.0
    assert cloud == 1  # depth // 10 + 1 keeps one instance for ever
    assert run(policy, [2000] * 3 + [0] * 20, step=600.0)[-1] == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_cloud_instances": 5, "max_cloud_instances": 2}, "min_cloud_instances: 5 is above max"),
        ({"min_cloud_instances": 4, "usd_per_hour": 1.0, "cost_budget": 3.0}, "exceed cost_budget"),
        ({"jobs_per_instance": 0}, "jobs_per_instance: 0 must be >= 1"),
        ({"cost_budget": -1.0}, "cost_budget: -1.0 must be >= 0"),
        ({"instance_type": "c5.large"}, "unknown field(s) ['instance_type']"),
    ],
)
def test_invalid_policies_are_named(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="invalid burst policy") as info:
        BurstPolicy.from_mapping(values)
    assert message in str(info.value)
