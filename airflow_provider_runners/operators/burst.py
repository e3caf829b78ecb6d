"""Hybrid burst: :class:`BurstPlanOperator` decides how many cloud runners to launch this cycle.

Each run of a burst DAG is one planning cycle (the policy's ``check_interval``, docs/cost.md, is the DAG's
schedule). The operator reads the queue depth (SQS ``ApproximateNumberOfMessages`` through the
Amazon provider's ``SqsHook``, or any callable), counts the cloud runners of its pool that are
alive, asks the pure planner (:func:`airflow_provider_runners.governance.burst.plan`) and returns one
*launch* per runner to start — a list for ``.expand()``::

    plan = BurstPlanOperator(task_id="plan", policy={...}, spec=CLOUD_SPEC, conn_id="runners_ec2",
                             queue_url="https://sqs...", aws_conn_id="aws_default", local_count=2)

    @task_group
    def cloud(launch):
        with runner("runner", conn_id="runners_ec2", spec=CLOUD_SPEC) as handle:
            work(handle, launch)

    cloud.expand(launch=plan.output)

Scale-down: the planner's ``terminate`` count marks that many of the pool's oldest runners
``draining`` in the runner registry (a conditional write: running -> draining). Work loops
check :func:`should_drain` between jobs and return, so their DAG run's teardown ends the
runner — nothing is killed under a running job. Runners also end when their queue drains.

The pool is the spec's ``tags.extra["burst-pool"]`` (else its pipeline); the ``low_since``
clock that ``scale_down_delay`` needs is kept in an Airflow Variable between cycles.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import DEFAULT_CONN_ID, get_backend
from airflow_provider_runners.core import metrics
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.prices import runner_rate
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.governance.budget import safe_registry
from airflow_provider_runners.governance.burst import BurstDecision, BurstPolicy, BurstState, plan
from airflow_provider_runners.governance.burst_config import BurstConfig

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_runners.core.handles import RunnerHandle

POOL_TAG = "burst-pool"
DECISION_XCOM_KEY = "burst_decision"


def pool_of(spec: RunnerSpec) -> str:
    return spec.tags.extra.get(POOL_TAG) or spec.tags.pipeline or "default"


def should_drain(handle: RunnerHandle | Mapping[str, Any]) -> bool:
    """True when the planner asked this runner to finish (registry status ``draining``)."""
    from airflow_provider_runners.core.handles import RunnerHandle

    key = RunnerHandle.from_xcom(handle).lineage_key
    try:
        record = safe_registry().get(key)
    except Exception:  # noqa: BLE001 - an unreachable registry never stops work
        return False
    return record is not None and record.status == "draining"


class BurstPlanOperator(BaseOperator):
    """Plan one burst cycle; return the runners to launch (a list for ``.expand()``).

    :param policy: a :class:`~airflow_provider_runners.governance.burst.BurstPolicy` or the reference policy's
        ``burst_policy`` keys. ``usd_per_hour`` defaults to the catalog price of ``spec``.
    :param spec: the cloud runners' spec (validated against the catalog at parse time).
    :param conn_id: the cloud runners' Connection (its backend lists the live ones).
    :param queue_url: SQS queue to read the depth of (with ``aws_conn_id``); or
    :param queue_depth: a callable returning the depth (a local queue, a database count...).
    :param local_count: runners that are always there (on-prem, local) and take jobs too.
    :param cloud_count: a callable returning the live cloud runners, instead of listing them.

    Creates nothing itself. XCom ``burst_decision``: the decision and the numbers it saw.
    """

    template_fields = ("queue_url", "conn_id")
    ui_color = "#e8e0f4"

    def __init__(
        self,
        *,
        policy: BurstPolicy | Mapping[str, Any],
        spec: RunnerSpec | Mapping[str, Any],
        conn_id: str = DEFAULT_CONN_ID,
        queue_url: str | None = None,
        aws_conn_id: str | None = "aws_default",
        queue_depth: Callable[[], int] | None = None,
        local_count: int = 0,
        cloud_count: Callable[[], int] | None = None,
        catalog_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # the burst_policy as users write it (mode, check_interval, spot, instance_type...; docs/cost.md)
        config = None if isinstance(policy, BurstPolicy) else BurstConfig.load(dict(policy))
        self.policy = policy if isinstance(policy, BurstPolicy) else config.policy  # type: ignore[union-attr]
        self.mode = config.mode if config else "auto"
        self.spec = RunnerSpec.parse(spec)
        if config is not None and config.spot is not None and config.spot != self.spec.spot:
            self.spec = RunnerSpec.parse({**self.spec.model_dump(mode="json"), "spot": config.spot})
        self.catalog_path = catalog_path
        resolved = resolve_spec(self.spec, catalog_path=catalog_path)  # bad spec: parse-time error
        if config is not None:
            amis = (resolved.image.options.get("amis") if resolved.image else None) or None
            config.check_launch(resolved.profile.machine_type, approved_amis=amis)
        if (queue_url is None) == (queue_depth is None):
            raise ValueError(
                "BurstPlanOperator needs exactly one of queue_url= (SQS) or queue_depth= (a callable)"
            )
        self.conn_id = conn_id
        self.queue_url = queue_url
        self.aws_conn_id = aws_conn_id
        self.queue_depth = queue_depth
        self.local_count = local_count
        self.cloud_count = cloud_count

    def read_queue_depth(self) -> int:
        if self.queue_depth is not None:
            return int(self.queue_depth())
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        client = SqsHook(aws_conn_id=self.aws_conn_id).get_conn()
        attributes = client.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def _pool_runners(self, backend: Any) -> list[RunnerHandle]:
        pool = pool_of(self.spec)
        return [
            h
            for h in backend.list_managed()
            if h.tags.get(POOL_TAG, h.tags.get("pipeline")) == pool
            and h.tags.get("tenant") == self.spec.tags.tenant
        ]

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow.sdk import Variable

        backend = get_backend(self.conn_id)
        resolved = resolve_spec(self.spec, backend=backend.name, catalog_path=self.catalog_path)
        policy = self.policy
        if policy.usd_per_hour == 0:
            policy = BurstPolicy(
                **{**asdict(policy), "usd_per_hour": runner_rate(resolved, backend.billed_nodes(resolved))}
            )
        registry = safe_registry()
        draining = {r.key for r in registry.live() if r.status == "draining"}
        runners = [] if self.cloud_count is not None else self._pool_runners(backend)
        active = [h for h in runners if h.lineage_key not in draining]
        cloud = int(self.cloud_count()) if self.cloud_count is not None else len(active)
        depth = self.read_queue_depth()
        state_key = f"runners_burst__{pool_of(self.spec)}"
        saved = json.loads(Variable.get(state_key, default="{}") or "{}")
        now = time.time()
        state = BurstState(
            queue_depth=depth,
            cloud_count=cloud,
            local_count=self.local_count,
            now=now,
            low_since=saved.get("low_since"),
        )
        decision = plan(policy, state)
        if self.mode == "manual" and decision.launch:
            decision = BurstDecision(0, 0, cloud, decision.low_since, "manual mode: no launch")
        metrics.burst(pool_of(self.spec), depth, decision.reason, decision.launch, decision.terminate, cloud)
        Variable.set(state_key, json.dumps({"low_since": decision.low_since}))
        drained = []
        for handle in sorted(active, key=lambda h: h.created_at)[: decision.terminate]:
            if registry.transition(handle.lineage_key, "draining", expect_status=("running",)):
                drained.append(handle.resource_id)
        summary = {
            "decision": {**asdict(decision), "limits": list(decision.limits)},
            "state": asdict(state),
            "usd_per_hour": policy.usd_per_hour,
            "cost_budget": policy.cost_budget,
            "draining": drained,
        }
        context["ti"].xcom_push(key=DECISION_XCOM_KEY, value=summary)
        self.log.info(
            "queue depth %s, local %s, cloud %s: %s (launch %s, terminate %s; limits %s)",
            depth,
            self.local_count,
            cloud,
            decision.reason,
            decision.launch,
            decision.terminate,
            ", ".join(decision.limits) or "-",
        )
        spec = self.spec.model_dump(mode="json")
        return [{"slot": i, "pool": pool_of(self.spec), "spec": spec} for i in range(decision.launch)]
