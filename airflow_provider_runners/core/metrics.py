"""Runner metrics through Airflow's own Stats (StatsD, Datadog or OpenTelemetry; docs/metrics.md).

What it is for: one small API the provision, the burst planner, the job-array burst cycle, the
reaper and the budget notifier call, so a deployment watches runners with the metrics backend
Airflow already sends to (``[metrics] statsd_on`` / ``statsd_datadog_enabled`` / ``otel_on``).
Every name starts with ``runners.``; the dimensions (backend, profile, tenant, ...) are *tags*:
DogStatsD and OpenTelemetry keep them, plain StatsD keeps them only with ``[metrics]
statsd_influxdb_enabled = True`` (``name,tag=value`` lines). docs/metrics.md lists every metric.

A metric never fails its caller: errors are logged and dropped. In a task process the task
runner has already initialised Stats; anywhere else (the CLI, ``dag.test()``, the triggerer's
callers) the first metric initialises it from the Airflow config. Creates nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "runners"


def _stats() -> Any:
    from airflow.sdk._shared.observability.metrics import stats as shared
    from airflow.sdk.observability import stats

    if getattr(shared, "_factory", None) is None:  # not initialised by a task runner: do it here
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability.metrics.stats_utils import get_stats_factory

        stats.initialize(
            factory=get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=False),
        )
    return stats


def _tags(tags: Mapping[str, Any]) -> dict[str, str]:
    from airflow.sdk.observability.stats import normalize_name_for_stats

    return {k: normalize_name_for_stats(str(v) or "none", log_warning=False) for k, v in tags.items()}


def incr(metric: str, count: int = 1, **tags: Any) -> None:
    """Counter ``runners.<name>`` (+count) with ``tags``."""
    try:
        _stats().incr(f"{PREFIX}.{metric}", count, tags=_tags(tags))
    except Exception as exc:  # noqa: BLE001 - metrics never fail the caller
        log.debug("metric %s dropped: %s", metric, exc)


def gauge(metric: str, value: float, **tags: Any) -> None:
    """Gauge ``runners.<name>`` = value with ``tags``."""
    try:
        _stats().gauge(f"{PREFIX}.{metric}", float(value), tags=_tags(tags))
    except Exception as exc:  # noqa: BLE001
        log.debug("metric %s dropped: %s", metric, exc)


def timing(metric: str, seconds: float, **tags: Any) -> None:
    """Timer ``runners.<name>`` (sent in milliseconds) with ``tags``."""
    try:
        _stats().timing(f"{PREFIX}.{metric}", max(float(seconds), 0.0) * 1000.0, tags=_tags(tags))
    except Exception as exc:  # noqa: BLE001
        log.debug("metric %s dropped: %s", metric, exc)


# -- the places that emit (docs/metrics.md) ------------------------------------------------------
def provision(backend: str, profile: str, outcome: str, seconds: float | None) -> None:
    """A provision ended: ``outcome`` ready / failed / refused; ``seconds`` from start to ready."""
    incr("provision.outcome", backend=backend, profile=profile, outcome=outcome)
    if seconds is not None:
        timing("provision.duration", seconds, backend=backend, profile=profile, outcome=outcome)


def retry(backend: str, profile: str) -> None:
    """A provision try after the first (a retry adopts or replaces the earlier try's runner)."""
    incr("provision.retry", backend=backend, profile=profile)


def live_runners(backend: str, handles: Iterable[Any], rates: Mapping[str, float] | None = None) -> None:
    """Live runners of one backend (``runners.live``) and their $/hour per tenant (``runners.spend.usd_per_hour``).

    ``rates``: resource id -> $/hour (missing: 0)."""
    handles = list(handles)
    gauge("live", len(handles), backend=backend)
    per_tenant: dict[str, float] = {}
    for h in handles:
        tenant = h.tags.get("tenant", "") or "none"
        per_tenant[tenant] = per_tenant.get(tenant, 0.0) + (rates or {}).get(h.resource_id, 0.0)
    for tenant, usd in sorted(per_tenant.items()):
        gauge("spend.usd_per_hour", round(usd, 6), backend=backend, tenant=tenant)


def burst(pool: str, queue_depth: int, reason: str, launch: int, terminate: int, cloud: int) -> None:
    """One burst planning cycle: the queue depth it saw and what it decided."""
    gauge("burst.queue_depth", queue_depth, pool=pool)
    gauge("burst.cloud_runners", cloud, pool=pool)
    incr("burst.decision", pool=pool, reason=reason.replace(" ", "_"))
    if launch:
        incr("burst.launched", launch, pool=pool)
    if terminate:
        incr("burst.terminated", terminate, pool=pool)


def reaper_action(backend: str, action: str) -> None:
    """What a (not dry-run) sweep did with one runner: reap / keep / foreign / error."""
    incr("reaper.action", backend=backend, action=action)


def budget(scope: str, name: str, live_usd_per_hour: float, limit: float, fired: bool) -> None:
    """A budget check of the notifier: usage ratio, and a counter when the threshold was crossed."""
    gauge("budget.used_ratio", round(live_usd_per_hour / limit, 6) if limit else 0.0, scope=scope, name=name)
    if fired:
        incr("budget.threshold_crossed", scope=scope, name=name)
