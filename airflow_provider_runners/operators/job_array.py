"""Seed 001's job-array burst on ``runners_ec2``: a pool of hosts that drain an SQS queue (docs/cost.md).

What it is for: one *cycle* of the burst orchestrator. :func:`run_cycle` (used by
:class:`BurstCycleOperator` in a scheduled DAG — auto mode — and by ``airflow-runners burst
--count N`` — manual) does, in order:

1. read the queue depth (SQS ``ApproximateNumberOfMessages``) and list the pool's live hosts
   (``dedicated_host`` runners tagged ``burst-pool=<pool>``);
2. ask the pure planner (:func:`~airflow_provider_runners.governance.burst.plan`) — or, for a
   manual burst, launch ``count`` hosts within ``max_cloud_instances`` and the budget;
   ``mode: manual`` never launches on its own;
3. launch hosts (budget guard + registry like any provision; tagged ``keep-until-expiry`` so the
   reaper leaves them to their ttl when the cycle's DAG run ends), wait until they are ready;
4. send every ready, idle host the drain command (``backends/ec2/job_array.py``) while the
   queue holds jobs;
5. scale down: end the planner's ``terminate`` count of *idle* hosts, oldest first — never a
   host that is draining, never below ``min_cloud_instances``.

Hosts outlive the cycle: ``min_cloud_instances`` stay warm across cycles (an empty queue does not
end them), the rest end after ``scale_down_delay`` of low queue. Each host still carries its
spec's ``ttl`` as a backstop. Clean up by hand: ``aws ec2 terminate-instances`` on the instances
tagged ``burst-pool=<pool>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_runners.backends.registry import get_backend
from airflow_provider_runners.core import metrics
from airflow_provider_runners.core.backend import ProvisionRequest, RunnerState
from airflow_provider_runners.core.catalog import resolve_spec
from airflow_provider_runners.core.handles import RunnerHandle
from airflow_provider_runners.core.lifecycle import acquire
from airflow_provider_runners.core.lineage import Lineage, label_value
from airflow_provider_runners.core.prices import runner_rate
from airflow_provider_runners.core.specs import RunnerSpec
from airflow_provider_runners.exceptions import BudgetExceededError, RunnerSpecError
from airflow_provider_runners.governance import budget
from airflow_provider_runners.governance.burst import BurstDecision, BurstPolicy, BurstState, plan
from airflow_provider_runners.governance.burst_config import BurstConfig
from airflow_provider_runners.governance.runner_index import quietly

POOL_TAG = "burst-pool"


def _pool(spec: RunnerSpec) -> str:
    return spec.tags.extra.get(POOL_TAG) or spec.tags.pipeline or "default"


def prepare(
    config: BurstConfig | Mapping[str, Any] | str,
    spec: RunnerSpec | Mapping[str, Any],
    catalog_path: str | None,
) -> tuple[BurstConfig, RunnerSpec]:
    """Parse and cross-check the config and the spec (parse time: nothing is created)."""
    cfg = config if isinstance(config, BurstConfig) else BurstConfig.load(config)  # type: ignore[arg-type]
    parsed = RunnerSpec.parse(spec)
    if parsed.runner_class != "dedicated_host":
        raise RunnerSpecError(
            f"spec.runner_class: {parsed.runner_class!r}; the job-array burst runs on hosts: 'dedicated_host'"
        )
    if cfg.spot is not None and cfg.spot != parsed.spot:
        parsed = RunnerSpec.parse({**parsed.model_dump(mode="json"), "spot": cfg.spot})
    resolved = resolve_spec(parsed, catalog_path=catalog_path)
    amis = (resolved.image.options.get("amis") if resolved.image else None) or None
    cfg.check_launch(resolved.profile.machine_type, approved_amis=amis)
    return cfg, parsed


def run_cycle(
    *,
    config: BurstConfig,
    spec: RunnerSpec,
    conn_id: str,
    job_command: str,
    lineage: Lineage,
    count: int | None = None,
    low_since: float | None = None,
    catalog_path: str | None = None,
    ready_timeout_s: float = 900.0,
    now: Callable[[], float] = time.time,
    log: Any = None,
) -> dict[str, Any]:
    """One cycle (module docstring). Returns the decision, the hosts and the dispatched drains."""
    from airflow_provider_runners.backends.ec2 import job_array as ja

    backend = get_backend(conn_id)
    if backend.name != "ec2":
        raise RunnerSpecError(
            f"Connection {conn_id!r} selects backend {backend.name!r}; the job-array burst needs 'ec2' (runners_ec2)"
        )
    if not config.queue_url:
        raise ValueError("burst config: queue_url is required (the SQS queue the hosts drain)")
    resolved = resolve_spec(spec, backend=backend.name, catalog_path=catalog_path)
    if config.subnet_id or config.security_groups:
        from airflow_provider_runners.backends.ec2.plan import plan_for

        launch_plan = plan_for(resolved, backend.region, backend.config.extra)  # type: ignore[attr-defined]
        config.check_launch(
            resolved.profile.machine_type,
            subnet_id=launch_plan.subnet_id,
            security_group_ids=launch_plan.security_group_ids,
        )
    policy = config.policy
    if policy.usd_per_hour == 0:
        rate = runner_rate(resolved, backend.billed_nodes(resolved))
        policy = BurstPolicy(**{**asdict(policy), "usd_per_hour": rate})
    pool = _pool(spec)
    hosts = [
        h
        for h in backend.list_managed()
        if h.tags.get(POOL_TAG) == pool and h.tags.get("tenant") == spec.tags.tenant
    ]
    depth = int(
        backend.client("sqs").get_queue_attributes(  # type: ignore[attr-defined]
            QueueUrl=config.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
    )
    state = BurstState(queue_depth=depth, cloud_count=len(hosts), now=now(), low_since=low_since)
    decision = plan(policy, state)
    if count is not None:  # manual burst: launch count hosts within max and the budget, end none
        room = policy.budget_room(len(hosts))
        caps = [int(count), policy.max_cloud_instances - len(hosts)] + ([room] if room is not None else [])
        launch = max(min(caps), 0)
        decision = BurstDecision(launch, 0, len(hosts) + launch, decision.low_since, "manual burst")
    elif config.mode == "manual" and decision.launch:
        decision = BurstDecision(0, 0, len(hosts), decision.low_since, "manual mode: no launch")
    metrics.burst(pool, depth, decision.reason, decision.launch, decision.terminate, len(hosts))

    launched, refused, started = _launch(
        backend, spec, resolved, config, lineage, decision.launch, catalog_path
    )
    _wait_ready(backend, launched, started, ready_timeout_s, spec.profile)

    registry = budget.safe_registry()
    for h in hosts:  # the cycle holds the pool's hosts: their registry records stay fresh
        quietly(registry.heartbeat, h.lineage_key)
    states = {h.resource_id: ja.drain_state(backend, h.resource_id, h.tags) for h in hosts}
    dispatched: list[str] = []
    if depth > 0:
        script = ja.drain_script(config.queue_url, backend.region, job_command)  # type: ignore[attr-defined]
        for h in [*hosts, *launched]:
            if states.get(h.resource_id, {}).get("busy"):
                continue
            if h in hosts and backend.status(h).state is not RunnerState.READY:
                continue
            ja.start_drain(
                backend, h.resource_id, script, f"drain-{lineage.attempt_token(1)}", spec.ttl.total_seconds()
            )
            dispatched.append(h.resource_id)
    ended: list[str] = []
    idle = sorted(
        (h for h in hosts if not states[h.resource_id]["busy"] and h.resource_id not in dispatched),
        key=lambda h: h.created_at,
    )
    for h in idle[: decision.terminate]:
        backend.teardown(h)
        budget.release(h, "burst scale-down", registry)
        ended.append(h.resource_id)
    if log is not None:
        log.info(
            "burst pool %s: queue depth %s, hosts %s: %s (launch %s, end %s); drains sent to %s",
            pool, depth, len(hosts), decision.reason, len(launched), len(ended), dispatched,
        )  # fmt: skip
    return {
        "pool": pool,
        "mode": config.mode,
        "decision": {**asdict(decision), "limits": list(decision.limits)},
        "queue_depth": depth,
        "usd_per_hour": policy.usd_per_hour,
        "hosts": sorted(h.resource_id for h in hosts),
        "launched": [h.resource_id for h in launched],
        "ended": ended,
        "drains_sent": dispatched,
        "drain_states": states,
        "refused": refused,
        "key_name": config.key_name and "not attached: hosts are reached through SSM",
    }


def _launch(
    backend: Any,
    spec: RunnerSpec,
    resolved: Any,
    config: BurstConfig,
    lineage: Lineage,
    count: int,
    catalog_path: str | None,
) -> tuple[list[RunnerHandle], str | None, dict[str, float]]:
    """Create ``count`` pool hosts (budget guard + registry); stop at the first budget refusal."""
    pool = _pool(spec)
    launched: list[RunnerHandle] = []
    started: dict[str, float] = {}
    for slot in range(count):
        host_lineage = Lineage(lineage.dag_id, lineage.run_id, f"{lineage.task_id}.host", slot)
        labels = {
            **host_lineage.labels(),
            "tenant": spec.tags.tenant,
            "pipeline": spec.tags.pipeline or label_value(lineage.dag_id),
            "profile": label_value(spec.profile),
            **spec.tags.extra,
            POOL_TAG: pool,
            "keep-until-expiry": "true",
        }
        if config.job_array_id:
            labels["job-array-id"] = label_value(config.job_array_id)
        request = ProvisionRequest.build(  # expires_at = now + ttl
            resolved, host_lineage, host_lineage.attempt_token(1), backend.conn_id, labels
        )
        t0 = time.monotonic()
        try:
            admission = budget.admit(backend, request, catalog_path=catalog_path)
        except BudgetExceededError as exc:
            metrics.provision(backend.name, spec.profile, "refused", None)
            return launched, str(exc), started
        handle, _ = acquire(backend, request)
        admission.confirm(handle)
        launched.append(handle)
        started[handle.resource_id] = t0
    return launched, None, started


def _wait_ready(
    backend: Any, handles: list[RunnerHandle], started: dict[str, float], timeout_s: float, profile: str
) -> None:
    waiting = {h.resource_id: h for h in handles}
    deadline = time.monotonic() + timeout_s
    while waiting:
        for rid, status in backend.status_many(list(waiting.values())).items():
            seconds = time.monotonic() - started.get(rid, time.monotonic())
            if status.state is RunnerState.READY:
                metrics.provision(backend.name, profile, "ready", seconds)
                del waiting[rid]
            elif status.state is not RunnerState.PENDING:
                metrics.provision(backend.name, profile, "failed", seconds)
                raise RuntimeError(f"burst host {rid} is {status.state.value}: {status.message}")
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(
                f"burst hosts not ready after {timeout_s:.0f}s: {sorted(waiting)} (they keep their ttl)"
            )
        if waiting:
            time.sleep(getattr(backend, "poll_interval", 2.0))


class BurstCycleOperator(BaseOperator):
    """One job-array burst cycle per DAG run (schedule the DAG at the config's ``check_interval``).

    :param config: the orchestrator config (docs/cost.md, "Job-array burst on EC2"): a :class:`BurstConfig`, a mapping, a YAML
        path or YAML text (``burst_policy`` with mode, check_interval, spot...).
    :param spec: the hosts' ``dedicated_host`` spec (its ``tags.extra["burst-pool"]`` names the pool).
    :param job_command: shell command run on a host per job, the message body in ``$RUNNER_JOB_BODY``.
    :param count: launch exactly this many hosts (a manual burst) instead of planning.

    Creates EC2 hosts (see the module docstring). XCom: the cycle's summary. ``low_since``
    (for ``scale_down_delay``) is kept in the Airflow Variable ``runners_burst__<pool>``.
    """

    template_fields = ("job_command", "conn_id")
    ui_color = "#e8e0f4"

    def __init__(
        self,
        *,
        config: BurstConfig | Mapping[str, Any] | str,
        spec: RunnerSpec | Mapping[str, Any],
        job_command: str,
        conn_id: str = "runners_ec2",
        count: int | None = None,
        catalog_path: str | None = None,
        ready_timeout_s: float = 900.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config, self.spec = prepare(config, spec, catalog_path)
        self.job_command = job_command
        self.conn_id = conn_id
        self.count = count
        self.catalog_path = catalog_path
        self.ready_timeout_s = ready_timeout_s

    def execute(self, context: Any) -> dict[str, Any]:
        import json

        from airflow.sdk import Variable

        key = f"runners_burst__{_pool(self.spec)}"
        saved = json.loads(Variable.get(key, default="{}") or "{}")
        summary = run_cycle(
            config=self.config,
            spec=self.spec,
            conn_id=self.conn_id,
            job_command=self.job_command,
            lineage=Lineage.from_context(context),
            count=self.count,
            low_since=saved.get("low_since"),
            catalog_path=self.catalog_path,
            ready_timeout_s=self.ready_timeout_s,
            log=self.log,
        )
        Variable.set(key, json.dumps({"low_since": summary["decision"]["low_since"]}))
        return summary


# -- airflow-runners burst ----------------------------------------------------------------------
def build_parser(parser: Any) -> Any:
    """Arguments of ``airflow-runners burst`` (a manual burst, or one cycle of the config's mode)."""
    parser.add_argument(
        "--config", required=True, help="the orchestrator YAML (burst_policy: ...; docs/cost.md)"
    )
    parser.add_argument(
        "--spec", required=True, help="the hosts' dedicated_host spec: JSON text or a YAML file"
    )
    parser.add_argument(
        "--job-command", required=True, help="run per job on a host; body in $RUNNER_JOB_BODY"
    )
    parser.add_argument("--count", type=int, default=None, help="launch N hosts now (manual burst)")
    parser.add_argument(
        "--conn-id", default="runners_ec2", help="the runners_ec2 Connection (default runners_ec2)"
    )
    parser.add_argument("--catalog", default=None, help="catalog path (default: the configured one)")
    return parser


def cli(args: Any) -> int:
    """``airflow-runners burst``: print the cycle's summary as JSON; exit 0."""
    import json
    import sys
    from pathlib import Path

    import yaml

    text = Path(args.spec).read_text() if Path(args.spec).is_file() else args.spec
    if args.count is not None and args.count < 1:
        raise ValueError(f"--count: {args.count}; must be >= 1")
    config, spec = prepare(args.config, yaml.safe_load(text), args.catalog)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    summary = run_cycle(
        config=config,
        spec=spec,
        conn_id=args.conn_id,
        job_command=args.job_command,
        lineage=Lineage("airflow-runners-burst", f"manual__{stamp}", "burst"),
        count=args.count,
        catalog_path=args.catalog,
    )
    sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return 0
